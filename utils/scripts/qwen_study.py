"""The study's own architecture on a CPU: Qwen2.5-Coder-0.5B-Instruct (``qwen2.5-coder-0.5b``, from PyPI), Exp2 and
Exp4 trained side by side with the same seed and settings, and the study's Exp2-vs-Exp4 charts drawn from the kit's
own logs beside the study's.

    python -m utils.scripts.pipeline --cpu            # this study (hours on 2 cores; a rerun continues where it was)
    python -m utils.scripts.qwen_study --steps 40 --run-root runs/cpu_qwen

1. Untrained, the system prompt (Exp1's) vs the one-shot example (Exp2's) on the same GSM8K test questions.
2. Exp2 and Exp4, GRPO with the same seed and settings; their per-step completion length and batch accuracy beside
   the study's, with the paired step-window differences ``utils.study`` computes for the study's logs.
3. Held out, greedy: trained vs untrained and Exp4 vs Exp2 on the same questions, GSM8K test and MAWPS MultiArith,
   both graders, Wilson intervals, McNemar's exact test, completion length and the share cut at the limit; the
   study's strict-format check beside a variant that accepts the end of the turn right after ``</answer>``.

Resumable: training resumes from its checkpoints and every evaluation already done is reused, so the study can be
completed over several sittings. Results go to chart/cpu_qwen.json and chart/cpu_qwen_*.png, rendered by
``utils.scripts.report`` into the README.
"""

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from utils import REPO_ROOT, runs
from utils.analysis import read_eval
from utils.experiments import baseline_dir, make_config
from utils.grading import STRICT_FORMAT_END_OF_TURN_RE
from utils.logs import load_run_logs
from utils.model import load_model
from utils.scripts.cpu_study import paired, paired_markdown, provenance, raw_logs
from utils.stats import format_interval
from utils.study import METRICS as CURVE_METRICS
from utils.study import compare_pair, load_study_runs, plot_comparison, study_experiments
from utils.train import evaluate_baseline, experiment_rewards, train_and_evaluate

CHART_DIR = REPO_ROOT / "chart"
RESULT = CHART_DIR / "cpu_qwen.json"
MODEL = "qwen2.5-coder-0.5b"
EXPERIMENTS = ("exp2_oneshot", "exp4_cosine_no_penalty")
# bf16 (this CPU's AMX), 2 prompts x 4 completions of up to 200 tokens a step: about 80 s a step on 2 cores, and no
# group without a reward spread in the first steps. Evaluation: 200 questions of each set, 256 new tokens, batch 16
# (the fastest of 8, 16 and 32 measured here).
QWEN_SETTINGS = dict(
    model_name=MODEL, precision="bf16", prompts_per_step=2, num_generations=4, max_completion_length=200,
    max_steps=40, save_steps=5, probe_every=0, live_every=0, eval_limit=200, ood_eval_limit=200, ood_sets="mawps",
    eval_batch_size=16, eval_max_new_tokens=256, sampled_eval_limit=0, harness_eval_limit=0, run_root="runs/cpu_qwen",
)  # fmt: skip
STRICT_FORMAT_REWARD = "strict_format_reward_func"
KIT_WINDOWS = 4  # the kit's steps are compared in this many equal windows, and over all of them
MIN_WINDOW_STEPS = 10  # a block bootstrap needs enough steps to estimate its block length (Politis-White: > 7)


def with_end_of_turn(records: pd.DataFrame) -> pd.DataFrame:
    """Evaluation records with the strict-format variant that accepts the end of the turn after ``</answer>``."""
    return records.assign(format_strict_end_of_turn=records["completion"].map(
        lambda text: bool(STRICT_FORMAT_END_OF_TURN_RE.match(text))
    ))  # fmt: skip


def strict_variants(records: pd.DataFrame) -> dict:
    """How often the study's strict check and its end-of-turn variant fire on held-out completions."""
    records = with_end_of_turn(records)
    return {
        "n": len(records),
        "study": float(records["format_strict"].mean()),
        "end_of_turn": float(records["format_strict_end_of_turn"].mean()),
    }


