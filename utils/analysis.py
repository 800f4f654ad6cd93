"""Training-log analysis: load any run's per-step logs, smooth, summarise, compare, and draw the study's charts.

``load_run_logs`` reads a TensorBoard event file or folder, a TRL ``trainer_state.json``, this kit's run folder
(``log.jsonl``), or the committed study curves (``utils/assets/study_logs.csv``) into one shape: a row per step
with ``step``, ``completion_length``, ``accuracy`` (share of correct completions in that step's training batch,
whatever the reward scale) and one column per reward function.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from utils.data import read_jsonl, read_run_jsonl
from utils.rewards import CORRECTNESS_REWARD_VALUES
from utils.stats import bootstrap_mean_difference, mcnemar_exact, pearson_with_ci

STUDY_LOGS = Path(__file__).resolve().parent / "assets" / "study_logs.csv"
# The study's runs, what each is (read from their logged args and reward columns), and this kit's experiment.
STUDY_RUNS = {
    "grpo_1800": "one-shot, standard rewards (correctness 2.0); lr 5e-6, 4 prompts x 4 completions; the study's Exp2",
    "cot_limit_v1_penalty": "one-shot, format + cosine length + accuracy_func (1.0); cosine never negative, so no penalty despite the name: the study's Exp4",
    "cot_limit_v3_anum3_gnum6": "one-shot cosine variant: lr 2e-6, gradient accumulation 3, 6 completions per prompt",
    "cot_limit_v0_without_oneshot": "cosine with the penalty (down to -5), without the one-shot example; no accuracy reward logged",
}
STUDY_EXP2, STUDY_EXP4 = "grpo_1800", "cot_limit_v1_penalty"  # the two runs of the study's charts
STUDY_CHART_STEPS = 1418  # the study's charts stop where its cosine run stopped
KEEP_COLUMNS = ["loss", "kl", "reward", "reward_std", "grad_norm", "learning_rate"]


def _add_accuracy(df: pd.DataFrame) -> pd.DataFrame:
    """Share of correct completions per step, from this kit's batch grader or a fixed-value correctness reward."""
    if "correct_frac_strict" in df:
        df["accuracy"] = df["correct_frac_strict"]
        return df
    for name, value in CORRECTNESS_REWARD_VALUES.items():
        if name in df:
            df["accuracy"] = df[name] / value
            return df
    df["accuracy"] = np.nan
    return df


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    df = df.rename(columns=lambda c: c.removeprefix("train/").removeprefix("rewards/").removesuffix("/mean"))
    if "completion_length" not in df and "completions/mean_length" in df:
        df["completion_length"] = df["completions/mean_length"]
    df = df.drop(columns=[c for c in df.columns if c.endswith("/std") or c.startswith(("completions/", "clip_ratio/"))])
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
        if (path / "log.jsonl").exists():
            return load_run_logs(path / "log.jsonl")
        events = sorted(path.glob("events.out.tfevents*"))
        if events:
            return load_run_logs(events[-1])
        if (path / "trainer_state.json").exists():
            return load_run_logs(path / "trainer_state.json")
        raise FileNotFoundError(f"{path} has no log.jsonl, TensorBoard event file or trainer_state.json.")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.name.startswith("events.out.tfevents"):
        return _tidy(_read_tensorboard(path))
    if path.suffix == ".jsonl":
        return _tidy(pd.DataFrame(read_run_jsonl(path)))
    if path.suffix == ".json":
        history = json.loads(path.read_text()).get("log_history", [])
        return _tidy(pd.DataFrame([row for row in history if "step" in row and "train_runtime" not in row]))
    if path.suffix == ".csv":
        return _tidy(pd.read_csv(path))
    raise ValueError(f"Cannot read run logs from {path}: expected a run folder, event file, trainer_state.json, .jsonl or .csv.")


def convert_study_logs(seed_runs_dir, out_csv=STUDY_LOGS) -> pd.DataFrame:
    """The study's TensorBoard logs -> one small CSV (``run`` column) committed with the kit."""
    frames = []
    for run in STUDY_RUNS:
        df = load_run_logs(Path(seed_runs_dir) / run)
        reward_columns = [c for c in df.columns if c.endswith("_func")]
        frames.append(df[["step", "completion_length", *reward_columns, *[c for c in KEEP_COLUMNS if c in df]]].assign(run=run))
    combined = pd.concat(frames, ignore_index=True)
    combined.to_csv(out_csv, index=False, float_format="%.6g")
    return combined


