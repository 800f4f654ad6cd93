"""Training-log analysis: load any run's per-step logs, compare runs step by step, and draw the study's charts.

``load_run_logs`` reads a TensorBoard event file or folder or a TRL ``trainer_state.json`` (the study's TRL 0.14 logs),
this kit's run folder (``log.jsonl``), or the committed study curves (``utils/assets/study_logs.csv``) into one shape:
a row per step with ``step``, ``completion_length`` (mean completion tokens: reasoning, tags and answer), ``accuracy``
(share of correct completions in that step's training batch) and one column per reward function.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from utils import runs as run_files
from utils.grading import GRADERS
from utils.stats import mcnemar_exact, paired_block_bootstrap, pearson_with_ci

STUDY_LOGS = Path(__file__).resolve().parent / "assets" / "study_logs.csv"
# The study's runs and what each is, read from their logged arguments and reward columns.
STUDY_RUNS = {
    "grpo_1800": "Exp2: one-shot, standard rewards (correctness 2.0); lr 5e-6, 4 prompts x 4 completions per step",
    "cot_limit_failed_penalty": (
        "Exp3: one-shot, format rewards + correctness (2.0) + cosine length reward with the penalty (down to -5); "
        "the study's repo called it 'GRPO limited COT failed' and later deleted it"
    ),
    "cot_limit_v1_penalty": (
        "Exp4: one-shot, format rewards + accuracy_func (1.0) + cosine length reward; the cosine reward is never "
        "negative, so no penalty despite the name: the cosine run of the study's charts"
    ),
    "cot_limit_v0_without_oneshot": (
        "cosine reward with the penalty (down to -5), no accuracy reward logged; its first steps equal grpo_1800's "
        "(same seed, same prompts), so despite its name it most likely kept the one-shot example"
    ),
    "cot_limit_v3_anum3_gnum6": (
        "cosine variant: lr 2e-6, gradient accumulation 3, 6 completions per prompt, soft-format, strict-format and "
        "integer rewards halved (logged maxima 0.25; xmlcount unchanged)"
    ),
}
STUDY_EXPERIMENTS = {"Exp2": "grpo_1800", "Exp3": "cot_limit_failed_penalty", "Exp4": "cot_limit_v1_penalty"}
# Compared pairs (A, B): differences are B - A, step by step.
STUDY_PAIRS = [("Exp2", "Exp4"), ("Exp2", "Exp3"), ("Exp4", "Exp3")]
STUDY_CHART_STEPS = 1418  # the study's charts stop where its cosine run stopped
RAMP_STEPS = 400  # learning-rate warm-up (~187 steps) and the fast early rise of accuracy and format
# In the study's TRL 0.14 logs the correctness rewards paid 2.0 (correctness_reward_func) or 1.0 (accuracy_func) per
# correct completion: their logged mean divided by this is the batch accuracy. The kit logs it directly.
STUDY_CORRECTNESS_VALUES = {"correctness_reward_func": 2.0, "accuracy_func": 1.0}
KEEP_COLUMNS = ["loss", "kl", "reward", "reward_std", "grad_norm", "learning_rate"]
METRICS = ("completion_length", "accuracy")


def _add_accuracy(df: pd.DataFrame) -> pd.DataFrame:
    """Share of correct completions per step: the kit's batch grader, or the study's correctness reward rescaled."""
    if "correct_frac_strict" in df:
        df["accuracy"] = df["correct_frac_strict"]
        return df
    for name, value in STUDY_CORRECTNESS_VALUES.items():
        if name in df:
            df["accuracy"] = df[name] / value
            return df
    df["accuracy"] = np.nan
    return df


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    df = df.rename(columns=lambda c: c.removeprefix("train/").removeprefix("rewards/").removesuffix("/mean"))
    if "completion_length" not in df and "completions/mean_length" in df:
        df["completion_length"] = df["completions/mean_length"]
    df = df.drop(
        columns=[c for c in df.columns if c.endswith("/std") or c.startswith(("completions/", "clip_ratio/"))]
    )
    df = _add_accuracy(df.dropna(subset=["step"]))
    df["step"] = df["step"].astype(int)
    return df.drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)


def _read_tensorboard(path: Path) -> pd.DataFrame:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"scalars": 0})
    events.Reload()
    series = {tag: pd.Series({e.step: e.value for e in events.Scalars(tag)}) for tag in events.Tags()["scalars"]}
    return pd.DataFrame(series).rename_axis("step").reset_index()


def load_run_logs(path) -> pd.DataFrame:
    """Per-step logs of one run from any of the supported sources (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        if (path / run_files.LOG).exists():
            return load_run_logs(path / run_files.LOG)
        events = sorted(path.glob("events.out.tfevents*"))
        if events:
            return load_run_logs(events[-1])
        if (path / "trainer_state.json").exists():
            return load_run_logs(path / "trainer_state.json")
        raise FileNotFoundError(f"{path} has no {run_files.LOG}, TensorBoard event file or trainer_state.json.")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.name.startswith("events.out.tfevents"):
        return _tidy(_read_tensorboard(path))
    if path.suffix == ".jsonl":
        return _tidy(pd.DataFrame(run_files.read_rows(path)))
    if path.suffix == ".json":
        history = json.loads(path.read_text()).get("log_history", [])
        return _tidy(pd.DataFrame([row for row in history if "step" in row and "train_runtime" not in row]))
    if path.suffix == ".csv":
        return _tidy(pd.read_csv(path))
    raise ValueError(
        f"Cannot read run logs from {path}: expected a run folder, event file, trainer_state.json, .jsonl or .csv."
    )


def convert_study_logs(seed_runs_dir, out_csv=STUDY_LOGS) -> pd.DataFrame:
    """The study's TensorBoard logs -> one small CSV (``run`` column) committed with the kit."""
    frames = []
    for run in STUDY_RUNS:
        df = load_run_logs(Path(seed_runs_dir) / run)
        reward_columns = [c for c in df.columns if c.endswith("_func")]
        columns = ["step", "completion_length", *reward_columns, *[c for c in KEEP_COLUMNS if c in df]]
        frames.append(df[columns].assign(run=run))
    combined = pd.concat(frames, ignore_index=True)
    combined.to_csv(out_csv, index=False, float_format="%.6g")
    return combined


def load_study_runs(csv=STUDY_LOGS) -> dict[str, pd.DataFrame]:
    """The study's runs from the committed CSV, keyed by run name."""
    combined = pd.read_csv(csv)
    groups = combined.groupby("run", sort=False)
    return {run: _tidy(group.drop(columns="run").dropna(axis=1, how="all")) for run, group in groups}


def study_experiments(study: dict) -> dict[str, pd.DataFrame]:
    """The study's Exp2, Exp3 and Exp4 runs, keyed by experiment."""
    return {exp: study[run] for exp, run in STUDY_EXPERIMENTS.items()}


def load_kit_runs(runs_root="runs") -> dict[str, pd.DataFrame]:
    """This kit's training runs under ``runs_root`` (folders with a log.jsonl), keyed by run name."""
    root = Path(runs_root)
    if not root.exists():
        return {}
    return {p.parent.name: load_run_logs(p.parent) for p in sorted(root.glob(f"*/{run_files.LOG}"))}


def between(df: pd.DataFrame, first: int, last: int) -> pd.DataFrame:
    return df[(df["step"] >= first) & (df["step"] <= last)]


def summary_table(runs: dict[str, pd.DataFrame], max_step: int | None = None) -> pd.DataFrame:
    """Per run: steps, and mean completion length and training-batch accuracy over all steps and after the ramp."""
    rows = []
    for name, df in runs.items():
        df = df[df["step"] <= max_step] if max_step else df
        late = df[df["step"] > RAMP_STEPS]
        rows.append(
            {
                "run": name,
                "steps": int(df["step"].max()),
                "mean_length": df["completion_length"].mean(),
                "mean_accuracy": df["accuracy"].mean(),
                f"length_after_{RAMP_STEPS}": late["completion_length"].mean(),
                f"accuracy_after_{RAMP_STEPS}": late["accuracy"].mean(),
            }
        )
    return pd.DataFrame(rows).set_index("run")


def pair_windows(last_step: int) -> list[tuple[int, int]]:
    """The step windows a pair is compared over: the ramp, two later windows, and all steps after the ramp."""
    return [(1, RAMP_STEPS), (RAMP_STEPS + 1, 800), (801, last_step), (RAMP_STEPS + 1, last_step)]


def compare_pair(a: pd.DataFrame, b: pd.DataFrame, last_step: int, seed: int = 0) -> list[dict]:
    """B - A in completion length and training-batch accuracy, step by step, per window, with paired intervals."""
    merged = a[["step", *METRICS]].merge(b[["step", *METRICS]], on="step", suffixes=("_a", "_b"))
    rows = []
    for first, last in pair_windows(last_step):
        window = between(merged, first, last).dropna()
        result = paired_block_bootstrap({m: window[f"{m}_b"] - window[f"{m}_a"] for m in METRICS}, seed=seed)
        rows.append({"steps": f"{first}-{last}", "first_step": first, "last_step": last, **result})
    return rows


def study_comparison(study: dict, seed: int = 0) -> dict:
    """Everything the study's logs say about Exp2, Exp3 and Exp4: per run, its steps, mean length and accuracy; per
    pair, the paired differences per window with their intervals, method, block length, resamples and seed."""
    experiments = study_experiments(study)
    runs = {}
    for exp, df in experiments.items():
        last = min(int(df["step"].max()), STUDY_CHART_STEPS)
        df = between(df, 1, last)
        runs[exp] = {
            "run": STUDY_EXPERIMENTS[exp],
            "what": STUDY_RUNS[STUDY_EXPERIMENTS[exp]],
            "steps": last,
            "mean_completion_length": float(df["completion_length"].mean()),
            "mean_accuracy": float(df["accuracy"].mean()),
        }
    pairs = []
    for a, b in STUDY_PAIRS:
        last = min(runs[a]["steps"], runs[b]["steps"])
        pairs.append(
            {
                "a": a,
                "b": b,
                "difference": f"{b} - {a}",
                "last_step": last,
                "means_steps_1_to_last": {
                    exp: {m: float(between(experiments[exp], 1, last)[m].mean()) for m in METRICS} for exp in (a, b)
                },
                "windows": compare_pair(experiments[a], experiments[b], last, seed),
            }
        )
    return {
        "source": "utils/assets/study_logs.csv (the study's TensorBoard logs), by utils.analysis.study_comparison",
        "accuracy": "share of correct completions in each step's training batch (16 completions, the study's strict "
        "grader): not held-out accuracy",
        "completion_length": "mean completion tokens per step, reasoning, XML tags and answer included (the cosine "
        "reward counts reasoning tokens only)",
        "ramp": f"steps 1-{RAMP_STEPS}: learning-rate warm-up (about 187 steps) and the fast early rise",
        "runs": runs,
        "pairs": pairs,
    }


def _window(pair: dict, steps: str) -> dict:
    return next(w for w in pair["windows"] if w["steps"] == steps)


def window_table(comparison: dict) -> pd.DataFrame:
    """One row per pair and window: B - A in length and accuracy with 95% paired intervals."""
    rows = []
    for pair in comparison["pairs"]:
        for w in pair["windows"]:
            row = {"pair (B - A)": pair["difference"], "steps": w["steps"]}
            for metric in METRICS:
                m = w["metrics"][metric]
                digits = 1 if metric == "completion_length" else 3
                row[metric] = f"{m['difference']:+.{digits}f} [{m['ci95'][0]:+.{digits}f}, {m['ci95'][1]:+.{digits}f}]"
            row["block"] = w["block_length"]
            rows.append(row)
    return pd.DataFrame(rows)


def _direction(interval) -> int:
    """-1 when a 95% interval lies below 0, +1 above, 0 when it includes 0."""
    return -1 if interval[1] < 0 else 1 if interval[0] > 0 else 0


def claim_verdict(pair: dict, metric: str, claimed: int) -> str:
    """Whether the per-window intervals support a claimed direction (-1 lower, +1 higher) of B - A: over steps
    401-end as a whole, and in each of its two halves."""
    last = pair["last_step"]
    whole = _direction(_window(pair, f"{RAMP_STEPS + 1}-{last}")["metrics"][metric]["ci95"])
    parts = {
        s: _direction(_window(pair, s)["metrics"][metric]["ci95"]) for s in (f"{RAMP_STEPS + 1}-800", f"801-{last}")
    }
    if whole == claimed and all(d == claimed for d in parts.values()):
        return f"supported in steps {RAMP_STEPS + 1}-{last} and in both of its halves"
    if whole == claimed:
        held = [s for s, d in parts.items() if d == claimed]
        other = [s for s, d in parts.items() if d != claimed]
        return (
            f"supported over steps {RAMP_STEPS + 1}-{last} as a whole, but only in steps {', '.join(held)}; "
            f"in steps {', '.join(other)} the interval includes 0 or goes the other way"
        )
    if whole == -claimed:
        return f"contradicted: over steps {RAMP_STEPS + 1}-{last} the difference goes the other way"
    return f"not supported: over steps {RAMP_STEPS + 1}-{last} the interval includes 0"


def _describe(pair: dict, metric: str) -> str:
    w = _window(pair, f"{RAMP_STEPS + 1}-{pair['last_step']}")
    m = w["metrics"][metric]
    digits = 1 if metric == "completion_length" else 3
    unit = " tokens" if metric == "completion_length" else ""
    return f"{m['difference']:+.{digits}f}{unit} [{m['ci95'][0]:+.{digits}f}, {m['ci95'][1]:+.{digits}f}]"


def written_reading(comparison: dict) -> str:
    """A short reading of the study's claims that states only what the paired intervals support."""
    runs, pairs = comparison["runs"], {p["difference"]: p for p in comparison["pairs"]}
    e2_e4, e2_e3, e4_e3 = pairs["Exp4 - Exp2"], pairs["Exp3 - Exp2"], pairs["Exp3 - Exp4"]
    first = f"steps {RAMP_STEPS + 1}-"
    return "\n".join(
        [
            f"- Exp4 vs Exp2, shorter reasoning: Exp4's completions average "
            f"{runs['Exp4']['mean_completion_length']:.0f} "
            f"tokens against {runs['Exp2']['mean_completion_length']:.0f} over steps 1-{e2_e4['last_step']} "
            f"(completion tokens, tags and answer included; the cosine reward counts reasoning tokens only). Over "
            f"{first}{e2_e4['last_step']} Exp4 - Exp2 = {_describe(e2_e4, 'completion_length')}: "
            f"{claim_verdict(e2_e4, 'completion_length', -1)}.",
            f"- Exp4 vs Exp2, slightly lower accuracy: Exp4 - Exp2 = {_describe(e2_e4, 'accuracy')} over "
            f"{first}{e2_e4['last_step']}: {claim_verdict(e2_e4, 'accuracy', -1)}. By window: "
            + ", ".join(
                f"{w['metrics']['accuracy']['difference']:+.3f} in steps {w['steps']}" for w in e2_e4["windows"][1:3]
            )
            + ".",
            f"- Exp3, over-penalised, accuracy drops: over steps 1-{e2_e3['last_step']} batch accuracy averages "
            f"{e2_e3['means_steps_1_to_last']['Exp3']['accuracy']:.3f} for Exp3, "
            f"{e2_e3['means_steps_1_to_last']['Exp2']['accuracy']:.3f} for Exp2 and "
            f"{e4_e3['means_steps_1_to_last']['Exp4']['accuracy']:.3f} for Exp4. Lower than Exp2: "
            f"{claim_verdict(e2_e3, 'accuracy', -1)} (Exp3 - Exp2 = {_describe(e2_e3, 'accuracy')}); lower than Exp4: "
            f"{claim_verdict(e4_e3, 'accuracy', -1)} (Exp3 - Exp4 = {_describe(e4_e3, 'accuracy')}).",
            "- All of this rests on one seed per setting and on training-batch accuracy under the study's strict "
            "grader, not on held-out questions. Exp1 (system prompt only) is not in the logs and cannot be tested "
            "from them; run notebook 01.",
        ]
    )


def step_length_accuracy_correlation(df: pd.DataFrame) -> dict:
    """Correlation of a run's per-step mean length and accuracy (steps are autocorrelated: read loosely)."""
    return pearson_with_ci(df["completion_length"], df["accuracy"])


def length_accuracy_table(runs: dict[str, pd.DataFrame], max_step: int | None = None) -> pd.DataFrame:
    """Step-level correlation of completion length and accuracy, over all steps and after the ramp."""
    rows = {}
    for name, df in runs.items():
        df = df[df["step"] <= max_step] if max_step else df
        every, late = step_length_accuracy_correlation(df), step_length_accuracy_correlation(df[df.step > RAMP_STEPS])
        rows[name] = {
            "r_all": every["r"],
            "r_all_ci95": every["ci95"],
            "n_all": every["n"],
            f"r_after_{RAMP_STEPS}": late["r"],
            f"r_after_{RAMP_STEPS}_ci95": late["ci95"],
            f"n_after_{RAMP_STEPS}": late["n"],
        }
    return pd.DataFrame(rows).T


def read_eval(path) -> pd.DataFrame:
    path = Path(path)
    return pd.DataFrame(run_files.read_jsonl(path / run_files.EVAL if path.is_dir() else path))


def question_length_accuracy_correlation(eval_path, grader: str = "numeric") -> dict:
    """Across test questions: does a longer completion go with a correct answer?"""
    records = read_eval(eval_path)
    return pearson_with_ci(records["completion_tokens"], records[f"correct_{grader}"].astype(float))


def compare_evals(eval_a, eval_b, grader: str = "numeric") -> dict:
    """Held-out comparison of two runs on the same questions: accuracy difference with McNemar's exact test,
    completion-length difference with a paired bootstrap interval."""
    from utils.stats import bootstrap_mean_difference

    a, b = read_eval(eval_a).set_index("index"), read_eval(eval_b).set_index("index")
    common = a.index.intersection(b.index)
    a, b = a.loc[common], b.loc[common]
    test = mcnemar_exact(a[f"correct_{grader}"], b[f"correct_{grader}"])
    return {
        "grader": grader,
        "n": len(common),
        "accuracy_a": float(a[f"correct_{grader}"].mean()),
        "accuracy_b": float(b[f"correct_{grader}"].mean()),
        "accuracy_difference": float(a[f"correct_{grader}"].mean() - b[f"correct_{grader}"].mean()),
        "mcnemar_p_value": test["p_value"],
        "only_a_correct": test["only_a_correct"],
        "only_b_correct": test["only_b_correct"],
        "length_difference": bootstrap_mean_difference(a["completion_tokens"], b["completion_tokens"]),
    }


def eval_table(runs_root="runs") -> pd.DataFrame:
    """Every GSM8K test summary under ``runs_root``: accuracy under both graders with 95% intervals and n."""
    rows = []
    for path in sorted(Path(runs_root).glob(f"*/{run_files.EVAL_SUMMARY}")):
        s = run_files.read_json(path)
        row = {"run": path.parent.name, "n": s["n"]}
        for grader in GRADERS:
            row[f"acc_{grader}"] = s[f"accuracy_{grader}"]
            row[f"acc_{grader}_ci95"] = "[{:.3f}, {:.3f}]".format(*s[f"accuracy_{grader}_ci95"])
        row.update(
            format_strict=s["format_strict"], mean_tokens=s["mean_completion_tokens"], truncated=s["truncated_share"]
        )
        rows.append(row)
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


def baseline_comparison(run_dir, baseline_dir, grader: str = "numeric") -> pd.DataFrame:
    """Per evaluation set: the trained run's accuracy and the untrained baseline's on the same questions, with 95%
    Wilson intervals, n, the change, and McNemar's exact test on the paired verdicts."""
    from utils.data import EVAL_SETS
    from utils.stats import wilson_interval

    rows = []
    for name in EVAL_SETS:
        records, _ = run_files.eval_files(name)
        if not (Path(run_dir) / records).is_file() or not (Path(baseline_dir) / records).is_file():
            continue
        trained = read_eval(Path(run_dir) / records).set_index("index")
        baseline = read_eval(Path(baseline_dir) / records).set_index("index")
        common = trained.index.intersection(baseline.index)
        a, b = trained.loc[common, f"correct_{grader}"], baseline.loc[common, f"correct_{grader}"]
        test = mcnemar_exact(a, b)
        rows.append(
            {
                "eval set": name,
                "n": len(common),
                "accuracy": a.mean(),
                "ci95": wilson_interval(int(a.sum()), len(a)),
                "baseline": b.mean(),
                "baseline_ci95": wilson_interval(int(b.sum()), len(b)),
                "change": a.mean() - b.mean(),
                "mcnemar_p": test["p_value"],
                "grader": grader,
            }
        )
    return pd.DataFrame(rows)


def eval_sets_table(runs_root="runs", grader: str = "numeric") -> pd.DataFrame:
    """Every experiment run under ``runs_root`` x every evaluation set, against its untrained baseline."""
    root = Path(runs_root)
    frames = []
    for config in sorted(root.glob(f"exp*/{run_files.CONFIG}")):
        one_shot = run_files.read_json(config)["one_shot"]
        baseline = root / f"baseline_{'one_shot' if one_shot else 'system_prompt'}"
        table = baseline_comparison(config.parent, baseline, grader)
        if len(table):
            frames.append(table.assign(experiment=config.parent.name))
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    return table[["experiment", *[c for c in table.columns if c != "experiment"]]]


def plot_eval_sets(table: pd.DataFrame, ax=None):
    """Accuracy per evaluation set and experiment with 95% intervals; the untrained baseline as a black tick."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(11, 4.5))
    sets, experiments = list(dict.fromkeys(table["eval set"])), list(dict.fromkeys(table["experiment"]))
    width = 0.8 / len(experiments)
    for i, experiment in enumerate(experiments):
        rows = table[table["experiment"] == experiment].set_index("eval set").reindex(sets)
        x = np.arange(len(sets)) + (i - (len(experiments) - 1) / 2) * width
        low = rows["accuracy"] - rows["ci95"].map(lambda ci: ci[0])
        high = rows["ci95"].map(lambda ci: ci[1]) - rows["accuracy"]
        ax.bar(x, rows["accuracy"], width, yerr=[low, high], capsize=3, label=experiment, color=f"C{i}")
        ax.scatter(
            x,
            rows["baseline"],
            marker="_",
            s=300,
            color="black",
            zorder=3,
            label="untrained baseline" if i == 0 else None,
        )
    n = table.groupby("eval set")["n"].max().reindex(sets)
    ax.set_xticks(np.arange(len(sets)), [f"{s}\n(n={n[s]})" for s in sets])
    ax.set(
        ylabel=f"accuracy ({table['grader'].iloc[0]} grader)",
        ylim=(0, 1),
        title="Held-out accuracy by evaluation set, 95% Wilson intervals",
    )
    ax.legend(fontsize=8)
    return ax


METRIC_LABELS = {
    "accuracy": "share of correct completions (training batch)",
    "completion_length": "completion tokens (reasoning, tags and answer)",
}


def plot_comparison(
    runs: dict[str, pd.DataFrame],
    metric: str,
    window: int = 20,
    max_step: int | None = None,
    ax=None,
    title=None,
    linestyle="-",
    colour_offset: int = 0,
):
    """Each run's ``metric`` as a trailing rolling mean over ``window`` steps, with its mean after the ramp dashed.
    The y-axis starts at 0, so a gap looks as large as it is."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 5.5))
    palette = sns.color_palette("tab10")
    for i, (name, df) in enumerate(runs.items()):
        df = df[df["step"] <= max_step] if max_step else df
        colour = palette[(i + colour_offset) % len(palette)]
        ax.plot(
            df["step"],
            df[metric].rolling(window, min_periods=1).mean(),
            color=colour,
            lw=1.4,
            ls=linestyle,
            label=name,
        )
        late = df[df["step"] > RAMP_STEPS]
        if len(late):
            mean = late[metric].mean()
            ax.hlines(
                mean,
                late["step"].min(),
                late["step"].max(),
                color=colour,
                ls="--",
                lw=1.1,
                label=f"{name}: mean of steps {RAMP_STEPS + 1}-{int(late['step'].max())} = {mean:.3g}",
            )
    label = METRIC_LABELS.get(metric, metric)
    ax.set(xlabel="step", ylabel=label, title=title or f"{label}, rolling mean over {window} steps")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize=8)
    return ax


