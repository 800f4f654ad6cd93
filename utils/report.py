"""Regenerate chart/ and the README's results section from the data, so no number is typed by hand.

    python -m utils.report          # rewrite chart/*.png and the README block between the results markers
    python -m utils.report --check  # exit 1 if the README block is out of date
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from utils.analysis import (
    STUDY_CHART_STEPS, STUDY_EXP2, STUDY_EXP4, eval_table, late_training_differences, load_kit_runs, load_study_runs,
    save_exp2_vs_exp4_charts, summary_table, written_reading,
)
from utils.data import REPO_ROOT

README = REPO_ROOT / "README.md"
CHART_DIR = REPO_ROOT / "chart"
START, END = "<!-- results:start (python -m utils.report) -->", "<!-- results:end -->"
WINDOW = 50


def study_numbers():
    study = load_study_runs()
    return study, summary_table(study, max_step=STUDY_CHART_STEPS), late_training_differences(study)


def draw_charts(study, runs_root=REPO_ROOT / "runs") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from utils.reward_lab import plot_length_rewards
    from utils.model import load_tokenizer

    paths = save_exp2_vs_exp4_charts(study, load_kit_runs(runs_root), CHART_DIR, WINDOW)
    tokenizer = load_tokenizer("tiny")
    fig = plot_length_rewards([], tokenizer)  # draws the study's two cosine rewards
    paths.append(CHART_DIR / "reward_lab_cosine.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths


def results_markdown(table: pd.DataFrame, differences: pd.DataFrame, evals: pd.DataFrame) -> str:
    shown = table.loc[[STUDY_EXP2, STUDY_EXP4], ["steps", "mean_length", "mean_accuracy", "last200_length", "last200_accuracy"]]
    shown.index = [f"standard rewards (study Exp2, `{STUDY_EXP2}`)", f"cosine, no penalty (study Exp4, `{STUDY_EXP4}`)"]
    lines = [
        f"From the study's own training logs (`utils/assets/study_logs.csv`), first {STUDY_CHART_STEPS} steps. Accuracy is the share of correct "
        "completions in each step's training batch of 16 under the study's strict grader; it is not held-out accuracy.",
        "",
        shown.round(3).to_markdown(),
        "",
        written_reading(table, differences),
    ]
    if len(evals):
        lines += ["", "Held-out GSM8K test accuracy of this kit's runs (greedy; 95% Wilson intervals):", "", evals.round(3).to_markdown()]
    else:
        lines += ["", "Held-out test accuracy of this kit's own runs appears here once `python -m utils.pipeline` has run on a GPU."]
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
    study, table, differences = study_numbers()
    updated = readme_with(results_markdown(table, differences, eval_table(REPO_ROOT / "runs")))
    if args.check:
        current = README.read_text() == updated
        print("README results are current." if current else "README results are stale: run python -m utils.report")
        return 0 if current else 1
    README.write_text(updated)
    for path in draw_charts(study):
        print("wrote", path.relative_to(REPO_ROOT))
    print("updated README.md results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