def load_study_runs(csv=STUDY_LOGS) -> dict[str, pd.DataFrame]:
    """The study's four runs from the committed CSV, keyed by run name."""
    combined = pd.read_csv(csv)
    return {run: _tidy(group.drop(columns="run").dropna(axis=1, how="all")) for run, group in combined.groupby("run", sort=False)}


def load_kit_runs(runs_root="runs") -> dict[str, pd.DataFrame]:
    """This kit's training runs under ``runs_root`` (folders with a log.jsonl), keyed by run name."""
    root = Path(runs_root)
    return {p.parent.name: load_run_logs(p.parent) for p in sorted(root.glob("*/log.jsonl"))} if root.exists() else {}


def summary_table(runs: dict[str, pd.DataFrame], max_step: int | None = None, last: int = 200) -> pd.DataFrame:
    """Mean completion length and training-batch accuracy over the run (up to ``max_step``) and its last steps."""
    rows = []
    for name, df in runs.items():
        df = df[df["step"] <= max_step] if max_step else df
        tail = df[df["step"] > df["step"].max() - last]
        rows.append({
            "run": name, "steps": int(df["step"].max()),
            "mean_length": df["completion_length"].mean(), "mean_accuracy": df["accuracy"].mean(),
            f"last{last}_length": tail["completion_length"].mean(), f"last{last}_accuracy": tail["accuracy"].mean(),
        })
    return pd.DataFrame(rows).set_index("run")


def step_length_accuracy_correlation(df: pd.DataFrame) -> dict:
    """Correlation of a run's per-step mean length and accuracy (steps are autocorrelated: read loosely)."""
    return pearson_with_ci(df["completion_length"], df["accuracy"])


def read_eval(path) -> pd.DataFrame:
    path = Path(path)
    path = path / "eval.jsonl" if path.is_dir() else path
    return pd.DataFrame(read_jsonl(path))


def question_length_accuracy_correlation(eval_path, grader: str = "numeric") -> dict:
    """Across test questions: does a longer completion go with a correct answer?"""
    records = read_eval(eval_path)
    return pearson_with_ci(records["completion_tokens"], records[f"correct_{grader}"].astype(float))


def compare_evals(eval_a, eval_b, grader: str = "numeric") -> dict:
    """Held-out comparison of two runs on the same questions: accuracy difference with McNemar's exact test,
    completion-length difference with a paired bootstrap interval."""
    a, b = read_eval(eval_a).set_index("index"), read_eval(eval_b).set_index("index")
    common = a.index.intersection(b.index)
    a, b = a.loc[common], b.loc[common]
    test = mcnemar_exact(a[f"correct_{grader}"], b[f"correct_{grader}"])
    return {
        "grader": grader, "n": len(common),
        "accuracy_a": float(a[f"correct_{grader}"].mean()), "accuracy_b": float(b[f"correct_{grader}"].mean()),
        "accuracy_difference": float(a[f"correct_{grader}"].mean() - b[f"correct_{grader}"].mean()),
        "mcnemar_p_value": test["p_value"], "only_a_correct": test["only_a_correct"], "only_b_correct": test["only_b_correct"],
        "length_difference": bootstrap_mean_difference(a["completion_tokens"], b["completion_tokens"]),
    }


def eval_table(runs_root="runs") -> pd.DataFrame:
    """Every evaluation summary under ``runs_root``: accuracy under both graders with 95% intervals and n."""
    rows = []
    for path in sorted(Path(runs_root).glob("*/eval_summary.json")):
        s = json.loads(path.read_text())
        rows.append({
            "run": path.parent.name, "n": s["n"],
            "acc_numeric": s["accuracy_numeric"], "acc_numeric_ci95": "[{:.3f}, {:.3f}]".format(*s["accuracy_numeric_ci95"]),
            "acc_strict": s["accuracy_strict"], "acc_strict_ci95": "[{:.3f}, {:.3f}]".format(*s["accuracy_strict_ci95"]),
            "format_strict": s["format_strict"], "mean_tokens": s["mean_completion_tokens"], "truncated": s["truncated_share"],
        })
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


