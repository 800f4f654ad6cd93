"""How far this CPU is from its own limits on a model, measured in one run: the memory bandwidth and the bf16 matmul
rate, the floors they set for greedy decoding and for a GRPO step, where a decoding step's time goes (a profile), and
attempts at closing the gap, each with its ratio to the baseline and whether it changes the generated tokens. An
attempt that changes them is reported and not kept: the kit's numbers must not depend on a speed setting.

    python -m utils.scripts.cpu_bench --model qwen2.5-coder-0.5b --floors     # writes them into chart/cpu_bench.json
"""

import time

import torch

from utils.cpu_attention import GROUPED_SDPA
from utils.data import SAMPLE_DATA_DIR, build_eval_dataset
from utils.generation import generate_completions

# What is tried, each against the baseline: batch 8, transformers' SDPA attention (key-value heads copied for every
# query head), a dynamic cache. The kit's CPU attention (``utils.cpu_attention``) is the one kept.
ATTEMPTS = {
    "grouped SDPA, torch's enable_gqa (utils.cpu_attention)": dict(attention=GROUPED_SDPA),
    "grouped SDPA, generation batch 16": dict(attention=GROUPED_SDPA, batch=16),
    "eager attention": dict(attention="eager"),
    "grouped decode attention written out (float32 softmax)": dict(attention="kit_grouped_decode"),
    "one thread": dict(threads=1),
}
BASELINE_BATCH = 8


def copy_bandwidth(megabytes: int = 1024, repeats: int = 5) -> float:
    """GB/s moved by a large tensor copy (bytes read plus bytes written), best of ``repeats``."""
    source = torch.ones(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    best = min(_timed(lambda: target.copy_(source)) for _ in range(repeats))
    return 2 * source.numel() * 4 / best / 1e9


def matmul_tflops(size: int = 4096, repeats: int = 5, dtype=torch.bfloat16) -> float:
    """Dense matmul rate in TFLOPS at ``dtype``, best of ``repeats``."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e12


def _timed(action) -> float:
    begun = time.perf_counter()
    action()
    return time.perf_counter() - begun


def floors(model, bandwidth: float, tflops: float, batch: int, prompt_tokens: int, completion_tokens: int,
           completions: int) -> dict:  # fmt: skip
    """Decoding reads every weight once a step, so a batch's tokens/s cannot beat ``batch * bandwidth / weight
    bytes``; a GRPO step cannot beat decoding its completions at that bound plus its matmul FLOPs at ``tflops``
    (policy forward and backward, 6 per parameter and token, and the reference model's forward, 2)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    parameters = sum(p.numel() for p in model.parameters())
    decode_step = weights / (bandwidth * 1e9)
    tokens = completions * (prompt_tokens + completion_tokens)
    return {
        "weight_bytes": weights,
        "generation_tokens_per_second": batch / decode_step,
        "step_seconds": completion_tokens * weights / (bandwidth * 1e9) + 8 * parameters * tokens / (tflops * 1e12),
    }


def decode_profile(model, batch: int = BASELINE_BATCH, context: int = 300, rows: int = 6) -> list[dict]:
    """Where one decoding step's time goes (batch ``batch``, ``context`` tokens cached): the top operators."""
    from torch.profiler import profile

    ids = torch.randint(0, 1000, (batch, context))
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
        step = torch.randint(0, 1000, (batch, 1))
        model(step, past_key_values=cache, use_cache=True)  # warm
        with profile() as trace:
            model(step, past_key_values=cache, use_cache=True)
    events = sorted(trace.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"operator": e.key, "ms": e.self_cpu_time_total / 1000, "share": e.self_cpu_time_total / total}
            for e in events[:rows]]  # fmt: skip


def register_grouped_decode_attention() -> None:
    """An attention for one new token at a time that multiplies each key-value head by its group of query heads at
    once, instead of repeating the keys and values for every query head first (other shapes: SDPA as usual)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import sdpa_mask

    def grouped_decode(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        batch, heads, length, dim = query.shape
        groups = heads // key.shape[1]
        if length > 1 or module.training or groups == 1:
            return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
        grouped = query.view(batch, key.shape[1], groups, dim)
        scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * (scaling or dim**-0.5)
        if attention_mask is not None:
            mask = attention_mask[:, :, :, : key.shape[-2]]
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min) if mask.dtype == torch.bool else (
                scores + mask)  # fmt: skip
        weights = torch.softmax(scores, dim=-1).to(value.dtype)
        return torch.matmul(weights, value).view(batch, heads, 1, dim).transpose(1, 2).contiguous(), None

    AttentionInterface.register("kit_grouped_decode", grouped_decode)
    AttentionMaskInterface.register("kit_grouped_decode", sdpa_mask)


def generation_attempts(model, tokenizer, tokens: int = 64, prompts: int = 16) -> dict:
    """Greedy generation of ``tokens`` forced tokens for ``prompts`` GSM8K prompts: the baseline, then each attempt,
    with tokens/s, the ratio to the baseline and whether every generated token is the same."""
    register_grouped_decode_attention()
    texts = list(build_eval_dataset("gsm8k", True, str(SAMPLE_DATA_DIR), prompts)["prompt"])
    model.generation_config.min_new_tokens = tokens
    attention, threads = model.config._attn_implementation, torch.get_num_threads()

    def generate(batch=BASELINE_BATCH, **change):
        model.set_attn_implementation(change.get("attention", "sdpa"))
        torch.set_num_threads(change.get("threads", threads))
        begun = time.perf_counter()
        out = generate_completions(model, tokenizer, texts, tokens, batch, progress=False)
        seconds = time.perf_counter() - begun
        model.set_attn_implementation(attention)
        torch.set_num_threads(threads)
        return sum(n for _, n, _ in out) / seconds, [text for text, _, _ in out]

    speed, reference = generate()
    baseline = {"tokens_per_second": speed, "ratio": 1.0, "same": True}
    results = {"baseline (batch 8, transformers' SDPA, dynamic cache)": baseline}
    for label, change in ATTEMPTS.items():
        attempt_speed, texts_out = generate(**change)
        same = texts_out == reference
        results[label] = {"tokens_per_second": attempt_speed, "ratio": attempt_speed / speed, "same": same,
                          "kept": same and attempt_speed > speed * 1.05}  # fmt: skip
    model.generation_config.min_new_tokens = None
    return results
