"""The analysis of this kit's runs: held-out evaluations against the untrained baseline, across experiments and
evaluation sets, and training curves. (The study's own logs are re-analysed in ``utils.study``.)

Every difference is B - A: the second run minus the first, the trained model minus the untrained baseline.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from utils import runs
from utils.grading import GRADERS
from utils.logs import load_run_logs
from utils.stats import mcnemar_exact, pearson_with_ci

RAMP_STEPS = 400  # learning-rate warm-up (~187 steps) and the fast early rise of accuracy and format


def load_kit_runs(runs_root="runs") -> dict[str, pd.DataFrame]:
    """This kit's training runs under ``runs_root`` (folders with a log.jsonl), keyed by run name."""
    root = Path(runs_root)
    if not root.exists():
        return {}
    return {p.parent.name: load_run_logs(p.parent) for p in sorted(root.glob(f"*/{runs.LOG}"))}


def between(df: pd.DataFrame, first: int, last: int) -> pd.DataFrame:
    return df[(df["step"] >= first) & (df["step"] <= last)]


def read_eval(path) -> pd.DataFrame:
    path = Path(path)
    return pd.DataFrame(runs.read_jsonl(path / runs.EVAL if path.is_dir() else path))


def question_length_accuracy_correlation(eval_path, grader: str = "numeric") -> dict:
    """Across test questions: does a longer completion go with a correct answer?"""
    records = read_eval(eval_path)
    return pearson_with_ci(records["completion_tokens"], records[f"correct_{grader}"].astype(float))


def compare_evals(eval_a, eval_b, grader: str = "numeric") -> dict:
    """Held-out comparison of two runs on the same questions, B - A: the accuracy difference with McNemar's exact
    test, the completion-length difference with a paired bootstrap interval."""
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
        "accuracy_difference": float(b[f"correct_{grader}"].mean() - a[f"correct_{grader}"].mean()),
        "mcnemar_p_value": test["p_value"],
        "only_a_correct": test["only_a_correct"],
        "only_b_correct": test["only_b_correct"],
        "length_difference": bootstrap_mean_difference(b["completion_tokens"], a["completion_tokens"]),
    }


def eval_table(runs_root="runs") -> pd.DataFrame:
    """Every GSM8K test summary under ``runs_root``: accuracy under both graders with 95% intervals and n."""
    rows = []
    for path in sorted(Path(runs_root).glob(f"*/{runs.EVAL_SUMMARY}")):
        s = runs.read_json(path)
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
        records, _ = runs.eval_files(name)
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
    for config in sorted(root.glob(f"exp*/{runs.CONFIG}")):
        one_shot = runs.read_json(config)["one_shot"]
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
    curves: dict[str, pd.DataFrame],
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
    for i, (name, df) in enumerate(curves.items()):
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


def plot_run(run_dir, window: int = 10, title: str | None = None):
    """Training curves of one run: total reward and each reward's mean, completion length, training-batch accuracy
    under both graders, and held-out probe accuracy."""
    import matplotlib.pyplot as plt

    df = load_run_logs(run_dir)
    probe = pd.DataFrame(runs.read_rows(Path(run_dir) / runs.PROBE))
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.6))

    def curve(ax, column, label, colour):
        if column in df and df[column].notna().any():
            ax.plot(df["step"], df[column], alpha=0.25, color=colour)
            ax.plot(df["step"], df[column].rolling(window, min_periods=1).mean(), color=colour, label=label)

    curve(axes[0], "reward", "total (weighted)", "black")
    logged = runs.read_rows(Path(run_dir) / runs.LOG)[:1]
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