def strict_firing(run_dir) -> dict:
    """The share of training completions the study's strict-format reward paid (it pays 0.5 or 0), by window."""
    logs = raw_logs(run_dir)
    column = f"rewards/{STRICT_FORMAT_REWARD}/mean"
    fired = (logs[column] / 0.5) if column in logs else pd.Series(dtype=float)
    return {"steps": int(logs["step"].max()), "share": float(fired.mean()), "by_step": fired.round(4).tolist()}


def study_strict_firing() -> dict:
    """The same share in the study's own Exp2 logs, over the steps the kit trains and the study's later windows."""
    exp2 = study_experiments(load_study_runs())["Exp2"]
    windows = {"1-24": (1, 24), "25-100": (25, 100), "101-400": (101, 400)}
    return {
        label: float(exp2[(exp2["step"] >= a) & (exp2["step"] <= b)][STRICT_FORMAT_REWARD].mean() / 0.5)
        for label, (a, b) in windows.items()
    }


def kit_windows(last_step: int) -> list[tuple[int, int]]:
    """Equal step windows over the kit's short runs, then all steps; none shorter than ``MIN_WINDOW_STEPS``."""
    size = last_step // KIT_WINDOWS
    windows = [(a, a + size - 1) for a in range(1, KIT_WINDOWS * size, size)] if size >= MIN_WINDOW_STEPS else []
    return [*windows, (1, last_step)] if last_step >= MIN_WINDOW_STEPS else []


def run_study(data_dir=None, steps: int | None = None, run_root: str | None = None, out=RESULT) -> dict:
    """Every part of the study, each reused when already done; writes ``out`` and its charts."""
    started = time.time()
    settings = {**QWEN_SETTINGS, "data_dir": data_dir, **({"max_steps": steps} if steps else {})}
    settings.update({"run_root": run_root} if run_root else {})
    system_prompt = make_config("exp1_no_oneshot", **{**settings, "ood_eval_limit": 0})
    evaluate_baseline(system_prompt, *load_model(system_prompt))  # GSM8K only, for the prompts' comparison
    folders = {}
    for experiment in EXPERIMENTS:
        cfg = make_config(experiment, **settings)
        folders[experiment] = (train_and_evaluate(cfg, experiment_rewards(cfg)), baseline_dir(cfg))
    result = {"settings": {k: v for k, v in settings.items() if k != "data_dir"}}
    one_shot_baseline = folders["exp2_oneshot"][1]
    untrained = {s: read_eval(one_shot_baseline / runs.eval_files(s)[0]) for s in ("gsm8k", "mawps")}
    result["prompts_untrained"] = paired(
        read_eval(baseline_dir(system_prompt) / runs.EVAL), untrained["gsm8k"], ("system prompt", "one-shot")
    )
    result["experiments"] = {}
    trained = {}
    for name, (run_dir, _) in folders.items():
        trained[name] = {s: read_eval(run_dir / runs.eval_files(s)[0]) for s in ("gsm8k", "mawps")}
        logs = raw_logs(run_dir)
        result["experiments"][name] = {
            "steps": int(logs["step"].max()),
            "train_seconds": round(float(logs.get("step_time", pd.Series(dtype=float)).sum())),
            "trained_vs_untrained": {s: paired(untrained[s], trained[name][s], ("untrained", "trained"))
                                     for s in untrained},  # fmt: skip
            "strict_format_in_training": strict_firing(run_dir),
            "strict_format_held_out": {s: strict_variants(trained[name][s]) for s in trained[name]},
            "curves": load_run_logs(run_dir)[["step", *CURVE_METRICS]].to_dict("list"),
        }
    result["untrained_strict_format_held_out"] = {s: strict_variants(untrained[s]) for s in untrained}
    result["study_strict_format_in_training"] = study_strict_firing()
    result["exp4_vs_exp2"] = {
        s: paired(trained["exp2_oneshot"][s], trained["exp4_cosine_no_penalty"][s], ("exp2", "exp4"))
        for s in untrained
    }
    curves = {name: pd.DataFrame(e["curves"]) for name, e in result["experiments"].items()}
    last = int(min(df["step"].max() for df in curves.values()))
    result["exp4_vs_exp2_training"] = compare_pair(
        curves["exp2_oneshot"], curves["exp4_cosine_no_penalty"], last, windows=kit_windows(last)
    )
    parts = {"untrained, system prompt": baseline_dir(system_prompt), "untrained, one-shot": one_shot_baseline}
    result["seconds_by_part"] = {
        **{label: runs.evaluation_seconds(folder) for label, folder in parts.items()},
        **{f"{name}, training": e["train_seconds"] for name, e in result["experiments"].items()},
        **{f"{name}, evaluation": runs.evaluation_seconds(folders[name][0]) for name in folders},
    }  # each part's own time, whichever sitting ran it
    command = "python -m utils.scripts.pipeline --cpu" + (f" --steps {steps}" if steps else "")
    result["provenance"] = provenance(time.time() - started, command, MODEL)
    result["provenance"]["note"] = "seconds: this sitting only; seconds_by_part: every part, whichever sitting ran it"
    runs.write_json(out, result)
    for path in draw_charts(result, out):
        print("chart:", path)
    return result


