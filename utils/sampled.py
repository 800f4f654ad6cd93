"""Sampled evaluation: K answers per question, pass@k, majority vote, and whether longer reasoning makes answers right.

Greedy decoding (``utils.evaluate``) stays the headline. Here each of the first ``sampled_eval_limit`` questions is
answered ``sampled_eval_k`` times at the training's sampling settings (temperature 0.9, top-k 50), and every sample is
kept: text, reasoning and completion tokens, truncation, both graders' verdicts and the numeric answer. From them:

- **pass@k** for k = 1, 2, 4, ..., K by the unbiased estimator (Chen et al. 2021: 1 - C(n-c, k) / C(n, k) per
  question, averaged), under both graders;
- **maj@k**: the most frequent numeric answer of k samples (samples without a number abstain; a tie counts as the
  share of the tied answers that are right, what a uniformly random tie-break would score). For k < K it is the mean
  over every k-subset of the K samples (200 random subsets, seeded, when there are more);
- the share of questions **never** solved in K samples and solved in **every** sample;
- **length and correctness within question**: across questions, a hard question takes longer reasoning *and* is
  answered wrong more often, so an across-question correlation mostly measures difficulty. Comparing the correct and
  wrong samples of the *same* question removes that: the mean reasoning length of correct minus wrong samples over the
  questions that have both (bootstrap interval, Wilcoxon signed-rank p), and a conditional (fixed-effects by question)
  logistic regression of correctness on standardised reasoning length (statsmodels' ``ConditionalLogit``), beside the
  naive across-question correlation. Each is given with and without truncated samples: a sample cut at the token
  limit is long and wrong by construction, so keeping it manufactures a negative effect.

Every interval is a 95% percentile bootstrap **over questions** (samples of one question are not independent), 2,000
resamples, seed 0. Correctness for the length analysis and majority vote is the numeric grader's (a number's value,
not its formatting); pass@k is given under both graders.
"""

import itertools
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from utils import runs
from utils.data import build_eval_dataset, eval_set
from utils.evaluate import Sampling, evaluation_identity, generate_completions, grade
from utils.grading import GRADERS, answer_matches, numeric_answer
from utils.rewards import reasoning_length
from utils.stats import format_interval, pearson_with_ci, t_interval

RESAMPLES = 2000
MAX_SUBSETS = 200  # maj@k for k < K: every k-subset of the K samples when there are at most this many
SAMPLED_VERSION = "1"  # bump when the sampling, the records or the metrics change


def ks_for(samples: int) -> list[int]:
    """1, 2, 4, ... up to ``samples`` (which is always included)."""
    return sorted({2**i for i in range(int(math.log2(samples)) + 1)} | {samples})


def sampling_for(cfg, seed: int | None = None) -> Sampling:
    """The sampled evaluation's decoding: the training's temperature and top-k, ``sampled_eval_k`` per question."""
    return Sampling(cfg.sampled_eval_k, cfg.temperature, cfg.top_k, cfg.seed if seed is None else seed)


