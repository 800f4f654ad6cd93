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
    "a group's query heads as rows of one head (SDPA kernel)": dict(attention="kit_grouped_rows"),
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


def floors(model, bandwidth: float, tflops: float, batch: int, prompt_tokens: float, completion_tokens: int,
           completions: int) -> dict:  # fmt: skip
    """What this CPU allows at best. Generating for ``n`` sequences first reads their prompts (prefill: 2 FLOPs per
    parameter and prompt token at ``tflops``), then each decoding step reads every weight once and does 2 FLOPs per
    parameter and sequence: the slower of the two at ``bandwidth`` and ``tflops``. A GRPO step generates its
    completions so, then runs the policy's forward and backward (6 FLOPs per parameter and token) and the reference
    model's forward (2)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    parameters = sum(p.numel() for p in model.parameters())
    flop_seconds = 1 / (tflops * 1e12)

    def generation_seconds(sequences: int) -> float:
        decode_step = max(weights / (bandwidth * 1e9), 2 * parameters * sequences * flop_seconds)
        return 2 * parameters * sequences * prompt_tokens * flop_seconds + completion_tokens * decode_step

    tokens = completions * (prompt_tokens + completion_tokens)
    return {
        "weight_bytes": weights,
        "generation_tokens_per_second": batch * completion_tokens / generation_seconds(batch),
        "step_seconds": generation_seconds(completions) + 8 * parameters * tokens * flop_seconds,
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
    """Two attentions for one new token at a time that multiply each key-value head by its group of query heads at
    once (other shapes: the kit's CPU attention): ``kit_grouped_decode`` writes it out with a float32 softmax;
    ``kit_grouped_rows`` hands torch's SDPA kernel the group's query heads as the rows of one head, one kernel task
    per key-value head instead of one per query head."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    from utils.cpu_attention import grouped_sdpa_forward

    def decoding(query, key, module):
        return query.shape[2] == 1 and not module.training and query.shape[1] != key.shape[1]

    def grouped_decode(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        if not decoding(query, key, module):
            return grouped_sdpa_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
        batch, heads, _, dim = query.shape
        grouped = query.view(batch, key.shape[1], heads // key.shape[1], dim)
        scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * (scaling or dim**-0.5)
        if attention_mask is not None:
            mask = attention_mask[:, :, :, : key.shape[-2]]
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min) if mask.dtype == torch.bool else (
                scores + mask)  # fmt: skip
        weights = torch.softmax(scores, dim=-1).to(value.dtype)
        return torch.matmul(weights, value).view(batch, heads, 1, dim).transpose(1, 2).contiguous(), None

    def grouped_rows(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        if not decoding(query, key, module):
            return grouped_sdpa_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
        batch, heads, _, dim = query.shape
        rows = query.view(batch, key.shape[1], heads // key.shape[1], dim)
        mask = None if attention_mask is None else attention_mask[:, :, :, : key.shape[-2]]
        out = torch.nn.functional.scaled_dot_product_attention(rows, key, value, attn_mask=mask, scale=scaling)
        return out.view(batch, heads, 1, dim).transpose(1, 2).contiguous(), None

    for name, forward in {"kit_grouped_decode": grouped_decode, "kit_grouped_rows": grouped_rows}.items():
        AttentionInterface.register(name, forward)
        AttentionMaskInterface.register(name, sdpa_mask)


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
