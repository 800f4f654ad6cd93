"""Charts of this kit's runs: accuracy by evaluation set, training curves across seeds, pass@k, and accuracy against
reasoning length. Each takes the tables ``utils.analysis`` and ``utils.sampled`` compute, and draws on ``ax`` when
given."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from utils.logs import METRIC_LABELS


def plot_eval_sets(summary: pd.DataFrame, ax=None):
    """Accuracy per evaluation set and experiment (``eval_sets_summary``) with its 95% interval, each seed as a dot,
    and the untrained baseline as a black tick."""
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 4.5))
    sets, experiments = list(dict.fromkeys(summary["eval set"])), list(dict.fromkeys(summary["experiment"]))
    width = 0.8 / len(experiments)
    for i, experiment in enumerate(experiments):
        rows = summary[summary["experiment"] == experiment].set_index("eval set").reindex(sets)
        x = np.arange(len(sets)) + (i - (len(experiments) - 1) / 2) * width
        low = rows["accuracy"] - rows["ci95"].map(lambda ci: ci[0])
        high = rows["ci95"].map(lambda ci: ci[1]) - rows["accuracy"]
        seeds = int(rows["seeds"].max())
        label = f"{experiment} ({seeds} seed{'s' if seeds > 1 else ''})"
        ax.bar(x, rows["accuracy"], width, yerr=[low, high], capsize=3, label=label, color=f"C{i}", alpha=0.85)
        for xi, points in zip(x, rows["per_seed"]):
            ax.scatter([xi] * len(points), points, s=10, color="black", alpha=0.6, zorder=4)
        ax.scatter(
            x,
            rows["baseline"],
            marker="_",
            s=300,
            color="black",
            zorder=3,
            label="untrained baseline" if i == 0 else None,
        )
    n = summary.groupby("eval set")["n"].max().reindex(sets)
    ax.set_xticks(np.arange(len(sets)), [f"{s}\n(n={n[s]})" for s in sets])
    ax.set(
        ylabel=f"accuracy ({summary['grader'].iloc[0]} grader)",
        ylim=(0, 1),
        title="Held-out accuracy by evaluation set: 95% interval (t over seeds; Wilson for one seed), seeds as dots",
    )
    ax.legend(fontsize=8)
    return ax


def plot_seeds(logs: dict[str, dict[int, pd.DataFrame]], metric: str, window: int = 20, ax=None):
    """Training curves across seeds: per experiment the mean over seeds (rolling mean over ``window`` steps) with a
    band of one standard deviation across seeds, and each seed faintly."""
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 5.5))
    for i, (label, by_seed) in enumerate(logs.items()):
        colour = f"C{i}"
        smoothed = {
            seed: df.set_index("step")[metric].rolling(window, min_periods=1).mean() for seed, df in by_seed.items()
        }
        for curve in smoothed.values():
            ax.plot(curve.index, curve.values, color=colour, alpha=0.25, lw=0.8)
        table = pd.DataFrame(smoothed)
        mean, sd = table.mean(axis=1), table.std(axis=1)
        ax.plot(
            mean.index,
            mean.values,
            color=colour,
            lw=1.8,
            label=f"{label} ({len(by_seed)} seed{'s' * (len(by_seed) > 1)})",
        )
        if len(by_seed) > 1:
            ax.fill_between(mean.index, mean - sd, mean + sd, color=colour, alpha=0.15)
    label = METRIC_LABELS.get(metric, metric)
    ax.set(xlabel="step", ylabel=label, title=f"{label}: mean over seeds, band of one SD, each seed faintly")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize=8)
    return ax


def plot_pass_at_k(summaries: dict[str, dict], grader: str = "numeric", ax=None):
    """pass@k against k (log scale) per model: a trained curve above the untrained at k = 1 that meets or falls below
    it at large k is sharpening, not new solving."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (name, s) in enumerate(summaries.items()):
        if not s:
            continue
        curve = s[f"pass_at_k_{grader}"]
        ks = [int(k) for k in curve]
        means = [curve[str(k)]["mean"] for k in ks]
        low = [curve[str(k)]["ci95"][0] for k in ks]
        high = [curve[str(k)]["ci95"][1] for k in ks]
        ax.plot(ks, means, "o-", color="black" if name.startswith("untrained") else f"C{i}", label=name)
        ax.fill_between(ks, low, high, alpha=0.15, color="black" if name.startswith("untrained") else f"C{i}")
    ax.set_xscale("log", base=2)
    ax.set(
        xlabel="k (samples)",
        ylabel=f"pass@k ({grader} grader)",
        ylim=(0, 1),
        title="pass@k, 95% bootstrap over questions",
    )
    ax.legend(fontsize=8)
    return ax


def plot_length_bins(records: pd.DataFrame, bins: int = 4, grader: str = "numeric", axes=None):
    """Accuracy against reasoning length: within question (samples binned by their length's z-score among the same
    question's samples, questions with right and wrong samples) beside the naive curve (samples binned by raw
    length). Truncated samples left out."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    kept = records[~records["truncated"].astype(bool)].copy()
    kept["correct"] = kept[f"correct_{grader}"].astype(float)
    groups = kept.groupby("index")
    mixed = kept[groups["correct"].transform(lambda c: 0 < c.sum() < len(c)).astype(bool)].copy()
    if len(mixed):
        spread = mixed.groupby("index")["reasoning_tokens"].transform("std").replace(0, np.nan)
        mixed["z"] = (
            mixed["reasoning_tokens"] - mixed.groupby("index")["reasoning_tokens"].transform("mean")
        ) / spread
        mixed = mixed.dropna(subset=["z"])
        within = mixed.groupby(pd.qcut(mixed["z"], bins, duplicates="drop"), observed=True)["correct"].mean()
        axes[0].plot(range(len(within)), within.values, "o-")
        axes[0].set_xticks(range(len(within)), [f"{iv.left:.1f}..{iv.right:.1f}" for iv in within.index], fontsize=7)
    axes[0].set(
        title="within question: z-score of length", xlabel="length, SDs from the question's mean", ylabel="accuracy"
    )
    naive = kept.groupby(pd.qcut(kept["reasoning_tokens"], bins, duplicates="drop"), observed=True)["correct"].mean()
    axes[1].plot(range(len(naive)), naive.values, "o-", color="grey")
    axes[1].set_xticks(range(len(naive)), [f"{iv.left:.0f}..{iv.right:.0f}" for iv in naive.index], fontsize=7)
    axes[1].set(title="naive, across questions: raw length", xlabel="reasoning tokens", ylabel="accuracy")
    for ax in axes:
        ax.set_ylim(0, 1)
    return axes
