"""The analysis of this kit's runs: held-out evaluations against the untrained baseline, across experiments and
evaluation sets, and training curves. (The study's own logs are re-analysed in ``utils.study``.)

Every difference is B - A: the second run minus the first, the trained model minus the untrained baseline.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from utils import runs
from utils.data import EVAL_SETS
from utils.experiments import ExperimentConfig, run_label
from utils.grading import GRADERS
from utils.logs import load_run_logs
from utils.stats import (
    bootstrap_mean_difference,
    format_interval,
    mcnemar_exact,
    pearson_with_ci,
    seed_stratified_test,
    t_interval,
    wilson_interval,
)

RAMP_STEPS = 400  # learning-rate warm-up (~187 steps) and the fast early rise of accuracy and format


@dataclass(frozen=True)
class KitRun:
    """A trained run of this kit: its folder and its saved config, which says what it is."""

    path: Path
    cfg: ExperimentConfig

    @property
    def label(self) -> str:
        return run_label(self.cfg)

    @property
    def seed(self) -> int:
        return self.cfg.seed


def find_runs(runs_root="runs") -> list[KitRun]:
    """The trained runs under ``runs_root`` (a config.json and a log.jsonl), identified by their config.json, never by
    their folder's name: a renamed, copied or older single-seed folder (``runs/exp2_oneshot``) is read the same way."""
    root = Path(runs_root)
    found = [
        KitRun(config.parent, ExperimentConfig.load(config))
        for config in sorted(root.glob(f"*/{runs.CONFIG}"))
        if (config.parent / runs.LOG).is_file()
    ]
    return sorted(found, key=lambda run: (run.label, run.seed))


def runs_by_label(runs_root="runs") -> dict[str, list[KitRun]]:
    """The runs grouped by experiment and settings, each group's runs one per seed."""
    groups: dict[str, list[KitRun]] = {}
    for run in find_runs(runs_root):
        groups.setdefault(run.label, []).append(run)
    return groups


def resolve_label(name: str, groups: dict[str, list[KitRun]]) -> str | None:
    """The group ``name`` means: a label (``exp2_oneshot__smoke``), or an experiment whose runs share one label."""
    if name in groups:
        return name
    matching = [label for label, group in groups.items() if group[0].cfg.name == name]
    if len(matching) > 1:
        raise ValueError(f"{name!r} ran with several settings ({', '.join(matching)}): name one of them.")
    return matching[0] if matching else None


def load_kit_logs(runs_root="runs") -> dict[str, dict[int, pd.DataFrame]]:
    """Per-step logs of every run under ``runs_root``: experiment and settings -> seed -> logs."""
    return {
        label: {run.seed: load_run_logs(run.path) for run in group}
        for label, group in runs_by_label(runs_root).items()
    }