def sampled_evaluate(
    cfg, model, tokenizer, out_dir, backend=None, lora_path=None, eval_set_name="gsm8k", seed=None, progress=True
) -> dict:
    """Answer the set's first ``cfg.sampled_eval_limit`` questions ``cfg.sampled_eval_k`` times each and write every
    sample and the summary to ``out_dir``. Resumable: questions already answered with the same identity (model,
    questions, prompt, decoding, seed, ...) are kept, the rest are answered; a finished evaluation is reused as it is.
    ``seed`` seeds the sampling (default: the config's). Returns the summary, or {} when switched off (limit 0)."""
    if cfg.sampled_eval_limit == 0:
        return {}
    name = eval_set(eval_set_name).name
    dataset = build_eval_dataset(name, cfg.one_shot, cfg.data_dir, cfg.sampled_eval_limit)
    sampling = sampling_for(cfg, seed)
    identity = {
        **evaluation_identity(cfg, backend, name, dataset),
        "decoding": sampling.describe(),
        "sampled_version": SAMPLED_VERSION,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records_file, summary_file = (out_dir / f for f in runs.sampled_files(name))
    saved = runs.read_json(summary_file) if summary_file.exists() else {}
    if saved.get("identity") != identity:
        runs.write_rows(records_file, [])
        runs.write_json(summary_file, {"identity": identity, "complete": False})
    elif saved.get("complete"):
        print(f"Sampled evaluation on {name} already done in {out_dir}.")
        return saved
    per_batch = max(1, cfg.eval_batch_size // sampling.samples)
    batches = [list(range(first, min(first + per_batch, len(dataset)))) for first in range(0, len(dataset), per_batch)]
    records = runs.read_rows(records_file, report_cut_line=True)
    answered = pd.DataFrame(records).groupby("index").size().to_dict() if records else {}
    done = [b for b in batches if all(answered.get(i) == sampling.samples for i in b)]
    kept = {i for b in done for i in b}
    runs.write_rows(records_file, [r for r in records if r["index"] in kept])  # a batch cut short is drawn again
    started = time.time()
    for indices in tqdm([b for b in batches if b not in done], desc=f"sampling {name}", disable=not progress):
        rows = dataset.select(indices)
        # Seeded per batch of fixed questions, so a resumed evaluation draws what an uninterrupted one would.
        batch_sampling = Sampling(sampling.samples, sampling.temperature, sampling.top_k, sampling.seed + indices[0])
        generations = generate_completions(
            model,
            tokenizer,
            rows["prompt"],
            cfg.eval_max_new_tokens,
            cfg.eval_batch_size,
            backend,
            lora_path,
            progress=False,
            sampling=batch_sampling,
        )
        for position, (index, row) in enumerate(zip(indices, rows)):
            for sample in range(sampling.samples):
                text, tokens, truncated = generations[position * sampling.samples + sample]
                runs.append_row(
                    records_file, sample_record(index, sample, row["answer"], text, tokens, truncated, tokenizer)
                )
    summary = {
        "identity": identity,
        "complete": True,
        "eval_set": name,
        "grader_for_votes_and_length": "numeric",
        **sampled_metrics(pd.DataFrame(runs.read_rows(records_file)), sampling.samples),
        "seconds": round(time.time() - started, 1),
    }
    runs.write_json(summary_file, summary)
    return summary


def sample_record(index, sample, gold, text, tokens, truncated, tokenizer) -> dict:
    verdicts = grade(text, gold)
    return {
        "index": index,
        "sample": sample,
        "gold": gold,
        "completion": text,
        "reasoning_tokens": reasoning_length(text, tokenizer),
        "completion_tokens": tokens,
        "truncated": truncated,
        **{f"correct_{g}": verdicts[f"correct_{g}"] for g in GRADERS},
        "answer": numeric_answer(text),
    }


def read_samples(folder, eval_set_name="gsm8k") -> pd.DataFrame:
    return pd.DataFrame(runs.read_rows(Path(folder) / runs.sampled_files(eval_set_name)[0]))


# ---- metrics, on the records of one model


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of the chance that at least one of k samples is right, from c right of n (Chen et al.)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_correct(answers: list, right: dict) -> float:
    """Credit of a majority vote over ``answers`` (None abstains): 1 if the most frequent answer is right, the share
    of right answers among the tied ones on a tie, 0 if every sample abstains. ``right``: answer -> bool."""
    votes = pd.Series([a for a in answers if a is not None], dtype=object).value_counts()
    if votes.empty:
        return 0.0
    tied = votes[votes == votes.iloc[0]].index
    return float(np.mean([right[a] for a in tied]))


def majority_at_k(answers: list, right: dict, k: int, rng) -> float:
    """maj@k for k <= len(answers): the mean vote credit over every k-subset (``MAX_SUBSETS`` random ones when there
    are more)."""
    n = len(answers)
    if math.comb(n, k) <= MAX_SUBSETS:
        subsets = list(itertools.combinations(range(n), k))
    else:
        subsets = [rng.choice(n, size=k, replace=False) for _ in range(MAX_SUBSETS)]
    return float(np.mean([majority_correct([answers[i] for i in s], right) for s in subsets]))


def per_question(records: pd.DataFrame, samples: int, seed: int = 0) -> pd.DataFrame:
    """One row per question: samples, right samples under each grader, pass@k and maj@k for every k."""
    rng = np.random.default_rng(seed)
    rows = []
    for index, group in records.groupby("index", sort=True):
        answers = [None if pd.isna(a) else a for a in group["answer"]]  # pandas reads a missing answer as NaN
        right = {a: answer_matches(a, group["gold"].iloc[0]) for a in set(answers) if a is not None}
        row = {"index": index, "n": len(group)}
        for grader in GRADERS:
            correct = int(group[f"correct_{grader}"].sum())
            row[f"c_{grader}"] = correct
            for k in ks_for(samples):
                row[f"pass@{k}_{grader}"] = pass_at_k(len(group), correct, k)
        for k in ks_for(samples):
            row[f"maj@{k}"] = majority_at_k(answers, right, k, rng)
        rows.append(row)
    return pd.DataFrame(rows).set_index("index")


def bootstrap_over_questions(values, seed: int = 0) -> dict:
    """Mean of per-question values with a 95% percentile bootstrap interval, resampling questions."""
    values = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(RESAMPLES, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(values.mean()), "ci95": [float(low), float(high)], "questions": len(values)}


def sampled_metrics(records: pd.DataFrame, samples: int) -> dict:
    """pass@k under both graders, maj@k, the never and always solved shares, and length vs correctness."""
    questions = per_question(records, samples)
    metrics = {"questions": len(questions), "samples_per_question": samples, "samples": len(records)}
    for grader in GRADERS:
        metrics[f"pass_at_k_{grader}"] = {
            str(k): bootstrap_over_questions(questions[f"pass@{k}_{grader}"]) for k in ks_for(samples)
        }
    metrics["maj_at_k"] = {str(k): bootstrap_over_questions(questions[f"maj@{k}"]) for k in ks_for(samples)}
    metrics["never_solved"] = bootstrap_over_questions(questions["c_numeric"] == 0)
    metrics["always_solved"] = bootstrap_over_questions(questions["c_numeric"] == questions["n"])
    metrics["length"] = {
        "all samples": length_effects(records),
        "without truncated samples": length_effects(records[~records["truncated"].astype(bool)]),
    }
    return metrics


def length_effects(records: pd.DataFrame, grader: str = "numeric") -> dict:
    """Does a question's longer reasoning go with its right answers? Within question (correct minus wrong, the
    conditional logit) and, for comparison, across questions (the naive correlation, confounded by difficulty)."""
    from scipy.stats import wilcoxon

    correct = records[f"correct_{grader}"].astype(bool)
    by_question = records.assign(correct=correct).groupby("index")
    mixed = by_question["correct"].transform(lambda c: 0 < c.sum() < len(c)).astype(bool)
    within = records[mixed].assign(correct=correct[mixed])
    differences = [
        g.loc[g["correct"], "reasoning_tokens"].mean() - g.loc[~g["correct"], "reasoning_tokens"].mean()
        for _, g in within.groupby("index")
    ]
    result = {"samples": len(records), "questions_with_both": len(differences)}
    if len(differences) >= 2:
        nonzero = [d for d in differences if d != 0]
        result["within_question_difference"] = {
            **bootstrap_over_questions(differences),
            "what": "mean reasoning tokens of correct minus wrong samples of the same question",
            "wilcoxon_p": float(wilcoxon(nonzero).pvalue) if nonzero else 1.0,
        }
        result["conditional_logit"] = conditional_logit(within)
    per = by_question.agg(length=("reasoning_tokens", "mean"), accuracy=("correct", "mean"))
    if len(per) >= 3:
        result["across_questions_correlation"] = {
            **pearson_with_ci(per["length"], per["accuracy"]),
            "what": "naive: questions' mean reasoning tokens against their accuracy (difficulty drives both)",
        }
    return result


def conditional_logit(within: pd.DataFrame) -> dict:
    """Correctness on reasoning length standardised over these samples, with a fixed effect per question
    (statsmodels' ConditionalLogit): the odds ratio per standard deviation of length, and its 95% interval."""
    from statsmodels.discrete.conditional_models import ConditionalLogit

    sd = within["reasoning_tokens"].std()
    if not sd > 0:
        return {"odds_ratio_per_sd": float("nan"), "ci95": [float("nan")] * 2}
    z = ((within["reasoning_tokens"] - within["reasoning_tokens"].mean()) / sd).to_numpy()[:, None]
    fit = ConditionalLogit(within["correct"].astype(float).to_numpy(), z, groups=within["index"].to_numpy()).fit(
        disp=False
    )
    low, high = np.exp(fit.conf_int()[0])
    return {
        "odds_ratio_per_sd": float(np.exp(fit.params[0])),
        "ci95": [float(low), float(high)],
        "p_value": float(fit.pvalues[0]),
        "sd_tokens": float(sd),
        "questions": int(within["index"].nunique()),
    }


def paired_pass_at_k(trained: pd.DataFrame, untrained: pd.DataFrame, samples: int, grader: str = "numeric") -> dict:
    """Trained minus untrained pass@k (and maj@k) on the questions both answered, each with a paired bootstrap
    interval over questions (the same resampled questions for both)."""
    a, b = per_question(untrained, samples), per_question(trained, samples)
    common = a.index.intersection(b.index)
    result = {"questions": len(common), "grader": grader}
    for k in ks_for(samples):
        result[f"pass@{k}"] = bootstrap_over_questions(
            b.loc[common, f"pass@{k}_{grader}"] - a.loc[common, f"pass@{k}_{grader}"]
        )
        result[f"maj@{k}"] = bootstrap_over_questions(b.loc[common, f"maj@{k}"] - a.loc[common, f"maj@{k}"])
    return result


# ---- tables and charts


def load_summary(folder, eval_set_name="gsm8k") -> dict:
    """A finished sampled evaluation's summary in ``folder``; {} when there is none."""
    path = Path(folder) / runs.sampled_files(eval_set_name)[1]
    summary = runs.read_json(path) if path.is_file() else {}
    return summary if summary.get("complete") else {}


def paired_table(run_dir, baseline_dir, samples: int, eval_set_name="gsm8k", grader: str = "numeric") -> pd.DataFrame:
    """Trained minus untrained pass@k and maj@k for each k on the same questions, with paired bootstrap intervals."""
    trained, untrained = read_samples(run_dir, eval_set_name), read_samples(baseline_dir, eval_set_name)
    if trained.empty or untrained.empty:
        return pd.DataFrame()
    paired = paired_pass_at_k(trained, untrained, samples, grader)
    rows = {
        f"k={k}": {
            f"pass@k trained - untrained ({grader})": _interval(paired[f"pass@{k}"], 3),
            "maj@k trained - untrained": _interval(paired[f"maj@{k}"], 3),
        }
        for k in ks_for(samples)
    }
    return pd.DataFrame(rows).T.rename_axis(f"{paired['questions']} questions")


def summaries_by_experiment(runs_root="runs", eval_set_name="gsm8k") -> dict[str, list[dict]]:
    """Every finished sampled evaluation under ``runs_root``: each untrained baseline, and each experiment (grouped by
    its config.json, as ``utils.analysis`` does) with one summary per seed."""
    from utils.analysis import model_folders

    found = {
        label: [load_summary(folder, eval_set_name) for folder in folders]
        for label, folders in model_folders(runs_root).items()
    }
    return {label: [s for s in summaries if s] for label, summaries in found.items() if any(summaries)}


def _over_seeds(metrics: list[dict], digits: int = 3) -> str:
    """One metric over seeds: the mean with a t-interval over seeds; with one seed, its bootstrap interval."""
    if len(metrics) == 1:
        return _interval(metrics[0], digits)
    spread = t_interval([m["mean"] for m in metrics])
    return format_interval(spread["mean"], spread["ci95"], digits)


def experiments_table(runs_root="runs", eval_set_name="gsm8k") -> pd.DataFrame:
    """Across experiments (and the untrained models): pass@1, pass@K and maj@K under the numeric grader, the never
    and always solved shares, and whether longer reasoning goes with right answers within a question (without
    truncated samples), each over seeds when there are several (t-interval over seeds; one seed: bootstrap over
    questions)."""
    rows = {}
    for label, summaries in summaries_by_experiment(runs_root, eval_set_name).items():
        k = str(summaries[0]["samples_per_question"])
        lengths = [s["length"]["without truncated samples"] for s in summaries]
        rows[label] = {
            "seeds": len(summaries),
            "questions x samples": f"{summaries[0]['questions']} x {k}",
            "pass@1": _over_seeds([s["pass_at_k_numeric"]["1"] for s in summaries]),
            f"pass@{k}": _over_seeds([s["pass_at_k_numeric"][k] for s in summaries]),
            f"maj@{k}": _over_seeds([s["maj_at_k"][k] for s in summaries]),
            "never solved": _over_seeds([s["never_solved"] for s in summaries]),
            "always solved": _over_seeds([s["always_solved"] for s in summaries]),
            "correct - wrong tokens, same question": _length_over_seeds(lengths, "within_question_difference", 1),
            "odds ratio per SD (same question)": _length_over_seeds(lengths, "conditional_logit", 2),
            "naive r across questions": _length_over_seeds(lengths, "across_questions_correlation", 2),
        }
    return pd.DataFrame(rows).T


def _length_over_seeds(lengths: list[dict], measure: str, digits: int) -> str:
    """A length measure over seeds; "-" when some seed had too few questions with right and wrong samples."""
    value = {"conditional_logit": "odds_ratio_per_sd", "across_questions_correlation": "r"}.get(measure, "mean")
    found = [x[measure] for x in lengths if measure in x and x[measure].get(value) == x[measure].get(value)]
    if len(found) < len(lengths):
        return "-"
    return _over_seeds([{"mean": m[value], "ci95": m["ci95"]} for m in found], digits)


def mean_curves(runs_root="runs", eval_set_name="gsm8k") -> dict[str, dict]:
    """Per experiment (and untrained model), a pass@k curve to draw: the one seed's, or the mean over seeds."""
    curves = {}
    for label, summaries in summaries_by_experiment(runs_root, eval_set_name).items():
        if len(summaries) == 1:
            curves[label] = summaries[0]
            continue
        merged = {"samples_per_question": summaries[0]["samples_per_question"]}
        for grader in GRADERS:
            key = f"pass_at_k_{grader}"
            merged[key] = {
                k: {
                    "mean": float(np.mean([s[key][k]["mean"] for s in summaries])),
                    "ci95": t_interval([s[key][k]["mean"] for s in summaries])["ci95"],
                }
                for k in summaries[0][key]
            }
        curves[f"{label} ({len(summaries)} seeds)"] = merged
    return curves


def _interval(metric: dict, digits: int = 3) -> str:
    return format_interval(metric["mean"], metric["ci95"], digits)


def sampled_table(summaries: dict[str, dict]) -> pd.DataFrame:
    """One row per model (e.g. untrained, trained): pass@1 and pass@K under both graders, maj@K, never and always
    solved, and the within-question length effects without truncated samples, with intervals and n."""
    rows = {}
    for name, s in summaries.items():
        if not s:
            continue
        k = str(s["samples_per_question"])
        length = s["length"]["without truncated samples"]
        rows[name] = {
            "questions x samples": f"{s['questions']} x {k}",
            "pass@1 strict": _interval(s["pass_at_k_strict"]["1"]),
            f"pass@{k} strict": _interval(s["pass_at_k_strict"][k]),
            "pass@1 numeric": _interval(s["pass_at_k_numeric"]["1"]),
            f"pass@{k} numeric": _interval(s["pass_at_k_numeric"][k]),
            f"maj@{k}": _interval(s["maj_at_k"][k]),
            "never solved": _interval(s["never_solved"]),
            "always solved": _interval(s["always_solved"]),
            "correct - wrong tokens, same question": _interval(length["within_question_difference"], 1)
            if "within_question_difference" in length
            else "too few questions",
            "odds ratio per SD of length": _ratio(length.get("conditional_logit")),
        }
    return pd.DataFrame(rows).T


def _ratio(fit: dict | None) -> str:
    if not fit or not fit.get("odds_ratio_per_sd") == fit.get("odds_ratio_per_sd"):
        return "too few questions"
    return format_interval(fit["odds_ratio_per_sd"], fit["ci95"], 2)


def length_table(summaries: dict[str, dict]) -> pd.DataFrame:
    """Length against correctness per model, with and without truncated samples, within and across questions."""
    rows = []
    for name, s in summaries.items():
        for which, effects in (s or {}).get("length", {}).items():
            within, fit = effects.get("within_question_difference"), effects.get("conditional_logit")
            naive = effects.get("across_questions_correlation")
            rows.append(
                {
                    "model": name,
                    "samples": which,
                    "questions with right and wrong samples": effects["questions_with_both"],
                    "correct - wrong reasoning tokens (same question)": _interval(within, 1) if within else "-",
                    "Wilcoxon p": round(within["wilcoxon_p"], 4) if within else None,
                    "odds ratio per SD (conditional logit)": _ratio(fit),
                    "naive r across questions": format_interval(naive["r"], naive["ci95"], 2, signed=True)
                    if naive
                    else "-",
                }
            )
    return pd.DataFrame(rows)


def plot_pass_at_k(summaries: dict[str, dict], grader: str = "numeric", ax=None):
    """pass@k against k (log scale) per model: a trained curve above the untrained at k = 1 that meets or falls below
    it at large k is sharpening, not new solving."""
    import matplotlib.pyplot as plt

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
    import matplotlib.pyplot as plt

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


# An assumption, not a measurement, as for the greedy evaluation (utils.evaluate): one decoding step of a batch of 64
# sequences of the 0.5B model on a T4 takes about 25 ms, and each batch runs to the token limit.
def sampled_minutes_estimate(cfg) -> dict:
    """Estimated T4 minutes of one model's sampled evaluation, with the arithmetic."""
    from utils.data import EVAL_SETS
    from utils.evaluate import ASSUMED_T4_SECONDS_PER_DECODE_STEP

    questions = min(cfg.sampled_eval_limit or EVAL_SETS["gsm8k"].size, EVAL_SETS["gsm8k"].size)
    per_batch = max(1, cfg.eval_batch_size // cfg.sampled_eval_k)
    batches = -(-questions // per_batch)
    minutes = batches * cfg.eval_max_new_tokens * ASSUMED_T4_SECONDS_PER_DECODE_STEP / 60
    return {
        "questions": questions,
        "samples": questions * cfg.sampled_eval_k,
        "minutes": minutes,
        "arithmetic": f"{questions} questions x {cfg.sampled_eval_k} samples in batches of {per_batch} questions "
        f"({per_batch * cfg.sampled_eval_k} sequences): {batches} batches x {cfg.eval_max_new_tokens} decoding steps "
        f"x {ASSUMED_T4_SECONDS_PER_DECODE_STEP * 1000:.0f} ms = {minutes:.0f} min",
    }
