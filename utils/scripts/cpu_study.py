"""The CPU mini-study: what the study's prompts and rewards do to a real model, SmolLM2-135M-Instruct, on a CPU.

    python -m utils.scripts.cpu_study              # the whole mini-study (time measured and written in the README)
    python -m utils.scripts.cpu_study --sweep              # the short sweep that chose CPU_SETTINGS
    python -m utils.scripts.cpu_study --steps 60 --experiments exp2_oneshot --out chart/cpu_study_longer.json

Part 1, without training (the study's objective 3, finding 1): the untrained model's format compliance with the system
prompt alone (Exp1's prompt) and with the one-shot example (Exp2's), on the same test questions, paired (McNemar).
Part 2: GRPO of Exp1 and Exp2 with the kit's trainer, then the trained model against the untrained one on the same
questions. SmolLM2-135M scores 1.4% on GSM8K: accuracy gains are not expected; format, tags and length are within
its reach. Results go to chart/cpu_study.json and chart/cpu_study_*.png, which the README reports.
"""

import argparse
import importlib.metadata
import os
import platform
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from utils import REPO_ROOT, runs
from utils.analysis import read_eval
from utils.config import EXPERIMENTS as ALL_EXPERIMENTS
from utils.experiments import baseline_dir, make_config
from utils.grading import extract_xml_answer, parse_value
from utils.model import load_model
from utils.named_models import GGUF_MODELS
from utils.stats import bootstrap_mean, mcnemar_exact, wilson_interval
from utils.train import evaluate_baseline, experiment_rewards, train_and_evaluate

CHART_DIR = REPO_ROOT / "chart"
RESULT = CHART_DIR / "cpu_study.json"
LONGER = CHART_DIR / "cpu_study_longer.json"  # Exp2 alone, three times the steps, within the same hour
SWEEP = CHART_DIR / "cpu_sweep.json"
EXPERIMENTS = ("exp1_no_oneshot", "exp2_oneshot")
# Chosen by the sweep (chart/cpu_sweep.json, the README's table): bf16 (this CPU's AMX) steps faster than fp32;
# 2 prompts x 4 completions of up to 128 tokens fit the most optimizer steps into the hour (2 x 8 gets more groups with
# a learning signal, but its longer steps would overrun the hour; 200 tokens cut fewer completions but finish fewer
# per minute). Six steps cannot rank learning rates: the kit's LoRA default stays.
CPU_SETTINGS = dict(
    model_name="smollm2-135m", precision="bf16", prompts_per_step=2, num_generations=4, max_completion_length=128,
    max_steps=20, save_steps=10, probe_every=0, live_every=0, eval_limit=100, eval_max_new_tokens=160,
    eval_batch_size=50, ood_eval_limit=0, sampled_eval_limit=0, harness_eval_limit=0, run_root="runs/cpu",
)  # fmt: skip
SWEEP_SETTINGS = {
    "fp32, 2x4, 128 tokens": dict(precision="fp32"),
    "bf16, 2x4, 128 tokens": dict(),
    "bf16, 2x8, 128 tokens": dict(num_generations=8),
    "bf16, 2x4, 200 tokens": dict(max_completion_length=200),
    "bf16, 2x4, 128 tokens, learning rate x4": dict(learning_rate=2e-4),
}
SWEEP_STEPS = 6
METRICS = {  # what is compared, each a yes/no per completion
    "format_strict": "strict format (the study's regex)",
    "format_soft": "soft format",
    "answer_tags": "<answer> tags",
    "answered": "a number inside <answer>",
    "correct_strict": "correct (the study's strict grader)",
    "correct_numeric": "correct (numeric grader)",
}


def with_checks(records: pd.DataFrame) -> pd.DataFrame:
    """Evaluation records with the tag and answer checks added (the graders' verdicts are already there)."""
    answers = records["completion"].map(extract_xml_answer)
    tags = records["completion"].map(lambda text: "<answer>" in text and "</answer>" in text)
    return records.assign(answer_tags=tags, answered=tags & answers.map(lambda a: parse_value(a) is not None))