def draw_study_chart(study: dict, kit: dict, metric: str, window: int = 50, max_step: int | None = STUDY_CHART_STEPS):
    """The study's Exp2-vs-Exp4 chart for ``metric`` with Exp3 added, and this kit's runs overlaid when present."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    names = {"Exp2": "standard", "Exp3": "cosine with penalty", "Exp4": "cosine, no penalty"}
    curves = {f"study {exp} ({names[exp]})": df for exp, df in study_experiments(study).items()}
    plot_comparison(curves, metric, window, max_step, ax=ax)
    mine = {
        f"kit {name}": kit[name]
        for name in ("exp2_oneshot", "exp3_cosine_penalty", "exp4_cosine_no_penalty")
        if name in kit
    }
    if mine:
        plot_comparison(mine, metric, window, max_step, ax=ax, linestyle=":", colour_offset=3)
    what = "training-batch accuracy" if metric == "accuracy" else "completion length"
    source = "utils/assets/study_logs.csv" + (" + runs/" if mine else "")
    ax.set_title(f"Exp2 vs Exp3 vs Exp4: {what} (rolling mean over {window} steps; source: {source})", fontsize=10)
    return fig


def save_study_charts(study: dict, kit: dict, chart_dir, window: int = 50) -> list[Path]:
    """The accuracy and completion-length charts as PNGs in ``chart_dir``; returns their paths."""
    import matplotlib.pyplot as plt

    chart_dir = Path(chart_dir)
    chart_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric in METRICS[::-1]:
        fig = draw_study_chart(study, kit, metric, window)
        paths.append(chart_dir / f"study_{metric}.png")
        fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
        plt.close(fig)
    return paths


def plot_run(run_dir, window: int = 10, title: str | None = None):
    """Training curves of one run: total reward and each reward's mean, completion length, training-batch accuracy
    under both graders, and held-out probe accuracy."""
    import matplotlib.pyplot as plt

    df = load_run_logs(run_dir)
    probe = pd.DataFrame(run_files.read_rows(Path(run_dir) / run_files.PROBE))
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.6))

    def curve(ax, column, label, colour):
        if column in df and df[column].notna().any():
            ax.plot(df["step"], df[column], alpha=0.25, color=colour)
            ax.plot(df["step"], df[column].rolling(window, min_periods=1).mean(), color=colour, label=label)

    curve(axes[0], "reward", "total (weighted)", "black")
    logged = run_files.read_rows(Path(run_dir) / run_files.LOG)[:1]
    rewards = [
        key.removeprefix("rewards/").removesuffix("/mean")
        for key in (logged[0] if logged else {})
        if key.startswith("rewards/") and key.endswith("/mean") and "/batch_correct_" not in key
    ]
    for i, column in enumerate(rewards):
        curve(axes[0], column, column, f"C{i}")
    curve(axes[1], "completion_length", "mean completion tokens", "tab:blue")
    for i, grader in enumerate(GRADERS):
        curve(axes[2], f"correct_frac_{grader}", f"{grader} grader", f"C{i}")
    for grader, style in zip(GRADERS, ("s--", "o-")):
        if not probe.empty:
            axes[3].plot(probe["step"], probe[f"accuracy_{grader}"], style, label=f"{grader} grader")
    n = int(probe["n"].iloc[0]) if not probe.empty else 0
    titles = ["reward (rolling mean)", "completion tokens", "training-batch accuracy", f"held-out probe (n={n})"]
    for ax, panel_title in zip(axes, titles):
        ax.set(title=panel_title, xlabel="step")
        if ax.has_data():
            ax.legend(fontsize=7)
    axes[2].set_ylim(-0.02, 1.02)
    axes[3].set_ylim(-0.02, 1.02)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def penalty_evidence(study: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Whether each study run penalised wrong answers: a penalised cosine reward goes negative."""
    rows = {}
    for name, df in study.items():
        cosine = df.get("length_cosine_reward_func")
        rows[name] = {
            "cosine_reward_min": cosine.min() if cosine is not None else np.nan,
            "steps_with_negative_cosine": float((cosine < 0).mean()) if cosine is not None else np.nan,
            "accuracy_logged": bool(df["accuracy"].notna().any()),
        }
    return pd.DataFrame(rows).T
