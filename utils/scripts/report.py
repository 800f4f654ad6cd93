"""Regenerate chart/ and the README's blocks from the data, so no number is typed by hand.

python -m utils.scripts.report          # rewrite chart/*.png, chart/study_comparison.json and the README's blocks
python -m utils.scripts.report --check  # exit 1 if a README block or study_comparison.json is out of date

The README's blocks: the study's results, the reliability counts (from the test suite's markers), the evaluation time
estimate, the published GPU benchmark (chart/bench.json), the memory estimates, and the CPU mini-study, its settings
sweep and the CPU benchmark (chart/cpu_study.json, cpu_sweep.json, cpu_bench.json).
"""

import argparse
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from utils import REPO_ROOT, runs
from utils.analysis import compare_experiments, eval_table, load_kit_logs, sampled_experiments_table, seed_table
from utils.config import ExperimentConfig, declared_default
from utils.data import EVAL_SETS
from utils.evaluate import evaluated_sets, questions_limit
from utils.experiments import make_config
from utils.harness import PROTOCOLS, comparable_table, max_gen_toks
from utils.scripts import cpu_bench, cpu_study, hosted, qwen_study
from utils.scripts.bench import markdown_table
from utils.stats import format_interval
from utils.study import (
    RAMP_STEPS,
    load_study_runs,
    save_study_charts,
    study_comparison,
    window_table,
    written_reading,
)

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
CHART_DIR = REPO_ROOT / "chart"
COMPARISON = CHART_DIR / "study_comparison.json"
BENCH = CHART_DIR / "bench.json"  # a GPU benchmark run (python -m utils.scripts.bench), published by copying it here
WINDOW = 50