def plot_comparison(runs: dict[str, pd.DataFrame], metric: str, window: int = 20, max_step: int | None = None, ax=None, title=None, linestyle="-", colour_offset: int = 0):
    """The study's chart: each run's ``metric`` as a trailing rolling mean over ``window`` steps, with its
    whole-run average dashed."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 5.5))
    palette = sns.color_palette("tab10")
    for i, (name, df) in enumerate(runs.items()):
        df = df[df["step"] <= max_step] if max_step else df
        smooth = df[metric].rolling(window, min_periods=1).mean()
        colour = palette[(i + colour_offset) % len(palette)]
        ax.plot(df["step"], smooth, color=colour, lw=1.4, ls=linestyle, label=f"{name}")
        ax.axhline(df[metric].mean(), color=colour, ls="--", lw=1.2, label=f"{name} avg {df[metric].mean():.3g}")
    label = {"accuracy": "share of correct completions (training batch)", "completion_length": "completion length (tokens)"}.get(metric, metric)
    ax.set(xlabel="step", ylabel=label, title=title or f"{label}, rolling mean over {window} steps")
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize=8)
    return ax


def plot_run(run_dir, window: int = 10):
    """Training curves of one run: total reward, training-batch accuracy, completion length, held-out probe."""
    import matplotlib.pyplot as plt

    df = load_run_logs(run_dir)
    probe = pd.DataFrame(read_run_jsonl(Path(run_dir) / "probe.jsonl"))
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.4))
    for ax, column, label in zip(axes, ["reward", "accuracy", "completion_length"], ["total reward", "training-batch accuracy (strict)", "completion tokens"]):
        ax.plot(df["step"], df[column], alpha=0.3, color="tab:blue")
        ax.plot(df["step"], df[column].rolling(window, min_periods=1).mean(), color="tab:blue")
        ax.set(title=label, xlabel="step")
    if not probe.empty:
        axes[3].plot(probe["step"], probe["accuracy_numeric"], "o-", label="numeric grader")
        axes[3].plot(probe["step"], probe["accuracy_strict"], "s--", label="strict grader")
        axes[3].legend(fontsize=8)
    axes[3].set(title=f"held-out probe accuracy (n={int(probe['n'].iloc[0]) if not probe.empty else 0})", xlabel="step", ylim=(-0.02, 1.02))
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
            "accuracy_reward_logged": bool(df["accuracy"].notna().any()),
        }
    return pd.DataFrame(rows).T


def draw_exp2_vs_exp4(study: dict, kit: dict, metric: str, window: int = 50, max_step: int | None = STUDY_CHART_STEPS):
    """The study's Exp2-vs-Exp4 chart for ``metric``, with this kit's Exp2/Exp4 runs overlaid when present."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    plot_comparison({"study Exp2 (standard)": study[STUDY_EXP2], "study Exp4 (cosine)": study[STUDY_EXP4]}, metric, window, max_step, ax=ax)
    mine = {f"kit {name}": kit[name] for name in ("exp2_oneshot", "exp4_cosine_no_penalty") if name in kit}
    if mine:
        plot_comparison(mine, metric, window, max_step, ax=ax, linestyle=":", colour_offset=2)
    what = "training-batch accuracy" if metric == "accuracy" else "completion length"
    ax.set_title(f"Exp2 vs Exp4: {what} (rolling mean over {window} steps; source: utils/assets/study_logs.csv{' + runs/' if mine else ''})")
    return fig


def save_exp2_vs_exp4_charts(study: dict, kit: dict, chart_dir, window: int = 50, max_step: int | None = STUDY_CHART_STEPS) -> list[Path]:
    """Both Exp2-vs-Exp4 charts (accuracy, completion length) as PNGs in ``chart_dir``; returns the figures' paths."""
    import matplotlib.pyplot as plt

    chart_dir = Path(chart_dir)
    chart_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric in ("accuracy", "completion_length"):
        fig = draw_exp2_vs_exp4(study, kit, metric, window, max_step)
        paths.append(chart_dir / f"exp2_vs_exp4_{metric}.png")
        fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
        plt.close(fig)
    return paths