def chart_path(out, metric: str) -> Path:
    return Path(out).with_name(f"{Path(out).stem}_{metric}.png")


def draw_charts(result: dict, out=RESULT) -> list[Path]:
    """Per metric, the study's Exp2 vs Exp4 (left) beside the kit's on this CPU (right)."""
    study = study_experiments(load_study_runs())
    kit = {name: pd.DataFrame(e["curves"]) for name, e in result["experiments"].items()}
    paths = []
    for metric in CURVE_METRICS:
        fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.5))
        plot_comparison({"study Exp2": study["Exp2"], "study Exp4": study["Exp4"]}, metric, 50, 1418, ax=left)
        left.set_title("the study: Qwen2.5-0.5B-Instruct, full fine-tuning, GPU (rolling 50 steps)", fontsize=9)
        plot_comparison({f"kit {name}": df for name, df in kit.items()}, metric, 5, ax=right)
        right.set_title(f"the kit: {result['provenance']['model']}, LoRA, CPU (rolling 5 steps)", fontsize=9)
        paths.append(chart_path(out, metric))
        fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    return paths


SIGNIFICANCE = 0.05
PLAIN = {"format_strict": "the study's strict format", "format_soft": "soft format",
         "correct_strict": "accuracy (the study's strict grader)", "correct_numeric": "accuracy (numeric grader)"}


SETS = {"gsm8k": "GSM8K", "mawps": "MultiArith"}
GIST = {"format_soft": "soft format", "completion_tokens": "completion length",
        "correct_strict": "accuracy under the study's strict grader",
        "correct_numeric": "accuracy under the numeric grader"}  # fmt: skip
WORDS = {"rose": "rose", "fell": "fell", "unchanged": "did not change beyond chance"}


def direction(block: dict, metric: str, a: str, b: str) -> str:
    """'rose', 'fell' or 'unchanged' (not distinguishable from chance) from ``a`` to ``b``: a share by McNemar's p, the
    completion length by its paired interval."""
    if metric == "completion_tokens":
        low, high = block[metric]["difference"]["ci95"]
        return "rose" if low > 0 else "fell" if high < 0 else "unchanged"
    m = block[metric]
    return "unchanged" if m["mcnemar_p"] >= SIGNIFICANCE else ("rose" if m[b] > m[a] else "fell")


def change(block: dict, metric: str, a: str, b: str) -> str:
    """One paired metric in words: rose or fell when McNemar's p says so, otherwise not distinguishable from chance."""
    m, name, way = block[metric], PLAIN[metric], direction(block, metric, a, b)
    p = f"p = {m['mcnemar_p']:.2g}"
    if way == "unchanged":
        return f"{name} {m[a]:.0%} -> {m[b]:.0%} ({p}, not distinguishable from chance)"
    return f"{name} {way} from {m[a]:.0%} to {m[b]:.0%} ({p})"


def length_change(block: dict, a: str, b: str) -> str:
    """The paired change in completion length in words, with its bootstrap interval and the share cut."""
    tokens, way = block["completion_tokens"], direction(block, "completion_tokens", a, b)
    low, high = tokens["difference"]["ci95"]
    interval = f"{tokens['difference']['mean']:+.0f} [{low:+.0f}, {high:+.0f}]"
    lengths = f"{tokens[a]:.0f} -> {tokens[b]:.0f} tokens"
    said = (f"completion length {lengths} ({interval}, not distinguishable from chance)" if way == "unchanged"
            else f"completions got {'longer' if way == 'rose' else 'shorter'}, {lengths} ({interval})")  # fmt: skip
    return f"{said}, cut at the limit {tokens['truncated'][0]:.0%} -> {tokens['truncated'][1]:.0%}"