def draw_charts(study) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from utils.model import load_tokenizer
    from utils.reward_lab import plot_length_rewards

    paths = save_study_charts(study, load_kit_logs(REPO_ROOT / "runs"), CHART_DIR, WINDOW)
    fig = plot_length_rewards([], load_tokenizer("tiny"))  # draws the study's two cosine rewards
    paths.append(CHART_DIR / "reward_lab_cosine.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths


def results_markdown(comparison: dict, runs_root) -> str:
    table = ["| exp | study run | steps | mean completion tokens | mean batch accuracy |", "|---|---|---|---|---|"]
    for exp, run in comparison["runs"].items():
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
    return "\n".join(lines + [""] + kit_results_lines(runs_root))


def kit_results_lines(runs_root) -> list[str]:
    """This kit's own runs under ``runs_root``: held-out GSM8K accuracy per experiment over its seeds, every run, and
    Exp2 vs Exp4 on the same questions; a note when there are none yet."""
    evals = eval_table(runs_root)
    if not len(evals):
        return [
            "Held-out test accuracy of this kit's own runs appears here once `python -m utils.scripts.pipeline` has "
            "run "
            "on a GPU."
        ]
    seeds = seed_table(runs_root).drop(columns="per_seed")
    seeds["accuracy"] = [format_interval(a, ci) for a, ci in zip(seeds["accuracy"], seeds.pop("ci95"))]
    lines = [
        "Held-out GSM8K test accuracy of this kit's runs (greedy decoding, the study's strict grader), per experiment "
        "over its seeds:",
        "",
        seeds.round(3).to_markdown(),
        "",
        "Every run (95% Wilson intervals over questions):",
        "",
        evals.round(3).to_markdown(),
    ]
    pair = compare_experiments("exp2_oneshot", "exp4_cosine_no_penalty", runs_root)
    if pair["seeds"]:
        lines += ["", f"Exp4 vs Exp2 on the same questions: {pair['reading']}"]
    comparable = comparable_table(runs_root)
    if len(comparable):
        lines += [
            "",
            "Through lm-evaluation-harness's own GSM8K tasks, beside the kit's greedy accuracy on the same model "
            "(means over seeds; the protocols and the published figures each is comparable with are in the section "
            "below):",
            "",
            comparable.round(3).to_markdown(),
        ]
    sampled = sampled_experiments_table(runs_root)
    if len(sampled):
        lines += [
            "",
            "Sampled evaluation (GSM8K, K samples per question at the training's sampling; numeric grader; pass@k by "
            "the unbiased estimator, maj@k the majority vote; length vs correctness within question, without "
            "truncated samples; 95% bootstrap over questions, or t over seeds):",
            "",
            sampled.to_markdown(),
        ]
    return lines


def readme_with(text: str, name: str, block: str) -> str:
    """``text`` with the README block ``name`` replaced by ``block``."""
    start, end = f"<!-- {name}:start (python -m utils.scripts.report) -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"The page lacks the markers {start!r} ... {end!r}.")
    head, rest = text.split(start, 1)
    return head + start + "\n" + block + "\n" + end + rest.split(end, 1)[1]


def count_tests(marker: str) -> int:
    """How many tests carry a marker: the README's reliability numbers come from the suite CI runs."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", marker],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    counted = re.search(r"(\d+)/\d+ tests? collected", done.stdout)
    if not counted:
        raise RuntimeError(f"Could not count the tests marked {marker}:\n{done.stdout[-2000:]}")
    return int(counted.group(1))


def reliability_markdown() -> str:
    return (
        f"{count_tests('bad_input')} bad inputs (impossible settings, missing or corrupt data lines, unknown "
        "experiments, config fields, TRL arguments and their values, evaluation sets, broken reward functions, a run "
        "folder that cannot be written, a logger or engine whose package is missing, a secret in the settings, a push "
        "that would fail) each get a message that names the parameter or file and line and says what to do, in the "
        "config cell, before any model loads. "
        f"{count_tests('fault')} injected faults each end as a run that never failed would, and the tests check "
        "what the model holds, not only the logs: after a disconnect mid-step or a checkpoint half written when the "
        "session died, the resumed run ends with the uninterrupted run's weights bit for bit on a CPU (LoRA and full "
        "fine-tuning, one process and two under torchrun, random weights and the real SmolLM2-135M); rerunning a "
        "finished run leaves the saved adapter byte for byte as it was, and an evaluation is reused only for the "
        "questions, prompt, token limit and adapter it scored. A model cache damaged on disk (a file cut short or "
        "missing) is named and rebuilt from its source, and a build that fails leaves nothing behind. Where going "
        "on would lose something (config or rewards changed, checkpoints deleted, another trainer in the same run "
        "folder, an empty config file, NaN or infinite rewards, CUDA out of memory) the run stops with a message that "
        "says what happened and leaves the run folder and the weights as they were. A lock left by a crashed session "
        "is taken over, a full disk mid-write leaves the old file whole, a log line cut by a crash is dropped with a "
        "message. They are tests in the CI suite: `pytest -m bad_input`, `pytest -m fault`."
    )


# An assumption, not a measurement (no GPU has run this kit's evaluation yet): transformers' generate on a free T4
# decodes one token for a batch of 64 prompts of the 0.5B model in about 25 ms (its ~1 GB of 16-bit weights read at
# 320 GB/s take 3 ms; the rest is per-step overhead). Each batch is taken to run to the token limit.
ASSUMED_T4_SECONDS_PER_DECODE_STEP = 0.025


def t4_evaluation_minutes(cfg) -> dict:
    """Estimated T4 minutes to evaluate one model, per evaluation (greedy on every set, sampled, lm-evaluation-
    harness), each as (minutes, the arithmetic): batches x decoding steps x ASSUMED_T4_SECONDS_PER_DECODE_STEP."""
    questions = {n: min(questions_limit(cfg, n) or EVAL_SETS[n].size, EVAL_SETS[n].size) for n in evaluated_sets(cfg)}
    sampled_questions = min(cfg.sampled_eval_limit or EVAL_SETS["gsm8k"].size, EVAL_SETS["gsm8k"].size)
    per_sampled_batch = max(1, cfg.eval_batch_size // cfg.sampled_eval_k)
    harness_questions = min(cfg.harness_eval_limit or EVAL_SETS["gsm8k"].size, EVAL_SETS["gsm8k"].size)
    work = {  # (batches, decoding steps per batch, what the batches are)
        "greedy": (
            sum(-(-n // cfg.eval_batch_size) for n in questions.values()),
            cfg.eval_max_new_tokens,
            ", ".join(f"{name} {n:,}" for name, n in questions.items()) + f" questions, {cfg.eval_batch_size} a batch",
        ),
        "sampled": (
            -(-sampled_questions // per_sampled_batch),
            cfg.eval_max_new_tokens,
            f"{sampled_questions} questions x {cfg.sampled_eval_k} samples, {per_sampled_batch} questions a batch",
        ),
        "harness": (
            -(-harness_questions // cfg.eval_batch_size) * len(PROTOCOLS),
            max_gen_toks(cfg),
            f"{len(PROTOCOLS)} protocols x {harness_questions} questions, {cfg.eval_batch_size} a batch",
        ),
    }
    estimates = {}
    for name, (batches, steps, what) in work.items():
        minutes = batches * steps * ASSUMED_T4_SECONDS_PER_DECODE_STEP / 60
        step_ms = ASSUMED_T4_SECONDS_PER_DECODE_STEP * 1000
        estimates[name] = (minutes, f"{what}: {batches} batches x {steps} decoding steps x {step_ms:.0f} ms")
    return estimates


def eval_time_markdown() -> str:
    estimates = t4_evaluation_minutes(make_config("exp2_oneshot"))
    (greedy, how), (sampled, sampled_how), (harness, harness_how) = estimates.values()
    return (
        f"**Estimates, not measurements** (no GPU has timed them yet), assuming "
        f"{ASSUMED_T4_SECONDS_PER_DECODE_STEP * 1000:.0f} ms per decoding step of a 64-sequence batch and every batch "
        f"running to the limit: evaluating one model greedily takes about {greedy:.0f} minutes on a T4 ({how}); its "
        f"sampled evaluation about {sampled:.0f} minutes more ({sampled_how}), and lm-evaluation-harness about "
        f"{harness:.0f} ({harness_how}). A notebook evaluates the untrained and the trained model: about "
        f"{2 * (greedy + sampled + harness):.0f} minutes beside training ({2 * greedy:.0f} with "
        "`SAMPLED_EVAL_LIMIT = 0` and `HARNESS_EVAL_LIMIT = 0`)."
    )


LORA_LR = CHART_DIR / "lora_lr.json"  # a run of python -m utils.scripts.lora_lr, published by copying it here


def lora_lr_markdown(path=LORA_LR) -> str:
    """The published toy-scale check of LoRA's learning rate: its table, ratios, provenance; or a note."""
    from utils.scripts.lora_lr import markdown

    if not Path(path).is_file():
        return "No run of `python -m utils.scripts.lora_lr` has been published yet."
    report = runs.read_json(path)
    env = report["environment"]
    return (
        f"{report['what']}\n\n{markdown(report)}\n\n"
        f"Measured on {env['platform']} (CPU), torch {env['packages'].get('torch')}, trl "
        f"{env['packages'].get('trl')}, {env['date']}, in {report['seconds'] / 60:.0f} min ({report['note']})."
    )


def speed_markdown(bench=BENCH) -> str:
    """The published GPU benchmark: its table, ratios, device, versions and date; or a note that there is none."""
    if not bench.is_file():
        return "No GPU benchmark has been published yet: these numbers are still unmeasured."
    report = json.loads(bench.read_text())
    lines = [markdown_table(report)]
    projection = report.get("epoch_projection") or {}
    if projection.get("t4_arithmetic"):
        lines.append(
            f"\nOne epoch at {projection['completion_length']} tokens: {projection['measured_gpu_hours']} h on "
            f"the measured GPU; on a T4 about {projection['t4_hours_estimate']} h, an estimate "
            f"({projection['t4_arithmetic']})."
        )
    return "\n".join(lines)


# Qwen2.5 instruct models: parameters (billions), the size that sets memory.
QWEN25_PARAMETERS_B = {"0.5B": 0.49, "1.5B": 1.54, "3B": 3.09, "7B": 7.62}
# Bytes per parameter, an estimate until measured: 16-bit weights (2), a 16-bit reference model for the KL term (2,
# full fine-tuning only; LoRA disables its adapter instead), 16-bit gradients (2) and fp32 AdamW moments (8).
ACTIVATIONS_GIB = 3.0  # one micro-batch: 4 completions x (256 + 786) tokens, their logits over 152k tokens, KV cache


def memory_estimates(gpus: int = 4) -> list[dict]:
    """Estimated peak GPU memory (GiB) per model and setting; estimates, not measurements."""
    rows = []
    for model, billions in QWEN25_PARAMETERS_B.items():
        params = billions * 1e9 / 2**30  # GiB per byte-per-parameter
        rows.append(
            {
                "model": f"Qwen2.5-{model}-Instruct",
                "LoRA r64, one GPU": 2 * params * 1.02 + ACTIVATIONS_GIB,  # adapters and their Adam state: ~2% more
                "full fine-tuning, one GPU": 14 * params + ACTIVATIONS_GIB,
                f"full, ZeRO-2 x{gpus}": (4 + 10 / gpus) * params + ACTIVATIONS_GIB,
                f"full, ZeRO-3 x{gpus}": 14 * params / gpus + ACTIVATIONS_GIB,
            }
        )
    return rows


def memory_markdown() -> str:
    table = pd.DataFrame(memory_estimates()).set_index("model").round(1)
    return (
        "**Estimates in GiB, not measurements** (`utils.scripts.report.memory_estimates`: bytes per parameter for "
        "weights, "
        "reference model, gradients and AdamW state, plus about 3 GiB for a micro-batch of 4 completions):\n\n"
        + table.to_markdown()
    )


def config_fields_markdown() -> str:
    """Every config field with its default and help, from the dataclass itself, so the page cannot drift."""
    rows = ["| field | default | what it is |", "|---|---|---|"]
    for f in dataclasses.fields(ExperimentConfig):
        default = declared_default(f)
        shown = f"`{default}`" if default else "from the experiment"
        rows.append(f"| `{f.name}` | {shown} | {f.metadata['help'].replace('|', '/')} |")
    return "\n".join(rows)


def headline_markdown(comparison: dict) -> str:
    """The front page's figures: the study's two findings about Exp2 vs Exp4 as its logs support them, and the kit's
    best measured results, each with its n and where it was measured."""
    study = written_reading(comparison).splitlines()[:2]
    lines = ["**The study's logs** (one seed per setting, training-batch accuracy under its strict grader):", *study]
    if cpu_study.LONGER.is_file():
        longer = runs.read_json(cpu_study.LONGER)
        run, source = longer["experiments"]["exp2_oneshot"], longer["provenance"]
        block = run["trained_vs_untrained"]
        strict, accuracy = block["format_strict"], block["correct_numeric"]
        lines += [
            "", f"**The kit on a CPU**: {source['model']}, Exp2, {run['steps']} GRPO steps, held-out GSM8K (n = "
            f"{block['n']}, greedy): the study's strict format "
            f"{format_interval(strict['untrained'], strict['untrained_ci95'])} untrained, "
            f"{format_interval(strict['trained'], strict['trained_ci95'])} trained (McNemar p = "
            f"{strict['mcnemar_p']:.2g}); accuracy (numeric grader) {accuracy['untrained']:.2f} -> "
            f"{accuracy['trained']:.2f} (p = {accuracy['mcnemar_p']:.2g}), a model that scores about 1% on GSM8K. "
            f"{source['machine']}, {source['date']}, `{source['command']}`."
        ]  # fmt: skip
    lines += qwen_study.headline()
    gpu = "no GPU run of the kit has been measured yet" if not BENCH.is_file() else "see docs/gpu-measurement.md"
    return "\n".join([*lines, "", f"**On a GPU**: {gpu}."])


def page_blocks(comparison: dict) -> dict:
    """Every generated block, by the page that holds it."""
    return {
        README: {"headline": lambda: headline_markdown(comparison)},
        DOCS / "results.md": {"results": lambda: results_markdown(comparison, REPO_ROOT / "runs")},
        DOCS / "reliability.md": {"reliability": reliability_markdown},
        DOCS / "parameters.md": {"config-fields": config_fields_markdown, "lora-lr": lora_lr_markdown},
        DOCS / "evaluation.md": {"eval-time": eval_time_markdown},
        DOCS / "gpu-measurement.md": {"speed": speed_markdown},
        DOCS / "multi-gpu.md": {"memory": memory_markdown},
        DOCS / "notebooks.md": {"hosted": hosted.markdown},
        DOCS / "cpu.md": {
            "cpu-study": cpu_study.markdown,
            "cpu-study-longer": lambda: cpu_study.markdown(cpu_study.LONGER),
            "cpu-sweep": cpu_study.sweep_markdown,
            "cpu-bench": cpu_bench.markdown,
            "cpu-bench-qwen": lambda: cpu_bench.markdown(cpu_bench.QWEN),
            "cpu-qwen": qwen_study.markdown,
        },
    }


def updated_pages(comparison: dict) -> dict:
    """Each page's text with every block regenerated."""
    pages = {}
    for page, blocks in page_blocks(comparison).items():
        text = page.read_text()
        for name, make in blocks.items():
            text = readme_with(text, name, make())
        pages[page] = text
    return pages


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the README blocks are current")
    args = parser.parse_args(argv)
    study = load_study_runs()
    comparison = study_comparison(study)
    comparison_text = json.dumps(comparison, indent=2) + "\n"
    pages = updated_pages(comparison)
    if args.check:
        stale = [str(p.relative_to(REPO_ROOT)) for p, text in pages.items() if p.read_text() != text]
        stale += [] if COMPARISON.is_file() and COMPARISON.read_text() == comparison_text else [str(COMPARISON)]
        fix = f"Stale: {', '.join(stale)}: run python -m utils.scripts.report"
        print("README and docs are current." if not stale else fix)
        return 0 if not stale else 1
    for page, text in pages.items():
        page.write_text(text)
    CHART_DIR.mkdir(exist_ok=True)
    COMPARISON.write_text(comparison_text)
    for path in [COMPARISON, *draw_charts(study)]:
        print("wrote", path.relative_to(REPO_ROOT))
    print("updated README.md and docs/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
