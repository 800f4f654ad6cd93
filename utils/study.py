"""The study's own training logs, re-analysed: what its runs are, Exp2 vs Exp3 vs Exp4 step by step with paired
intervals, which of its claims the logs support, and its charts (``utils/assets/study_logs.csv``, frozen). The kit's
own runs are analysed in ``utils.analysis``; differences are B - A in both.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from utils.logs import METRIC_LABELS, mean_over_seeds, tidy_logs
from utils.stats import format_interval, paired_block_bootstrap, pearson_with_ci

STUDY_LOGS = Path(__file__).resolve().parent / "assets" / "study_logs.csv"  # from its TensorBoard logs (study_logs.md)
RAMP_STEPS = 400  # learning-rate warm-up (~187 steps) and the fast early rise of accuracy and format


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


METRICS = ("completion_length", "accuracy")


def load_study_runs(csv=STUDY_LOGS) -> dict[str, pd.DataFrame]:
    """The study's runs from the committed CSV, keyed by run name."""
    combined = pd.read_csv(csv)
    groups = combined.groupby("run", sort=False)
    return {run: tidy_logs(group.drop(columns="run").dropna(axis=1, how="all")) for run, group in groups}


def study_experiments(study: dict) -> dict[str, pd.DataFrame]:
    """The study's Exp2, Exp3 and Exp4 runs, keyed by experiment."""
    return {exp: study[run] for exp, run in STUDY_EXPERIMENTS.items()}


def steps_between(df: pd.DataFrame, first: int, last: int) -> pd.DataFrame:
    return df[(df["step"] >= first) & (df["step"] <= last)]


def pair_windows(last_step: int) -> list[tuple[int, int]]:
    """The step windows a pair is compared over: the ramp, two later windows, and all steps after the ramp."""
    return [(1, RAMP_STEPS), (RAMP_STEPS + 1, 800), (801, last_step), (RAMP_STEPS + 1, last_step)]


def compare_pair(a: pd.DataFrame, b: pd.DataFrame, last_step: int, seed: int = 0, windows=None) -> list[dict]:
    """B - A in completion length and training-batch accuracy, step by step, per window (default: the study's,
    ``pair_windows``), with paired intervals."""
    merged = a[["step", *METRICS]].merge(b[["step", *METRICS]], on="step", suffixes=("_a", "_b"))
    rows = []
    for first, last in pair_windows(last_step) if windows is None else windows:
        window = steps_between(merged, first, last).dropna()
        result = paired_block_bootstrap({m: window[f"{m}_b"] - window[f"{m}_a"] for m in METRICS}, seed=seed)
        rows.append({"steps": f"{first}-{last}", "first_step": first, "last_step": last, **result})
    return rows


