"""Held-out evaluation: greedy decoding, both graders, intervals, per-question records."""

import dataclasses
import statistics
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from utils import runs
from utils.data import build_dataset
from utils.grading import GRADERS, SOFT_FORMAT_RE, STRICT_FORMAT_RE
from utils.model import explain_out_of_memory
from utils.stats import wilson_interval

EVAL_VERSION = "2"  # bump when decoding or grading changes, so old and new summaries are never mixed


def chat_texts(tokenizer, prompts: list) -> list[str]:
    return [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]


def _generate_transformers(model, tokenizer, texts, max_new_tokens, batch_size, progress) -> list[tuple]:
    """Batched greedy ``generate`` with left padding; (text, tokens, hit the limit) per prompt."""
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    results = []
    try:
        for start in tqdm(range(0, len(texts), batch_size), desc="generating", disable=not progress, unit="batch"):
            batch = tokenizer(
                texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            with torch.no_grad():
                out = model.generate(
                    # Plain greedy: override the sampling settings and repetition penalty (1.1) of Qwen's config.
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
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


def _generate_vllm(model, texts, max_new_tokens, lora_path) -> list[tuple]:
    """Unsloth's vLLM engine (``fast_inference``), with the trained LoRA when one is given."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
    lora = model.load_lora(str(lora_path)) if lora_path else None
    outputs = model.fast_generate(texts, sampling_params=params, lora_request=lora, use_tqdm=True)
    return [(o.outputs[0].text, len(o.outputs[0].token_ids), o.outputs[0].finish_reason == "length") for o in outputs]


def generate_completions(
    model, tokenizer, prompts, max_new_tokens, batch_size=64, backend=None, lora_path=None, progress=True
) -> list[tuple]:
    """(text, tokens, hit the limit) per prompt. The vLLM engine serves the base model plus a saved LoRA; after full
    fine-tuning there is no adapter to load, so the trained weights are decoded with ``generate``."""
    texts = chat_texts(tokenizer, prompts)
    if backend is not None and backend.fast_inference and (lora_path is None or Path(lora_path).exists()):
        return _generate_vllm(model, texts, max_new_tokens, lora_path)
    if backend is not None and backend.unsloth:
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)
        try:
            return _generate_transformers(model, tokenizer, texts, max_new_tokens, batch_size, progress)
        finally:
            FastLanguageModel.for_training(model)
    return _generate_transformers(model, tokenizer, texts, max_new_tokens, batch_size, progress)


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


def evaluate(cfg, model, tokenizer, out_dir=None, backend=None, lora_path=None, progress=True) -> dict:
    """Evaluate on the first ``cfg.eval_limit`` GSM8K test questions (all when None) with the experiment's prompt;
    writes eval.jsonl and eval_summary.json to ``out_dir``."""
    dataset = build_dataset("test", cfg.one_shot, cfg.data_dir, limit=cfg.eval_limit)
    started = time.time()
    with explain_out_of_memory(cfg, "evaluation", backend):
        generations = generate_completions(
            model,
            tokenizer,
            dataset["prompt"],
            cfg.eval_max_new_tokens,
            cfg.eval_batch_size,
            backend,
            lora_path,
            progress,
        )
    records = [
        {
            "index": i,
            "question": row["question"],
            "gold": row["answer"],
            "completion": text,
            "completion_tokens": n,
            "truncated": hit,
            **grade(text, row["answer"]),
        }
        for i, (row, (text, n, hit)) in enumerate(zip(dataset, generations))
    ]
    summary = summarize(records)
    summary.update(
        split="test",
        limit=cfg.eval_limit,
        prompt="one-shot" if cfg.one_shot else "system prompt only",
        decoding="greedy",
        max_new_tokens=cfg.eval_max_new_tokens,
        graders={name: f"{grader.__module__}.{grader.__name__}" for name, grader in GRADERS.items()},
        eval_version=EVAL_VERSION,
        model=cfg.model_name,
        seconds=round(time.time() - started, 1),
    )
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        runs.write_rows(out_dir / runs.EVAL, records)
        runs.write_json(out_dir / runs.EVAL_SUMMARY, summary)
    return summary


def format_summary(summary: dict) -> str:
    """One readable line per headline number, each with its grader and n."""
    lines = []
    for grader in GRADERS:
        low, high = summary[f"accuracy_{grader}_ci95"]
        lines.append(
            f"accuracy ({grader} grader): {summary[f'accuracy_{grader}']:.3f}  95% CI [{low:.3f}, {high:.3f}]"
            f"  n={summary['n']}"
        )
    lines.append(f"format: strict {summary['format_strict']:.3f}, soft {summary['format_soft']:.3f}")
    lines.append(
        f"completion tokens: mean {summary['mean_completion_tokens']:.1f}, median "
        f"{summary['median_completion_tokens']:.0f}; truncated {summary['truncated_share']:.3f}"
    )
    return "\n".join(lines)


def baseline_dir(cfg) -> Path:
    return Path(cfg.run_root) / f"baseline_{'one_shot' if cfg.one_shot else 'system_prompt'}"


def evaluate_baseline(cfg, model, tokenizer, backend=None) -> dict:
    """Evaluate the untrained model with the experiment's prompt, once per prompt and model: the number training must
    beat. Call it before training (a fresh LoRA adapter leaves the model unchanged)."""
    out_dir = baseline_dir(cfg)
    summary_path = out_dir / runs.EVAL_SUMMARY
    if summary_path.exists():
        summary = runs.read_json(summary_path)
        same = (summary.get("model"), summary.get("limit"), summary.get("eval_version"))
        if same == (cfg.model_name, cfg.eval_limit, EVAL_VERSION):
            print(f"Baseline already evaluated in {out_dir}.")
            return summary
    summary = evaluate(cfg, model, tokenizer, out_dir, backend)
    cfg.save(out_dir / runs.CONFIG)
    return summary


def probe_config(cfg):
    """The config the held-out probe evaluates with: the first ``probe_size`` test questions."""
    return dataclasses.replace(cfg, eval_limit=cfg.probe_size)