def paired(a: pd.DataFrame, b: pd.DataFrame, names=("a", "b")) -> dict:
    """Each metric for ``a`` and ``b`` on the questions both answered, with Wilson intervals, McNemar's exact test,
    and the mean completion length with a bootstrap interval of the paired difference."""
    a, b = with_checks(a).set_index("index"), with_checks(b).set_index("index")
    common = a.index.intersection(b.index)
    a, b = a.loc[common], b.loc[common]
    result = {"n": len(common)}
    for metric in METRICS:
        x, y = a[metric].astype(bool), b[metric].astype(bool)
        result[metric] = {
            names[0]: x.mean(), f"{names[0]}_ci95": wilson_interval(int(x.sum()), len(x)),
            names[1]: y.mean(), f"{names[1]}_ci95": wilson_interval(int(y.sum()), len(y)),
            "mcnemar_p": mcnemar_exact(y, x)["p_value"],
        }  # fmt: skip
    tokens = b["completion_tokens"] - a["completion_tokens"]
    result["completion_tokens"] = {
        names[0]: a["completion_tokens"].mean(), names[1]: b["completion_tokens"].mean(),
        "difference": bootstrap_mean(tokens.to_numpy()), "truncated": [a["truncated"].mean(), b["truncated"].mean()],
    }  # fmt: skip
    return result


def raw_logs(run_dir) -> pd.DataFrame:
    """A run's log rows as TRL logged them (``rewards/<name>/mean``, ``completions/clipped_ratio``, ...)."""
    return pd.DataFrame(runs.read_rows(Path(run_dir) / runs.LOG)).dropna(subset=["step"])


def reward_curves(run_dir) -> pd.DataFrame:
    """Each reward's batch mean per step, and the share of groups whose completions all got the same reward."""
    logs = raw_logs(run_dir)
    columns = [
        c for c in logs.columns if c.startswith("rewards/") and c.endswith("/mean") and "batch_correct" not in c
    ]
    keep = ["step", *columns, *[c for c in ("frac_reward_zero_std", "completion_length") if c in logs.columns]]
    return logs[keep].rename(columns={c: c.split("/")[1] for c in columns})


def provenance(seconds: float, command: str = "python -m utils.scripts.cpu_study", model_name="smollm2-135m") -> dict:
    import torch

    spec = GGUF_MODELS[model_name]
    packages = [requirement.split("==")[0] for requirement, *_ in spec.parts]
    versions = sorted({importlib.metadata.version(p) for p in packages})
    return {
        "model": f"{spec.title} ({model_name})",
        "package": f"{packages[0] if len(packages) == 1 else ', '.join(packages)} {', '.join(versions)}",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "seconds": round(seconds),
        "date": time.strftime("%Y-%m-%d"),
        "command": command,
    }


def run_study(data_dir=None, steps: int | None = None, experiments=EXPERIMENTS, out=RESULT) -> dict:
    """Evaluate the untrained model with each experiment's prompt, train each experiment on the CPU (``steps=0``: no
    training) and evaluate it; then compare the prompts untrained, and each trained model with the untrained one."""
    started = time.time()
    settings = {**CPU_SETTINGS, **({"max_steps": steps} if steps else {}), "data_dir": data_dir}
    folders, untrained_model = {}, None
    for experiment in experiments:
        cfg = make_config(experiment, **settings)
        if steps == 0:  # the untrained model only, loaded once for every prompt
            untrained_model = untrained_model or load_model(cfg)
            evaluate_baseline(cfg, *untrained_model)
            folders[experiment] = (None, baseline_dir(cfg))
        else:
            folders[experiment] = (train_and_evaluate(cfg, experiment_rewards(cfg)), baseline_dir(cfg))
    untrained = {name: read_eval(base) for name, (_, base) in folders.items()}
    settings = {k: v for k, v in settings.items() if k != "data_dir"}
    result = {"settings": {**settings, "max_steps": steps if steps == 0 else settings["max_steps"]}, "experiments": {}}
    if {"exp1_no_oneshot", "exp2_oneshot"} <= set(untrained):
        result["prompts_untrained"] = paired(
            untrained["exp1_no_oneshot"], untrained["exp2_oneshot"], ("system prompt", "one-shot")
        )
    for name, (run_dir, _) in folders.items():
        if run_dir is None:
            continue
        curves = reward_curves(run_dir)
        result["experiments"][name] = {
            "steps": int(curves["step"].max()),
            "train_seconds": round(sum(r.get("step_time", 0) for r in runs.read_rows(run_dir / runs.LOG))),
            "trained_vs_untrained": paired(untrained[name], read_eval(run_dir), ("untrained", "trained")),
            "reward_curves": curves.to_dict("list"),
        }
    command = "python -m utils.scripts.cpu_study" + (f" --steps {steps}" if steps is not None else "")
    command += f" --experiments {' '.join(experiments)}" if tuple(experiments) != EXPERIMENTS else ""
    command += f" --out {os.path.relpath(out, REPO_ROOT)}" if Path(out).resolve() != RESULT else ""
    result["provenance"] = provenance(time.time() - started, command)
    runs.write_json(out, result)
    for path in draw_charts(result, out):
        print("chart:", path)
    return result


