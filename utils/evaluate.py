"""Held-out evaluation: greedy decoding, both graders, intervals, per-question records."""

import dataclasses
import hashlib
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from utils import runs
from utils.data import EVAL_SETS, build_eval_dataset, eval_set
from utils.grading import GRADERS, SOFT_FORMAT_RE, STRICT_FORMAT_RE
from utils.model import explain_out_of_memory, untrained_model_id
from utils.stats import wilson_interval

EVAL_VERSION = "2"  # bump when decoding or grading changes, so old and new summaries are never mixed


def chat_texts(tokenizer, prompts: list) -> list[str]:
    return [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]


@dataclass(frozen=True)
class Sampling:
    """Sampled decoding: ``samples`` completions per prompt at a temperature and top-k (the training's, for the sampled
    evaluation), seeded so a rerun draws the same completions. Everywhere else decoding is greedy."""

    samples: int
    temperature: float
    top_k: int
    seed: int

    def describe(self) -> str:
        top_k = f"top-k {self.top_k}" if self.top_k else "no top-k"
        return f"sampled: {self.samples} per question, temperature {self.temperature}, {top_k}, seed {self.seed}"


def _generate_transformers(
    model, tokenizer, texts, max_new_tokens, batch_size, progress, sampling=None
) -> list[tuple]:
    """Batched ``generate`` with left padding, greedy or ``sampling``; (text, tokens, hit the limit) per completion,
    prompt by prompt. With sampling a batch holds ``batch_size`` completions: ``batch_size // samples`` prompts."""
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    per_prompt = sampling.samples if sampling else 1
    prompts_per_batch = max(1, batch_size // per_prompt)
    if sampling is None:  # plain greedy: override the sampling settings and repetition penalty (1.1) of Qwen's config
        decoding = dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        decoding = dict(
            do_sample=True,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=1.0,
            num_return_sequences=per_prompt,
        )
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    results = []
    try:
        for start in tqdm(
            range(0, len(texts), prompts_per_batch), desc="generating", disable=not progress, unit="batch"
        ):
            batch = tokenizer(
                texts[start : start + prompts_per_batch], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                if sampling is not None:
                    torch.manual_seed(sampling.seed + start)  # per batch: a resumed evaluation draws the same samples
                out = model.generate(
                    **batch,
                    **decoding,
                    max_new_tokens=max_new_tokens,
                    repetition_penalty=1.0,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            for row in out[:, batch["input_ids"].shape[1] :].tolist():
                stop = next((i for i, t in enumerate(row) if t in stop_ids), None)
                n = len(row) if stop is None else stop + 1
                results.append((tokenizer.decode(row[:n], skip_special_tokens=True), n, stop is None))
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return results


def _generate_vllm(model, texts, max_new_tokens, lora_path, sampling=None) -> list[tuple]:
    """Unsloth's vLLM engine (``fast_inference``), with the trained LoRA when one is given; ``n`` samples per prompt
    share the prompt's cache."""
    from vllm import SamplingParams

    if sampling is None:
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
    else:
        params = SamplingParams(
            n=sampling.samples,
            temperature=sampling.temperature,
            top_k=sampling.top_k or -1,  # vLLM's "off"
            top_p=1.0,
            seed=sampling.seed,
            max_tokens=max_new_tokens,
        )
    lora = model.load_lora(str(lora_path)) if lora_path else None
    outputs = model.fast_generate(texts, sampling_params=params, lora_request=lora, use_tqdm=True)
    return [(c.text, len(c.token_ids), c.finish_reason == "length") for o in outputs for c in o.outputs]


def generate_completions(
    model,
    tokenizer,
    prompts,
    max_new_tokens,
    batch_size=64,
    backend=None,
    lora_path=None,
    progress=True,
    sampling=None,
) -> list[tuple]:
    """(text, tokens, hit the limit) per completion: one per prompt, greedy, or ``sampling.samples`` per prompt, prompt
    by prompt. The vLLM engine serves the base model plus a saved LoRA; after full fine-tuning there is no adapter to
    load, so the trained weights are decoded with ``generate``."""
    texts = chat_texts(tokenizer, prompts)
    if backend is not None and backend.fast_inference and (lora_path is None or Path(lora_path).exists()):
        return _generate_vllm(model, texts, max_new_tokens, lora_path, sampling)
    if backend is not None and backend.unsloth:
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)
        try:
            return _generate_transformers(model, tokenizer, texts, max_new_tokens, batch_size, progress, sampling)
        finally:
            FastLanguageModel.for_training(model)
    return _generate_transformers(model, tokenizer, texts, max_new_tokens, batch_size, progress, sampling)


def grade(completion: str, gold: str) -> dict:
    verdicts = {f"correct_{name}": grader(completion, gold) for name, grader in GRADERS.items()}
    return {
        **verdicts,
        "format_strict": bool(STRICT_FORMAT_RE.match(completion)),
        "format_soft": bool(SOFT_FORMAT_RE.match(completion)),
    }


def summarize(records: list[dict]) -> dict:
    """Accuracy under each grader with 95% Wilson intervals and n, format compliance, lengths, truncation."""
    n = len(records)

    def share(key):
        return sum(r[key] for r in records) / n if n else float("nan")

    summary = {"n": n}
    for grader in GRADERS:
        k = sum(r[f"correct_{grader}"] for r in records)
        summary[f"accuracy_{grader}"] = share(f"correct_{grader}")
        summary[f"accuracy_{grader}_ci95"] = list(wilson_interval(k, n))
    summary["format_strict"], summary["format_soft"] = share("format_strict"), share("format_soft")
    tokens = [r["completion_tokens"] for r in records]
    summary["mean_completion_tokens"] = statistics.fmean(tokens) if tokens else float("nan")
    summary["median_completion_tokens"] = statistics.median(tokens) if tokens else float("nan")
    summary["truncated_share"] = share("truncated")
    return summary


def questions_limit(cfg, name: str) -> int | None:
    """How many questions of a set to evaluate: ``eval_limit`` for GSM8K, ``ood_eval_limit`` for the others."""
    return cfg.eval_limit if name == "gsm8k" else cfg.ood_eval_limit


def _process_group() -> tuple[int, int]:
    """(rank, processes) under torchrun / accelerate launch once the process group is up; (0, 1) otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def evaluation_identity(cfg, backend, name: str, dataset) -> dict:
    """Everything that decides an evaluation's numbers besides the weights: the questions themselves (a fingerprint
    of their text and golds, so another data copy or limit is another evaluation), the prompt, the model, decoding,
    the batch (padding changes 16-bit numerics), the engine and dtype, and the grading version."""
    rows = json.dumps([list(dataset["question"]), list(dataset["answer"])])
    return {
        "model": untrained_model_id(cfg.model_name, cfg.seed),
        "eval_set": name,
        "questions": len(dataset),
        "questions_sha256": hashlib.sha256(rows.encode()).hexdigest()[:16],
        "prompt": "one-shot" if cfg.one_shot else "system prompt only",
        "decoding": "greedy",
        "max_new_tokens": cfg.eval_max_new_tokens,
        "batch_size": cfg.eval_batch_size,
        "backend": backend.name if backend is not None else None,
        "dtype": backend.dtype if backend is not None else None,
        "engine": "vllm" if backend is not None and backend.fast_inference else "generate",
        "eval_version": EVAL_VERSION,
    }


def evaluate(
    cfg, model, tokenizer, out_dir=None, backend=None, lora_path=None, progress=True, eval_set_name="gsm8k", shard=True
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
    rank, processes = _process_group() if shard else (0, 1)
    mine = dataset.select(range(rank, len(dataset), processes))
    started = time.time()
    with explain_out_of_memory(cfg, "evaluation", backend):
        generations = generate_completions(
            model,
            tokenizer,
            mine["prompt"],
            cfg.eval_max_new_tokens,
            cfg.eval_batch_size,
            backend,
            lora_path,
            progress and rank == 0,
        )
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
        prompt="one-shot" if cfg.one_shot else "system prompt only",
        decoding="greedy",
        max_new_tokens=cfg.eval_max_new_tokens,
        graders={grader: f"{function.__module__}.{function.__name__}" for grader, function in GRADERS.items()},
        eval_version=EVAL_VERSION,
        model=cfg.model_name,
        identity=evaluation_identity(cfg, backend, name, dataset),
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
    """The sets a notebook evaluates: GSM8K's test split, and the out-of-distribution sets unless switched off."""
    return [name for name in EVAL_SETS if questions_limit(cfg, name) != 0]


def evaluate_all(cfg, model, tokenizer, out_dir, backend=None, lora_path=None) -> dict:
    """Every evaluated set, GSM8K first; returns the summaries by set."""
    return {
        name: evaluate(cfg, model, tokenizer, out_dir, backend, lora_path, eval_set_name=name)
        for name in evaluated_sets(cfg)
    }


def baseline_dir(cfg) -> Path:
    """Where the untrained model's evaluations go: one folder per base model and prompt, shared by every seed and
    experiment that starts from them (random weights differ by seed, so they get one each)."""
    model = untrained_model_id(cfg.model_name, cfg.seed).replace("/", "--")
    return Path(cfg.run_root) / f"baseline__{model}__{'one-shot' if cfg.one_shot else 'system-prompt'}"


def evaluate_baseline(cfg, model, tokenizer, backend=None) -> dict:
    """Evaluate the untrained model with the experiment's prompt on every evaluated set, and sampled on GSM8K: the
    numbers training must beat. A set already evaluated with the same identity (``evaluation_identity``: model,
    questions, prompt, decoding, engine, ...) is reused; anything else is evaluated again. Call it before training (a
    fresh LoRA adapter leaves the model unchanged). Returns the greedy summaries by set."""
    out_dir = baseline_dir(cfg)
    summaries = {}
    for name in evaluated_sets(cfg):
        path = out_dir / runs.eval_files(name)[1]
        saved = runs.read_json(path) if path.exists() else {}
        dataset = build_eval_dataset(name, cfg.one_shot, cfg.data_dir, questions_limit(cfg, name))
        if saved.get("identity") == evaluation_identity(cfg, backend, name, dataset):
            print(f"Baseline on {name} already evaluated in {out_dir}.")
            summaries[name] = saved
        else:
            summaries[name] = evaluate(cfg, model, tokenizer, out_dir, backend, eval_set_name=name)
    sampled_evaluation(cfg, model, tokenizer, out_dir, backend, seed=0)  # one sampling seed: shared by every run
    harness_evaluate(cfg, model, tokenizer, out_dir, backend, reuse=True)
    return summaries


def one_process(evaluation, name: str):
    """``evaluation``, run where it can: these evaluations generate in one process, so under torchrun they are
    skipped, with a message (run the experiment on one process for them)."""

    def run(cfg, *args, **kwargs) -> dict:
        if _process_group()[1] > 1:
            print(f"The {name} evaluation runs in one process: skipped under torchrun.")
            return {}
        return evaluation(cfg, *args, **kwargs)

    return run


def sampled_evaluation(cfg, model, tokenizer, out_dir, backend=None, lora_path=None, seed=None) -> dict:
    """``utils.sampled.sampled_evaluate`` of GSM8K unless switched off (``sampled_eval_limit=0``)."""
    from utils.sampled import sampled_evaluate

    return one_process(sampled_evaluate, "sampled")(cfg, model, tokenizer, out_dir, backend, lora_path, seed=seed)


def harness_evaluate(cfg, model, tokenizer, out_dir, backend=None, reuse=False) -> dict:
    """``utils.harness.harness_evaluate``: GSM8K through lm-evaluation-harness, unless ``harness_eval_limit=0``."""
    from utils import harness

    return one_process(harness.harness_evaluate, "lm-evaluation-harness")(
        cfg, model, tokenizer, out_dir, backend, reuse
    )


def summaries_table(summaries: dict):
    """Evaluation summaries by set as a table: the headline grader's accuracy with its 95% interval and n, both
    graders' accuracies, format compliance, lengths and truncation."""
    import pandas as pd

    rows = {}
    for name, s in summaries.items():
        headline = s["headline_grader"]
        low, high = s[f"accuracy_{headline}_ci95"]
        rows[name] = {
            "n": s["n"],
            "headline grader": headline,
            "accuracy": round(s[f"accuracy_{headline}"], 3),
            "95% CI": f"[{low:.3f}, {high:.3f}]",
            **{g: round(s[f"accuracy_{g}"], 3) for g in GRADERS},
            "format_strict": round(s["format_strict"], 3),
            "mean_tokens": round(s["mean_completion_tokens"], 1),
            "truncated": round(s["truncated_share"], 3),
        }
    return pd.DataFrame(rows).T.rename_axis("eval set")


def probe_config(cfg):
    """The config the held-out probe evaluates with: the first ``probe_size`` test questions."""
    return dataclasses.replace(cfg, eval_limit=cfg.probe_size)


def ask(cfg, model, tokenizer, question: str, rewards=(), gold: str | None = None, backend=None, lora_path=None):
    """Ask the model any question with the experiment's prompt (greedy): prints its reasoning and answer and returns
    what each reward gives the completion (scored against ``gold`` when given)."""
    from utils.grading import extract_xml_answer
    from utils.prompts import build_prompt
    from utils.reward_lab import reward_table

    prompt = build_prompt(question, cfg.one_shot)
    [(text, tokens, truncated)] = generate_completions(
        model, tokenizer, [prompt], cfg.eval_max_new_tokens, 1, backend, lora_path, progress=False
    )
    reasoning = text.split("<answer>")[0].replace("<reasoning>", "").replace("</reasoning>", "").strip()
    print(f"reasoning ({tokens} tokens{', cut at the limit' if truncated else ''}):\n{reasoning}\n")
    print(f"answer: {extract_xml_answer(text)!r}" + (f"   gold: {gold!r}" if gold is not None else ""))
    item = {
        "label": "your question",
        "question": question,
        "answer": "" if gold is None else str(gold),
        "completion": text,
    }
    return reward_table(list(rewards), [item], one_shot=cfg.one_shot) if rewards else None


# An assumption, not a measurement (no GPU has run this kit's evaluation yet): transformers' generate on a free T4
# decodes one token for a batch of 64 prompts of the 0.5B model in about 25 ms (its ~1 GB of 16-bit weights read at
# 320 GB/s take 3 ms; the rest is per-step overhead). Each batch is taken to run to the token limit.
ASSUMED_T4_SECONDS_PER_DECODE_STEP = 0.025


def evaluation_minutes_estimate(cfg) -> dict:
    """Estimated minutes to evaluate one model on every evaluated set on a T4, with the arithmetic."""
    questions = {
        name: min(questions_limit(cfg, name) or EVAL_SETS[name].size, EVAL_SETS[name].size)
        for name in evaluated_sets(cfg)
    }
    batches = sum(-(-n // cfg.eval_batch_size) for n in questions.values())
    minutes = batches * cfg.eval_max_new_tokens * ASSUMED_T4_SECONDS_PER_DECODE_STEP / 60
    return {
        "questions": questions,
        "batches": batches,
        "minutes": minutes,
        "arithmetic": f"{batches} batches of {cfg.eval_batch_size} x {cfg.eval_max_new_tokens} decoding steps x "
        f"{ASSUMED_T4_SECONDS_PER_DECODE_STEP * 1000:.0f} ms = {minutes:.0f} min",
    }