def late_training_differences(study: dict, max_step: int = STUDY_CHART_STEPS, after_step: int = 400) -> pd.DataFrame:
    """Exp4 minus Exp2 in completion length and accuracy after warm-up, with block-bootstrap intervals."""
    late = {k: study[k][(study[k].step > after_step) & (study[k].step <= max_step)] for k in (STUDY_EXP2, STUDY_EXP4)}
    return pd.DataFrame({m: block_bootstrap_difference(late[STUDY_EXP4][m], late[STUDY_EXP2][m]) for m in ("completion_length", "accuracy")}).T


def length_accuracy_table(runs: dict[str, pd.DataFrame], max_step: int | None = None, after_step: int = 400) -> pd.DataFrame:
    """Step-level correlation of completion length and accuracy, over all steps and after warm-up."""
    rows = {}
    for name, df in runs.items():
        df = df[df["step"] <= max_step] if max_step else df
        every, late = step_length_accuracy_correlation(df), step_length_accuracy_correlation(df[df["step"] > after_step])
        rows[name] = {"r_all": every["r"], "r_all_ci95": every["ci95"], "n_all": every["n"], f"r_after_{after_step}": late["r"], f"r_after_{after_step}_ci95": late["ci95"], f"n_after_{after_step}": late["n"]}
    return pd.DataFrame(rows).T


def block_bootstrap_difference(x, y, block: int = 50, n_resamples: int = 5000, seed: int = 0) -> dict:
    """mean(x) - mean(y) for two independent runs' per-step series, with a 95% moving-block bootstrap interval
    (blocks keep the autocorrelation of neighbouring steps)."""
    rng = np.random.default_rng(seed)

    def resample_means(values):
        values = np.asarray(values, float)
        values = values[np.isfinite(values)]
        n_blocks = int(np.ceil(len(values) / block))
        starts = rng.integers(0, len(values) - block + 1, size=(n_resamples, n_blocks))
        idx = (starts[:, :, None] + np.arange(block)).reshape(n_resamples, -1)[:, : len(values)]
        return values[idx].mean(axis=1)

    samples = resample_means(x) - resample_means(y)
    low, high = np.percentile(samples, [2.5, 97.5])
    return {"difference": float(np.nanmean(np.asarray(x, float)) - np.nanmean(np.asarray(y, float))), "ci95_low": float(low), "ci95_high": float(high), "block": block}


def written_reading(table: pd.DataFrame, differences: pd.DataFrame) -> str:
    """A short reading of the Exp2-vs-Exp4 numbers that states only what they support."""
    standard, cosine = table.loc[STUDY_EXP2], table.loc[STUDY_EXP4]
    length, accuracy = differences.loc["completion_length"], differences.loc["accuracy"]

    def verdict(row):
        if row.ci95_low > 0 or row.ci95_high < 0:
            edge = min(abs(row.ci95_low), abs(row.ci95_high))
            return "an interval that only just excludes 0" if edge < 0.1 * abs(row.difference) else "an interval that excludes 0"
        return "an interval that includes 0"

    def support(row):
        return {"an interval that excludes 0": "supported", "an interval that only just excludes 0": "weakly supported"}.get(verdict(row), "not supported")

    return "\n".join([
        f"- Shorter reasoning: over the first {int(standard.steps)} steps the cosine run's completions average {cosine.mean_length:.0f} tokens against "
        f"{standard.mean_length:.0f} for the standard run ({cosine.mean_length / standard.mean_length - 1:+.0%}). After warm-up (steps 401-{int(standard.steps)}) "
        f"the difference is {length.difference:+.1f} tokens, 95% block-bootstrap interval [{length.ci95_low:+.1f}, {length.ci95_high:+.1f}], {verdict(length)}.",
        f"- Accuracy: training-batch accuracy averages {cosine.mean_accuracy:.3f} (cosine) against {standard.mean_accuracy:.3f} (standard); after warm-up the "
        f"difference is {accuracy.difference:+.3f} [{accuracy.ci95_low:+.3f}, {accuracy.ci95_high:+.3f}], {verdict(accuracy)}.",
        f"- Verdict: the study's claim of shorter reasoning with the cosine reward is {support(length)}; its claim of slightly lower accuracy "
        f"is {support(accuracy)}. Both rest on one seed per setting and on training-batch accuracy (16 completions per step, the study's "
        "strict string grader), not on held-out questions.",
        "- Not testable from these logs: Exp1 (no run without one-shot and with standard rewards) and Exp3 (the only penalised run also dropped the "
        "one-shot example and logged no accuracy). Run notebooks 01-04 for those.",
    ])