def draw_charts(result: dict, out=RESULT) -> list[Path]:
    """The format metrics with intervals (untrained by prompt, trained by experiment), and the per-reward curves;
    drawn beside ``out``, named after it."""
    paths = []
    fig, ax = plt.subplots(figsize=(11, 4))
    bars = []
    if "prompts_untrained" in result:
        p = result["prompts_untrained"]
        bars += [("untrained, system prompt", p, "system prompt"), ("untrained, one-shot", p, "one-shot")]
    for name, e in result["experiments"].items():
        if "prompts_untrained" not in result:  # one prompt: its untrained bars beside the trained ones
            bars.append((f"untrained, {name}'s prompt", e["trained_vs_untrained"], "untrained"))
        bars.append((f"trained {name}", e["trained_vs_untrained"], "trained"))
    width = 0.8 / max(len(bars), 1)
    for i, (label, block, key) in enumerate(bars):
        values = [block[m][key] for m in METRICS]
        errors = [[v - block[m][f"{key}_ci95"][0] for m, v in zip(METRICS, values)],
                  [block[m][f"{key}_ci95"][1] - v for m, v in zip(METRICS, values)]]  # fmt: skip
        ax.bar([j + i * width for j in range(len(METRICS))], values, width, yerr=errors, label=label, capsize=2)
    ax.set_xticks([j + width * (len(bars) - 1) / 2 for j in range(len(METRICS))], list(METRICS.values()), fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"share of {bars[0][1]['n']} questions" if bars else "share of questions")
    ax.set_title(f"{result['provenance']['model']} on a CPU: greedy, held-out GSM8K questions (95% Wilson intervals)")
    ax.legend(fontsize=8)
    paths.append(Path(out).with_name(f"{Path(out).stem}_format.png"))
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    experiments = result["experiments"]
    if not experiments:
        plt.close("all")
        return paths
    fig, axes = plt.subplots(1, len(experiments), figsize=(6 * len(experiments), 4), squeeze=False)
    for ax, (name, e) in zip(axes[0], experiments.items()):
        curves = pd.DataFrame(e["reward_curves"]).set_index("step")
        rewards = [c for c in curves.columns if c not in ("frac_reward_zero_std", "completion_length")]
        curves[rewards].rolling(5, min_periods=1).mean().plot(ax=ax)
        ax.set_title(f"{name}: each reward's batch mean (rolling 5 steps)")
        ax.legend(fontsize=7)
    paths.append(Path(out).with_name(f"{Path(out).stem}_rewards.png"))
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close("all")
    return paths


def sweep(data_dir=None, steps: int = SWEEP_STEPS, out=SWEEP) -> list[dict]:
    """A few GRPO steps of Exp2 per setting: seconds per step and the share of groups with a learning signal."""
    started, rows = time.time(), []
    for label, changes in SWEEP_SETTINGS.items():
        overrides = {"data_dir": data_dir, "max_steps": steps, "run_root": "runs/cpu_sweep", "extra": {"sweep": label}}
        cfg = make_config("exp2_oneshot", **{**CPU_SETTINGS, **overrides, **changes})
        run_dir = train_and_evaluate(cfg, experiment_rewards(cfg), evaluate_runs=False)
        logs = raw_logs(run_dir)
        later = logs[logs["step"] > 1]  # the first step warms up
        rows.append({
            "setting": label, "seconds_per_step": later["step_time"].median(),
            "completions_per_minute": 60 * cfg.prompts_per_step * cfg.num_generations / later["step_time"].median(),
            "groups_with_signal": 1 - logs["frac_reward_zero_std"].mean(),
            "mean_reward": logs["reward"].mean(), "learning_rate": cfg.learning_rate,
            "truncated_share": logs.get("completions/clipped_ratio", pd.Series(dtype=float)).mean(),
        })  # fmt: skip
        print(rows[-1])
    command = "python -m utils.scripts.cpu_study --sweep" + (f" --steps {steps}" if steps != SWEEP_STEPS else "")
    runs.write_json(out, {"steps": steps, "rows": rows, "provenance": provenance(time.time() - started, command)})
    return rows