def directions(blocks: dict[tuple[str, str], dict], a: str, b: str) -> str:
    """Each metric's direction over paired blocks keyed by (experiment, set): said once where all agree, else by set
    (or by experiment and set where a set's experiments disagree)."""
    said = []
    for metric, name in GIST.items():
        groups: dict[str, list[str]] = {}
        for s in dict.fromkeys(s for _, s in blocks):
            found = {key[0]: direction(block, metric, a, b) for key, block in blocks.items() if key[1] == s}
            if len(set(found.values())) == 1:
                groups.setdefault(WORDS[next(iter(found.values()))], []).append(SETS[s])
            else:
                for experiment, way in found.items():
                    groups.setdefault(WORDS[way], []).append(f"{SETS[s]} ({experiment})")
        said.append(f"{name} {next(iter(groups))}" if len(groups) == 1 else
                    f"{name} " + " and ".join(f"{way} on {', '.join(where)}" for way, where in groups.items()))
    return "; ".join(said)


def gist(result: dict) -> list[str]:
    """The study in two sentences: what training did against the untrained model, and Exp4 against Exp2."""
    trained = {(name, s): block for name, e in result["experiments"].items()
               for s, block in e["trained_vs_untrained"].items()}  # fmt: skip
    steps = " or ".join(sorted({str(e["steps"]) for e in result["experiments"].values()}))
    exp4 = {("exp4", s): block for s, block in result["exp4_vs_exp2"].items()}
    return [f"- In short, after {steps} GRPO steps, held out against the untrained model: "
            f"{directions(trained, 'untrained', 'trained')}.",
            f"- Exp4 against Exp2: {directions(exp4, 'exp2', 'exp4')}."]  # fmt: skip


def reading(result: dict) -> list[str]:
    """What the study found, in words generated from its numbers (p < 0.05 and intervals that exclude zero count as
    changes; everything else is said to be indistinguishable from chance at this n)."""
    def sentence(title: str, block: dict, a: str, b: str) -> str:
        changes = [change(block, m, a, b) for m in PLAIN] + [length_change(block, a, b)]
        return f"- {title} (n = {block['n']}): " + "; ".join(changes) + "."

    prompts = result["prompts_untrained"]
    lines = [sentence("Untrained, the one-shot example instead of the system prompt alone, GSM8K", prompts,
                      "system prompt", "one-shot")]  # fmt: skip
    for name, e in result["experiments"].items():
        lines += [sentence(f"{name} after {e['steps']} GRPO steps against untrained, {SETS[s]}", block, "untrained",
                           "trained") for s, block in e["trained_vs_untrained"].items()]  # fmt: skip
    lines += [sentence(f"Exp4 against Exp2 after training, {SETS[s]}", block, "exp2", "exp4")
              for s, block in result["exp4_vs_exp2"].items()]  # fmt: skip
    return gist(result) + lines + strict_format_reading(result)


def strict_format_reading(result: dict) -> list[str]:
    """Why the study's strict-format reward paid little or nothing, when the held-out completions show the reason: the
    end-of-turn variant fires where the study's regex does not."""
    held = [v for e in result["experiments"].values() for v in e["strict_format_held_out"].values()]
    if not any(v["end_of_turn"] > v["study"] for v in held):
        return []
    paid = [f"{e['strict_format_in_training']['share']:.0%} of {n}'s" for n, e in result["experiments"].items()]
    return [f"- The study's strict-format reward paid on {' and '.join(paid)} training completions: its regex wants a "
            "newline after `</answer>`, and this model ends its turn right there instead. Held out, the variant that "
            f"accepts the end of the turn fires on up to {max(v['end_of_turn'] for v in held):.0%} of the trained "
            f"models' completions, the study's regex on {max(v['study'] for v in held):.0%}."]  # fmt: skip


