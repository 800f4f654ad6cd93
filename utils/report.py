"""Regenerate chart/ and the README's results section from the data, so no number is typed by hand.

python -m utils.report          # rewrite chart/*.png, chart/study_comparison.json and the README results block
python -m utils.report --check  # exit 1 if the README block or study_comparison.json is out of date
"""

import argparse
import json
import sys

from utils import REPO_ROOT
from utils.analysis import (
    RAMP_STEPS,
    eval_table,
    load_kit_runs,
    load_study_runs,
    save_study_charts,
    study_comparison,
    window_table,
    written_reading,
)

README = REPO_ROOT / "README.md"
CHART_DIR = REPO_ROOT / "chart"
COMPARISON = CHART_DIR / "study_comparison.json"
START, END = "<!-- results:start (python -m utils.report) -->", "<!-- results:end -->"
WINDOW = 50


def draw_charts(study) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from utils.model import load_tokenizer
    from utils.reward_lab import plot_length_rewards

    paths = save_study_charts(study, load_kit_runs(REPO_ROOT / "runs"), CHART_DIR, WINDOW)
    fig = plot_length_rewards([], load_tokenizer("tiny"))  # draws the study's two cosine rewards
    paths.append(CHART_DIR / "reward_lab_cosine.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths


def results_markdown(comparison: dict, evals) -> str:
    runs = comparison["runs"]
    table = ["| exp | study run | steps | mean completion tokens | mean batch accuracy |", "|---|---|---|---|---|"]
    for exp, run in runs.items():
        table.append(
            f"| {exp} | `{run['run']}` | {run['steps']} | {run['mean_completion_length']:.1f} | "
            f"{run['mean_accuracy']:.3f} |"
        )
    first = comparison["pairs"][0]["windows"][0]
    lines = [
        "From the study's own training logs (`utils/assets/study_logs.csv`). Accuracy is the share of correct "
        "completions in each step's training batch of 16 under the study's strict grader, not held-out accuracy; "
        "completion tokens include the XML tags and the answer. Exp3 ran 1,100 steps, the others are cut at 1,418 as "
        "in the study's charts.",
        "",
        *table,
        "",
        f"Paired differences B - A per step window ({first['method']}; block length by the "
        f"{first['block_rule']}; {first['n_resamples']:,} resamples, seed {first['seed']}). Steps 1-{RAMP_STEPS} are "
        "the warm-up and the early rise.",
        "",
        window_table(comparison).to_markdown(index=False),
        "",
        written_reading(comparison),
    ]
    if len(evals):
        lines += [
            "",
            "Held-out GSM8K test accuracy of this kit's runs (greedy; 95% Wilson intervals):",
            "",
            evals.round(3).to_markdown(),
        ]
    else:
        lines += [
            "",
            "Held-out test accuracy of this kit's own runs appears here once `python -m utils.pipeline` has "
            "run on a GPU.",
        ]
    return "\n".join(lines)


def readme_with(block: str) -> str:
    text = README.read_text()
    if START not in text or END not in text:
        raise ValueError(f"README.md lacks the markers {START!r} ... {END!r}.")
    head, rest = text.split(START, 1)
    return head + START + "\n" + block + "\n" + END + rest.split(END, 1)[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the README block is current")
    args = parser.parse_args(argv)
    study = load_study_runs()
    comparison = study_comparison(study)
    comparison_text = json.dumps(comparison, indent=2) + "\n"
    updated = readme_with(results_markdown(comparison, eval_table(REPO_ROOT / "runs")))
    if args.check:
        current = README.read_text() == updated and COMPARISON.is_file() and COMPARISON.read_text() == comparison_text
        print("README results are current." if current else "README results are stale: run python -m utils.report")
        return 0 if current else 1
    README.write_text(updated)
    CHART_DIR.mkdir(exist_ok=True)
    COMPARISON.write_text(comparison_text)
    for path in [COMPARISON, *draw_charts(study)]:
        print("wrote", path.relative_to(REPO_ROOT))
    print("updated README.md results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