def study_comparison(study: dict, seed: int = 0) -> dict:
    """Everything the study's logs say about Exp2, Exp3 and Exp4: per run, its steps, mean length and accuracy; per
    pair, the paired differences per window with their intervals, method, block length, resamples and seed."""
    experiments = study_experiments(study)
    summaries = {}
    for exp, df in experiments.items():
        last = min(int(df["step"].max()), STUDY_CHART_STEPS)
        df = steps_between(df, 1, last)
        summaries[exp] = {
            "run": STUDY_EXPERIMENTS[exp],
            "what": STUDY_RUNS[STUDY_EXPERIMENTS[exp]],
            "steps": last,
            "mean_completion_length": float(df["completion_length"].mean()),
            "mean_accuracy": float(df["accuracy"].mean()),
        }
    pairs = []
    for a, b in STUDY_PAIRS:
        last = min(summaries[a]["steps"], summaries[b]["steps"])
        pairs.append(
            {
                "a": a,
                "b": b,
                "difference": f"{b} - {a}",
                "last_step": last,
                "means_steps_1_to_last": {
                    exp: {m: float(steps_between(experiments[exp], 1, last)[m].mean()) for m in METRICS}
                    for exp in (a, b)
                },
                "windows": compare_pair(experiments[a], experiments[b], last, seed),
            }
        )
    return {
        "source": "utils/assets/study_logs.csv (the study's TensorBoard logs), by utils.study.study_comparison",
        "accuracy": "share of correct completions in each step's training batch (16 completions, the study's strict "
        "grader): not held-out accuracy",
        "completion_length": "mean completion tokens per step, reasoning, XML tags and answer included (the cosine "
        "reward counts reasoning tokens only)",
        "ramp": f"steps 1-{RAMP_STEPS}: learning-rate warm-up (about 187 steps) and the fast early rise",
        "runs": summaries,
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
                row[metric] = format_interval(m["difference"], m["ci95"], digits, signed=True)
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


def _difference_text(pair: dict, metric: str) -> str:
    w = _window(pair, f"{RAMP_STEPS + 1}-{pair['last_step']}")
    m = w["metrics"][metric]
    digits = 1 if metric == "completion_length" else 3
    unit = " tokens" if metric == "completion_length" else ""
    return format_interval(m["difference"], m["ci95"], digits, signed=True, unit=unit)


def written_reading(comparison: dict) -> str:
    """A short reading of the study's claims that states only what the paired intervals support."""
    summaries, pairs = comparison["runs"], {p["difference"]: p for p in comparison["pairs"]}
    e2_e4, e2_e3, e4_e3 = pairs["Exp4 - Exp2"], pairs["Exp3 - Exp2"], pairs["Exp3 - Exp4"]
    first = f"steps {RAMP_STEPS + 1}-"
    return "\n".join(
        [
            f"- Exp4 vs Exp2, shorter reasoning: Exp4's completions average "
            f"{summaries['Exp4']['mean_completion_length']:.0f} "
            f"tokens against {summaries['Exp2']['mean_completion_length']:.0f} over steps 1-{e2_e4['last_step']} "
            f"(completion tokens, tags and answer included; the cosine reward counts reasoning tokens only). Over "
            f"{first}{e2_e4['last_step']} Exp4 - Exp2 = {_difference_text(e2_e4, 'completion_length')}: "
            f"{claim_verdict(e2_e4, 'completion_length', -1)}.",
            f"- Exp4 vs Exp2, slightly lower accuracy: Exp4 - Exp2 = {_difference_text(e2_e4, 'accuracy')} over "
            f"{first}{e2_e4['last_step']}: {claim_verdict(e2_e4, 'accuracy', -1)}. By window: "
            + ", ".join(
                f"{w['metrics']['accuracy']['difference']:+.3f} in steps {w['steps']}" for w in e2_e4["windows"][1:3]
            )
            + ".",
            f"- Exp3, over-penalised, accuracy drops: over steps 1-{e2_e3['last_step']} batch accuracy averages "
            f"{e2_e3['means_steps_1_to_last']['Exp3']['accuracy']:.3f} for Exp3, "
            f"{e2_e3['means_steps_1_to_last']['Exp2']['accuracy']:.3f} for Exp2 and "
            f"{e4_e3['means_steps_1_to_last']['Exp4']['accuracy']:.3f} for Exp4. Lower than Exp2: "
            f"{claim_verdict(e2_e3, 'accuracy', -1)} (Exp3 - Exp2 = {_difference_text(e2_e3, 'accuracy')}); "
            "lower than Exp4: "
            f"{claim_verdict(e4_e3, 'accuracy', -1)} (Exp3 - Exp4 = {_difference_text(e4_e3, 'accuracy')}).",
            "- All of this rests on one seed per setting and on training-batch accuracy under the study's strict "
            "grader, not on held-out questions. Exp1 (system prompt only) is not in the logs and cannot be tested "
            "from them; run notebook 01.",
        ]
    )


def step_length_accuracy_correlation(df: pd.DataFrame) -> dict:
    """Correlation of a run's per-step mean length and accuracy (steps are autocorrelated: read loosely)."""
    return pearson_with_ci(df["completion_length"], df["accuracy"])


def length_accuracy_table(logs: dict[str, pd.DataFrame], max_step: int | None = None) -> pd.DataFrame:
    """Step-level correlation of completion length and accuracy, over all steps and after the ramp."""
    rows = {}
    for name, df in logs.items():
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


def draw_study_chart(study: dict, kit: dict, metric: str, window: int = 50, max_step: int | None = STUDY_CHART_STEPS):
    """The study's Exp2-vs-Exp4 chart for ``metric`` with Exp3 added, and this kit's runs with the study's settings
    (``kit``: ``utils.analysis.load_kit_logs``) overlaid when present, as the mean over their seeds."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    names = {"Exp2": "standard", "Exp3": "cosine with penalty", "Exp4": "cosine, no penalty"}
    curves = {f"study {exp} ({names[exp]})": df for exp, df in study_experiments(study).items()}
    plot_comparison(curves, metric, window, max_step, ax=ax)
    mine = {
        f"kit {name} ({len(kit[name])} seed{'s' * (len(kit[name]) > 1)})": mean_over_seeds(kit[name])
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