def headline() -> list[str]:
    """The front page's lines on this study once it is published: its gist, with the machine and the command."""
    if not RESULT.is_file():
        return []
    result = runs.read_json(RESULT)
    source = result["provenance"]
    n = " or ".join(sorted({str(b["n"]) for e in result["experiments"].values()
                            for b in e["trained_vs_untrained"].values()}))  # fmt: skip
    return ["", f"**The study's architecture on a CPU**: {source['model']}, held out, greedy, n = {n} questions of "
                f"GSM8K test and of MultiArith each; {source['machine']}, "
                f"{source['date']}, `{source['command']}` ([details](docs/cpu.md)):", "",
            *gist(result), *strict_format_reading(result), "",
            *[f"![the kit's Exp2 vs Exp4 on a CPU beside the study's: {m.replace('_', ' ')}](chart/"
              f"{chart_path(RESULT, m).name})" for m in CURVE_METRICS]]  # fmt: skip


def markdown(path=RESULT) -> str:
    """The CPU page's section on this study, from ``chart/cpu_qwen.json``."""
    if not Path(path).is_file():
        return ("Not published yet: `python -m utils.scripts.pipeline --cpu` writes `chart/cpu_qwen.json` and its "
                "charts when every part has run.")  # fmt: skip
    result = runs.read_json(path)
    source = result["provenance"]
    sets = {"gsm8k": "GSM8K test questions", "mawps": "MultiArith questions"}
    hours = sum(result["seconds_by_part"].values()) / 3600
    lines = [f"{source['model']} from `{source['package']}`, greedy evaluation, {source['machine']}, {source['date']} "
             f"(`{source['command']}`), {hours:.1f} hours of evaluation and training steps in all (the parts' own "
             "times, some of them shared with other work on the machine). Shares with 95% Wilson intervals; p: "
             "McNemar's exact test on paired verdicts; length differences: paired bootstrap, 95% intervals.\n",
             "**In words**\n", *reading(result)]
    lines += paired_markdown("untrained: system prompt vs one-shot", result["prompts_untrained"], "system prompt",
                             "one-shot")  # fmt: skip
    for name, e in result["experiments"].items():
        for s, block in e["trained_vs_untrained"].items():
            title = f"{name}, {e['steps']} GRPO steps ({e['train_seconds'] / 60:.0f} min), on {s}"
            lines += paired_markdown(title, block, "untrained", "trained", sets[s])
    for s, block in result["exp4_vs_exp2"].items():
        lines += paired_markdown(f"Exp4 vs Exp2, trained, on {s}", block, "exp2", "exp4", sets[s])
    lines += ["\n**Exp4 - Exp2 during training**, per step window (paired block bootstrap, 95% intervals)\n",
              "| steps | completion tokens | batch accuracy (strict) |", "|---|---|---|"]  # fmt: skip
    for w in result["exp4_vs_exp2_training"]:
        length, accuracy = w["metrics"]["completion_length"], w["metrics"]["accuracy"]
        lines.append(f"| {w['steps']} | {format_interval(length['difference'], length['ci95'], 1, signed=True)} | "
                     f"{format_interval(accuracy['difference'], accuracy['ci95'], 3, signed=True)} |")  # fmt: skip
    study = result["study_strict_format_in_training"]
    lines += ["\n**The study's strict-format reward, how often it paid**: in the study's Exp2 logs "
              + ", ".join(f"{v:.0%} in steps {k}" for k, v in study.items()) + "; in the kit's training: "
              + ", ".join(f"{n} {e['strict_format_in_training']['share']:.0%}"
                          for n, e in result["experiments"].items())
              + ". Held out, the study's regex vs the variant that accepts the end of the turn after `</answer>`: "
              + "; ".join(f"{n} on {s}: {v['study']:.0%} vs {v['end_of_turn']:.0%}"
                          for n, e in result["experiments"].items() for s, v in e["strict_format_held_out"].items())
              + "."]  # fmt: skip
    lines += ["", *[f"![{chart_path(path, m).stem}](../chart/{chart_path(path, m).name})" for m in CURVE_METRICS]]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, help=f"GRPO steps per experiment (default {QWEN_SETTINGS['max_steps']})")
    parser.add_argument("--data-dir", help="a folder with GSM8K's train.jsonl and test.jsonl; default: the hub")
    parser.add_argument("--run-root", help=f"where the run folders go (default {QWEN_SETTINGS['run_root']})")
    parser.add_argument("--out", default=str(RESULT), help="the result file; its charts go beside it")
    args = parser.parse_args(argv)
    run_study(args.data_dir, args.steps, args.run_root, Path(args.out).resolve())


if __name__ == "__main__":
    main()