def mean_over_seeds(logs_by_seed: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Step by step, the mean over seeds of every numeric column (steps that some seed has not reached yet use the
    seeds that have)."""
    combined = pd.concat(logs_by_seed.values())
    return combined.groupby("step").mean(numeric_only=True).reset_index()


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


def find_baselines(runs_root="runs") -> list[Path]:
    """The untrained-model evaluations under ``runs_root``: folders of evaluation summaries without a config.json."""
    return sorted(
        summary.parent
        for summary in Path(runs_root).glob(f"*/{runs.EVAL_SUMMARY}")
        if not (summary.parent / runs.CONFIG).exists()
    )


def baseline_label(folder: Path) -> str:
    """How tables name an untrained baseline: ``untrained: <model>__<prompt>``."""
    return "untrained: " + folder.name.removeprefix("baseline__")


def model_folders(runs_root="runs") -> dict[str, list[Path]]:
    """Every evaluated model under ``runs_root`` with its folders: each untrained baseline (one folder), then each
    experiment and settings (grouped by config.json) with one folder per seed."""
    groups = {baseline_label(folder): [folder] for folder in find_baselines(runs_root)}
    groups.update({label: [run.path for run in group] for label, group in runs_by_label(runs_root).items()})
    return groups


def _same_questions(a: dict, b: dict) -> bool:
    """Two evaluation summaries of one base model, prompt and question set (what a baseline must share with a run)."""
    keys = ("model", "prompt", "eval_set", "questions_sha256")
    return all(a.get("identity", {}).get(k) == b.get("identity", {}).get(k) for k in keys)


def baseline_for(run: KitRun, eval_set: str = "gsm8k", runs_root="runs") -> Path | None:
    """The untrained baseline evaluated on the same questions with the same base model and prompt as ``run``."""
    summary_file = runs.eval_files(eval_set)[1]
    if not (run.path / summary_file).is_file():
        return None
    trained = runs.read_json(run.path / summary_file)
    for folder in find_baselines(runs_root):
        if (folder / summary_file).is_file() and _same_questions(trained, runs.read_json(folder / summary_file)):
            return folder
    return None


def eval_table(runs_root="runs", eval_set: str = "gsm8k") -> pd.DataFrame:
    """Every evaluation of ``eval_set`` under ``runs_root``, one row per run and seed (and per untrained baseline):
    accuracy under both graders with 95% Wilson intervals and n."""
    summary_file = runs.eval_files(eval_set)[1]
    evaluated = [(run.label, run.seed, run.path) for run in find_runs(runs_root)]
    evaluated += [(baseline_label(folder), None, folder) for folder in find_baselines(runs_root)]
    rows = []
    for label, seed, folder in evaluated:
        if not (folder / summary_file).is_file():
            continue
        s = runs.read_json(folder / summary_file)
        row = {"run": label, "seed": seed, "n": s["n"]}
        for grader in GRADERS:
            row[f"acc_{grader}"] = s[f"accuracy_{grader}"]
            row[f"acc_{grader}_ci95"] = "[{:.3f}, {:.3f}]".format(*s[f"accuracy_{grader}_ci95"])
        row.update(
            format_strict=s["format_strict"], mean_tokens=s["mean_completion_tokens"], truncated=s["truncated_share"]
        )
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).astype({"seed": "Int64"}).set_index(["run", "seed"])


def _verdicts(run: KitRun, eval_set: str, grader: str) -> pd.Series:
    return read_eval(run.path / runs.eval_files(eval_set)[0]).set_index("index")[f"correct_{grader}"]


def _evaluated(group: list[KitRun], eval_set: str) -> list[KitRun]:
    return [run for run in group if (run.path / runs.eval_files(eval_set)[0]).is_file()]


def seed_table(runs_root="runs", eval_set: str = "gsm8k", grader: str | None = None) -> pd.DataFrame:
    """Per experiment and settings: held-out accuracy averaged over its seeds with a 95% t-interval over seeds (it
    reflects seed-to-seed spread), the spread itself, and every seed's accuracy; with one seed, that run's Wilson
    interval over questions, and the table says "one seed"."""
    grader = grader or EVAL_SETS[eval_set].headline_grader
    rows = []
    for label, group in runs_by_label(runs_root).items():
        evaluated = _evaluated(group, eval_set)
        if not evaluated:
            continue
        accuracies = {run.seed: float(_verdicts(run, eval_set, grader).mean()) for run in evaluated}
        n = len(_verdicts(evaluated[0], eval_set, grader))
        spread = t_interval(list(accuracies.values()))
        if len(evaluated) == 1:
            correct = int(round(spread["mean"] * n))
            interval, what = list(wilson_interval(correct, n)), "one seed: 95% Wilson interval over questions"
        else:
            interval, what = spread["ci95"], f"{len(evaluated)} seeds: 95% t-interval over seeds"
        rows.append(
            {
                "experiment": label,
                "seeds": len(evaluated),
                "questions": n,
                "grader": grader,
                "accuracy": spread["mean"],
                "ci95": interval,
                "interval": what,
                "seed_sd": spread["sd"],
                "per_seed": accuracies,
            }
        )
    return pd.DataFrame(rows).set_index("experiment") if rows else pd.DataFrame()


def compare_experiments(a: str, b: str, runs_root="runs", eval_set: str = "gsm8k", grader: str | None = None) -> dict:
    """Experiment B against A (experiment names or labels, e.g. Exp2 then Exp4) on the same questions, pooled over
    the seeds both have:
    the per-seed paired difference B - A averaged over seeds with a t-interval over seeds, a Cochran-Mantel-Haenszel
    test stratified by seed, and how the seed-to-seed spread compares with the difference. With one common seed: that
    seed's difference with McNemar's exact test, said to rest on one seed."""
    grader = grader or EVAL_SETS[eval_set].headline_grader
    groups = runs_by_label(runs_root)
    a, b = resolve_label(a, groups) or a, resolve_label(b, groups) or b
    by_seed = {label: {run.seed: run for run in _evaluated(groups.get(label, []), eval_set)} for label in (a, b)}
    seeds = sorted(set(by_seed[a]) & set(by_seed[b]))
    if not seeds:
        return {"a": a, "b": b, "seeds": 0, "reading": f"No seed of {a} and {b} is evaluated on {eval_set} in both."}
    per_seed, verdicts_a, verdicts_b = {}, [], []
    for seed in seeds:
        va, vb = _verdicts(by_seed[a][seed], eval_set, grader), _verdicts(by_seed[b][seed], eval_set, grader)
        common = va.index.intersection(vb.index)
        va, vb = va.loc[common], vb.loc[common]
        verdicts_a.append(va.to_numpy())
        verdicts_b.append(vb.to_numpy())
        per_seed[seed] = {
            "difference": float(vb.mean() - va.mean()),
            "questions": len(common),
            **mcnemar_exact(va, vb),
        }
    difference = t_interval([d["difference"] for d in per_seed.values()])
    spread = {
        label: t_interval([float(v.mean()) for v in verdicts])["sd"]
        for label, verdicts in ((a, verdicts_a), (b, verdicts_b))
    }
    result = {
        "a": a,
        "b": b,
        "difference": f"{b} - {a}",
        "eval_set": eval_set,
        "grader": grader,
        "seeds": len(seeds),
        "per_seed": per_seed,
        "mean_difference": difference["mean"],
        "ci95_over_seeds": difference["ci95"],
        "seed_sd": spread,
    }
    if len(seeds) == 1:
        only = per_seed[seeds[0]]
        result["reading"] = (
            f"One seed: {b} - {a} = {only['difference']:+.3f} on {only['questions']} questions (McNemar p = "
            f"{only['p_value']:.3g}); one seed cannot say how much of it another seed would change."
        )
        return result
    result["stratified_test"] = seed_stratified_test(verdicts_a, verdicts_b)
    largest_sd = max(v for v in spread.values() if v == v)
    test = result["stratified_test"]
    note = f" ({test['note']})" if "note" in test else ""
    if largest_sd > 0:
        spread = f"the difference is {abs(difference['mean']) / largest_sd:.1f} times the seed-to-seed SD of accuracy"
        spread += f" (up to {largest_sd:.3f})"
    else:
        spread = "every seed of each experiment scored the same"
    shown = format_interval(difference["mean"], difference["ci95"], signed=True)
    result["reading"] = (
        f"{len(seeds)} seeds: {b} - {a} = {shown} (t-interval over seeds); CMH p = {test['p_value']:.3g}{note}; "
        f"{spread}."
    )
    return result


def baseline_comparison(run_dir, baseline_dir, grader: str = "numeric", eval_sets=EVAL_SETS) -> pd.DataFrame:
    """Per evaluation set (every one by default): the trained run's accuracy and the untrained baseline's on the same
    questions, with 95% Wilson intervals, n, the change, and McNemar's exact test on the paired verdicts."""
    rows = []
    for name in eval_sets:
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
    """Every run under ``runs_root`` (each experiment, settings and seed) x every evaluation set, against the untrained
    baseline evaluated on the same questions with the same base model and prompt."""
    rows = []
    for run in find_runs(runs_root):
        for name in EVAL_SETS:
            baseline = baseline_for(run, name, runs_root)
            if baseline is not None:
                table = baseline_comparison(run.path, baseline, grader, eval_sets=[name])
                rows += table.assign(experiment=run.label, seed=run.seed).to_dict("records")
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    return table[["experiment", "seed", *[c for c in table.columns if c not in ("experiment", "seed")]]]


def eval_sets_summary(table: pd.DataFrame) -> pd.DataFrame:
    """``eval_sets_table`` averaged over seeds: per experiment and set, the mean accuracy and change from the
    untrained model with 95% t-intervals over seeds (with one seed, the run's Wilson interval)."""
    rows = []
    for (experiment, name), group in table.groupby(["experiment", "eval set"], sort=False):
        accuracy, change = t_interval(group["accuracy"]), t_interval(group["change"])
        one = len(group) == 1
        rows.append(
            {
                "experiment": experiment,
                "eval set": name,
                "seeds": len(group),
                "n": int(group["n"].max()),
                "accuracy": accuracy["mean"],
                "ci95": group["ci95"].iloc[0] if one else accuracy["ci95"],
                "interval": "Wilson, one seed" if one else "t over seeds",
                "per_seed": list(group["accuracy"]),
                "baseline": float(group["baseline"].mean()),
                "change": change["mean"],
                "change_ci95": None if one else change["ci95"],
                "grader": group["grader"].iloc[0],
            }
        )
    return pd.DataFrame(rows)


def plot_eval_sets(summary: pd.DataFrame, ax=None):
    """Accuracy per evaluation set and experiment (``eval_sets_summary``) with its 95% interval, each seed as a dot,
    and the untrained baseline as a black tick."""
    import matplotlib.pyplot as plt

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


METRIC_LABELS = {
    "accuracy": "share of correct completions (training batch)",
    "completion_length": "completion tokens (reasoning, tags and answer)",
}


def plot_seeds(logs: dict[str, dict[int, pd.DataFrame]], metric: str, window: int = 20, ax=None):
    """Training curves across seeds: per experiment the mean over seeds (rolling mean over ``window`` steps) with a
    band of one standard deviation across seeds, and each seed faintly."""
    import matplotlib.pyplot as plt

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
