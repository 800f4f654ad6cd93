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

Every interval is a 95% percentile bootstrap **over questions** (samples of one question are not independent),
``utils.stats.bootstrap_mean``. Correctness for the length analysis and majority vote is the numeric grader's (a
number's value, not its formatting); pass@k is given under both graders.
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
from utils.generation import Sampling, evaluation_identity, generate_completions
from utils.grading import GRADERS, answer_matches, grade, numeric_answer
from utils.rewards import reasoning_length
from utils.stats import bootstrap_mean, format_interval, pearson_with_ci

MAX_SUBSETS = 200  # maj@k for k < K: every k-subset of the K samples when there are at most this many
SAMPLED_VERSION = "1"  # bump when the sampling, the records or the metrics change


def k_values(samples: int) -> list[int]:
    """1, 2, 4, ... up to ``samples`` (which is always included)."""
    return sorted({2**i for i in range(int(math.log2(samples)) + 1)} | {samples})


def sampling_for(cfg, seed: int | None = None) -> Sampling:
    """The sampled evaluation's decoding: the training's temperature and top-k, ``sampled_eval_k`` per question."""
    return Sampling(cfg.sampled_eval_k, cfg.temperature, cfg.top_k, cfg.seed if seed is None else seed)


def sampled_evaluate(
    cfg, model, tokenizer, out_dir, loaded=None, lora_path=None, eval_set_name="gsm8k", seed=None, progress=True
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
        **evaluation_identity(cfg, loaded, name, dataset, lora_path),
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
            loaded,
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
            for k in k_values(samples):
                row[f"pass@{k}_{grader}"] = pass_at_k(len(group), correct, k)
        for k in k_values(samples):
            row[f"maj@{k}"] = majority_at_k(answers, right, k, rng)
        rows.append(row)
    return pd.DataFrame(rows).set_index("index")


def sampled_metrics(records: pd.DataFrame, samples: int) -> dict:
    """pass@k under both graders, maj@k, the never and always solved shares, and length vs correctness."""
    questions = per_question(records, samples)
    metrics = {"questions": len(questions), "samples_per_question": samples, "samples": len(records)}
    for grader in GRADERS:
        metrics[f"pass_at_k_{grader}"] = {
            str(k): bootstrap_mean(questions[f"pass@{k}_{grader}"]) for k in k_values(samples)
        }
    metrics["maj_at_k"] = {str(k): bootstrap_mean(questions[f"maj@{k}"]) for k in k_values(samples)}
    metrics["never_solved"] = bootstrap_mean(questions["c_numeric"] == 0)
    metrics["always_solved"] = bootstrap_mean(questions["c_numeric"] == questions["n"])
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
            **bootstrap_mean(differences),
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
    for k in k_values(samples):
        result[f"pass@{k}"] = bootstrap_mean(
            b.loc[common, f"pass@{k}_{grader}"] - a.loc[common, f"pass@{k}_{grader}"]
        )
        result[f"maj@{k}"] = bootstrap_mean(b.loc[common, f"maj@{k}"] - a.loc[common, f"maj@{k}"])
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
        for k in k_values(samples)
    }
    return pd.DataFrame(rows).T.rename_axis(f"{paired['questions']} questions")


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