def sweep_markdown(path=SWEEP) -> str:
    """The README's table of the settings sweep, from ``chart/cpu_sweep.json``."""
    if not Path(path).is_file():
        return "No settings sweep has been published yet: `python -m utils.scripts.cpu_study --sweep` writes it."
    sweep = runs.read_json(path)
    source = sweep["provenance"]
    lines = [
        f"Exp2 on {CPU_SETTINGS['model_name']}, {sweep['steps']} GRPO steps per setting (medians after the first, "
        f"which warms up); {source['machine']}, {source['date']} (`{source['command']}`).\n",
        "| setting | seconds per step (vs the study's) | completions per minute | groups with a learning signal "
        "| cut at the limit | mean total reward |",
        "|---|---|---|---|---|---|",
    ]
    chosen = next(row for row in sweep["rows"] if not SWEEP_SETTINGS.get(row["setting"], True))
    for row in sweep["rows"]:
        label = f"**{row['setting']}** (the study's)" if row is chosen else row["setting"]
        lines.append(
            f"| {label} | {row['seconds_per_step']:.0f} ({row['seconds_per_step'] / chosen['seconds_per_step']:.2f}x) "
            f"| {row['completions_per_minute']:.1f} | {row['groups_with_signal']:.0%} | {row['truncated_share']:.0%} "
            f"| {row['mean_reward']:.3f} |"
        )
    return "\n".join(lines)


def _share(block: dict, key: str) -> str:
    low, high = block[f"{key}_ci95"]
    return f"{block[key]:.2f} [{low:.2f}, {high:.2f}]"


def markdown(path=RESULT) -> str:
    """The README's section on the mini-study, from ``chart/cpu_study.json``."""
    if not Path(path).is_file():
        return "No CPU study published yet: `python -m utils.scripts.cpu_study` writes `chart/cpu_study.json`."
    result = runs.read_json(path)
    source = result["provenance"]
    lines = [
        f"{source['model']} from `{source['package']}`, greedy, {source['machine']}; "
        f"{source['seconds'] / 60:.0f} minutes in all on {source['date']} (`{source['command']}`). "
        "Shares with 95% Wilson intervals; p: McNemar's exact test on the paired verdicts."
    ]
    blocks = [("untrained: system prompt vs one-shot", result.get("prompts_untrained"), "system prompt", "one-shot")]
    blocks += [
        (f"{name}, {e['steps']} GRPO steps ({e['train_seconds'] / 60:.0f} min): untrained vs trained",
         e["trained_vs_untrained"], "untrained", "trained")
        for name, e in result["experiments"].items()
    ]  # fmt: skip
    if not result["experiments"]:
        lines.append("\nThis run trained nothing (`--steps 0`): the untrained model only.")
    for title, block, a, b in blocks:
        lines += paired_markdown(title, block, a, b) if block else []
    return "\n".join(lines)


def paired_markdown(title: str, block: dict, a: str, b: str, questions: str = "test questions") -> list[str]:
    """One ``paired`` comparison as a table: each metric for A and B with intervals and McNemar's p, then lengths."""
    lines = [f"\n**{title}**, n = {block['n']} {questions}\n", f"| | {a} | {b} | p |", "|---|---|---|---|"]
    for m, label in [(m, label) for m, label in METRICS.items() if m in block]:  # older results lack a grader
        label = label.replace("<answer>", "`<answer>`")
        lines.append(f"| {label} | {_share(block[m], a)} | {_share(block[m], b)} | {block[m]['mcnemar_p']:.3g} |")
    tokens = block["completion_tokens"]
    low, high = tokens["difference"]["ci95"]
    lines.append(
        f"| completion tokens (mean; cut at the limit) | {tokens[a]:.0f} ({tokens['truncated'][0]:.0%}) | "
        f"{tokens[b]:.0f} ({tokens['truncated'][1]:.0%}) | difference {tokens['difference']['mean']:+.0f} "
        f"[{low:+.0f}, {high:+.0f}] |"
    )
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", action="store_true", help="the settings sweep instead of the study")
    parser.add_argument(
        "--steps", type=int, help=f"GRPO steps per experiment (default {CPU_SETTINGS['max_steps']}; 0: no training)"
    )
    parser.add_argument(
        "--experiments", nargs="+", default=list(EXPERIMENTS), choices=list(ALL_EXPERIMENTS),
        help=f"the experiments to train (default: {' '.join(EXPERIMENTS)}; Exp4 adds about 20 minutes)",
    )  # fmt: skip
    parser.add_argument("--data-dir", help="a folder with GSM8K's train.jsonl and test.jsonl; default: the hub")
    parser.add_argument("--out", default=str(RESULT), help="the result file; its charts go beside it")
    args = parser.parse_args(argv)
    if args.sweep:
        sweep(args.data_dir, args.steps or SWEEP_STEPS)
    else:
        run_study(args.data_dir, args.steps, tuple(args.experiments), Path(args.out).resolve())


if __name__ == "__main__":
    main()
