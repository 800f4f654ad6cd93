"""Held-out evaluation: greedy decoding, both graders, intervals, per-question records."""

import dataclasses
import statistics
import time
from pathlib import Path

from utils import runs
from utils.data import EVAL_SETS, build_eval_dataset, eval_set
from utils.generation import EVAL_VERSION, evaluation_identity, generate_completions, weights_fingerprint
from utils.grading import GRADERS, grade
from utils.model import explain_out_of_memory
from utils.prompts import prompt_label
from utils.runtime import rank_and_processes
from utils.stats import format_interval, wilson_interval


def summarize(records: list[dict]) -> dict:
    """Accuracy under each grader with 95% Wilson intervals and n, format compliance, lengths, truncation."""
    n = len(records)

    def share(key):
        return sum(r[key] for r in records) / n if n else float("nan")

    summary = {"n": n}
    for grader in GRADERS:
        summary[f"accuracy_{grader}"] = share(f"correct_{grader}")
        summary[f"accuracy_{grader}_ci95"] = list(wilson_interval(sum(r[f"correct_{grader}"] for r in records), n))
    for check in ("format_strict", "format_soft"):
        summary[check] = share(check)
        summary[f"{check}_ci95"] = list(wilson_interval(sum(r[check] for r in records), n))
    tokens = [r["completion_tokens"] for r in records]
    summary["mean_completion_tokens"] = statistics.fmean(tokens) if tokens else float("nan")
    summary["median_completion_tokens"] = statistics.median(tokens) if tokens else float("nan")
    summary["truncated_share"] = share("truncated")
    return summary


def questions_limit(cfg, name: str) -> int | None:
    """How many questions of a set to evaluate: ``eval_limit`` for GSM8K, ``ood_eval_limit`` for the others."""
    return cfg.eval_limit if name == "gsm8k" else cfg.ood_eval_limit


def evaluate(
    cfg, model, tokenizer, out_dir=None, loaded=None, lora_path=None, progress=True, eval_set_name="gsm8k", shard=True
) -> dict:
    """Evaluate on an evaluation set (``utils.data.EVAL_SETS``; GSM8K's test split by default) with the experiment's
    prompt, on its first ``questions_limit(cfg, eval_set_name)`` questions; writes the set's records and summary to
    ``out_dir``. Under torchrun each process generates a shard and the first writes the gathered records (every
    process must call it then; ``shard=False`` evaluates in this process alone)."""
    name = eval_set(eval_set_name).name
    limit = questions_limit(cfg, name)
    dataset = build_eval_dataset(name, cfg.one_shot, cfg.data_dir, limit)
    if len(dataset) == 0:
        raise ValueError(f"The evaluation set {name} has no questions: check its data (data_dir={cfg.data_dir!r}).")
    rank, processes = rank_and_processes() if shard else (0, 1)
    mine = dataset.select(range(rank, len(dataset), processes))
    started = time.time()
    with explain_out_of_memory(cfg, "evaluation", loaded):
        generations = generate_completions(
            model, tokenizer, mine["prompt"], cfg.eval_max_new_tokens, cfg.eval_batch_size, loaded, lora_path,
            progress and rank == 0,
        )  # fmt: skip
    records = [
        {
            "index": rank + k * processes,
            "question": row["question"],
            "gold": row["answer"],
            "completion": text,
            "completion_tokens": n,
            "truncated": hit,
            **grade(text, row["answer"]),
        }
        for k, (row, (text, n, hit)) in enumerate(zip(mine, generations))
    ]
    if processes > 1:
        import torch.distributed as dist

        shards = [None] * processes
        dist.all_gather_object(shards, records)
        records = sorted((r for shard_records in shards for r in shard_records), key=lambda r: r["index"])
    summary = summarize(records)
    summary.update(
        eval_set=name,
        headline_grader=EVAL_SETS[name].headline_grader,
        limit=limit,
        prompt=prompt_label(cfg.one_shot),
        decoding="greedy",
        max_new_tokens=cfg.eval_max_new_tokens,
        graders={grader: f"{function.__module__}.{function.__name__}" for grader, function in GRADERS.items()},
        eval_version=EVAL_VERSION,
        model=cfg.model_name,
        identity=evaluation_identity(cfg, loaded, name, dataset, lora_path),
        seconds=round(time.time() - started, 1),
    )
    if out_dir is not None and rank == 0:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        records_file, summary_file = runs.eval_files(name)
        runs.write_rows(out_dir / records_file, records)
        runs.write_json(out_dir / summary_file, summary)
    return summary


def evaluated_sets(cfg) -> list[str]:
    """The sets a run evaluates: GSM8K's test split, and the chosen out-of-distribution sets unless switched off."""
    chosen = ["gsm8k", *cfg.ood_set_names]
    return [name for name in EVAL_SETS if name in chosen and questions_limit(cfg, name) != 0]


def saved_evaluation(cfg, out_dir, name: str, loaded=None, lora_path=None) -> dict | None:
    """The summary saved in ``out_dir`` for a set when it was evaluated with the same identity (questions, prompt,
    model, adapter, decoding, engine, ...), so a rerun after a disconnect skips what is done; else None. Trained
    weights without a saved adapter (full fine-tuning) are never reused: nothing on disk says which weights ran."""
    path = Path(out_dir) / runs.eval_files(name)[1]
    if not path.exists() or (lora_path is not None and weights_fingerprint(lora_path) is None):
        return None
    saved = runs.read_json(path)
    dataset = build_eval_dataset(name, cfg.one_shot, cfg.data_dir, questions_limit(cfg, name))
    return saved if saved.get("identity") == evaluation_identity(cfg, loaded, name, dataset, lora_path) else None


def evaluate_all(cfg, model, tokenizer, out_dir, loaded=None, lora_path=None) -> dict:
    """Every evaluated set, GSM8K first, each reused when already evaluated with the same identity; returns the
    summaries by set."""
    summaries = {}
    for name in evaluated_sets(cfg):
        summaries[name] = saved_evaluation(cfg, out_dir, name, loaded, lora_path)
        if summaries[name] is not None:
            print(f"{name} already evaluated in {out_dir}.")
        else:
            summaries[name] = evaluate(cfg, model, tokenizer, out_dir, loaded, lora_path, eval_set_name=name)
    return summaries


def summaries_table(summaries: dict):
    """Evaluation summaries by set as a table: the headline grader's accuracy with its 95% interval and n, both
    graders' accuracies, format compliance, lengths and truncation."""
    import pandas as pd

    rows = {}
    for name, s in summaries.items():
        headline = s["headline_grader"]
        rows[name] = {
            "n": s["n"],
            "headline grader": headline,
            "accuracy [95% CI]": format_interval(s[f"accuracy_{headline}"], s[f"accuracy_{headline}_ci95"]),
            **{g: round(s[f"accuracy_{g}"], 3) for g in GRADERS},
            "format_strict": round(s["format_strict"], 3),
            "mean_tokens": round(s["mean_completion_tokens"], 1),
            "truncated": round(s["truncated_share"], 3),
        }
    return pd.DataFrame(rows).T.rename_axis("eval set")


def probe_config(cfg):
    """The config the held-out probe evaluates with: the first ``probe_size`` test questions."""
    return dataclasses.replace(cfg, eval_limit=cfg.probe_size)
