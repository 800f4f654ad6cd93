"""Generation: the model's answers to chat prompts, greedy or sampled, through transformers' ``generate`` or Unsloth's
vLLM engine; and what identifies an evaluation besides the weights, so a saved one is reused only when it matches."""

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from utils.config import untrained_model_id
from utils.prompts import prompt_label

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


@contextlib.contextmanager
def for_inference(model, loaded=None):
    """The model in evaluation mode for generating, and back as it was after: Unsloth's fast inference switch on the
    Unsloth path, ``model.eval()`` everywhere."""
    was_training = model.training
    if loaded is not None and loaded.unsloth:
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)
    model.eval()
    try:
        yield model
    finally:
        if loaded is not None and loaded.unsloth:
            FastLanguageModel.for_training(model)
        model.train(was_training)


def _generate_transformers(
    model, tokenizer, texts, max_new_tokens, batch_size, progress, sampling=None
) -> list[tuple]:
    """Batched ``generate`` with left padding, greedy or ``sampling``; (text, tokens, hit the limit) per completion,
    prompt by prompt. With sampling a batch holds ``batch_size`` completions: ``batch_size // samples`` prompts."""
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
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
    loaded=None,
    lora_path=None,
    progress=True,
    sampling=None,
) -> list[tuple]:
    """(text, tokens, hit the limit) per completion: one per prompt, greedy, or ``sampling.samples`` per prompt, prompt
    by prompt. The vLLM engine serves the base model plus a saved LoRA; after full fine-tuning there is no adapter to
    load, so the trained weights are decoded with ``generate``."""
    texts = chat_texts(tokenizer, prompts)
    if loaded is not None and loaded.fast_inference and (lora_path is None or Path(lora_path).exists()):
        return _generate_vllm(model, texts, max_new_tokens, lora_path, sampling)
    with for_inference(model, loaded):
        return _generate_transformers(model, tokenizer, texts, max_new_tokens, batch_size, progress, sampling)


def weights_fingerprint(lora_path) -> str | None:
    """The trained adapter's checksum, so a saved evaluation of trained weights is reused only for those weights; None
    for the untrained model (no adapter) and where there is no saved adapter to check (full fine-tuning)."""
    files = sorted(Path(lora_path).glob("*.safetensors")) if lora_path is not None else []
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16] if files else None


def evaluation_identity(cfg, loaded, name: str, dataset, lora_path=None) -> dict:
    """Everything that decides an evaluation's numbers: the questions themselves (a fingerprint of their text and
    golds, so another data copy or limit is another evaluation), the prompt, the model and the trained adapter,
    decoding, the batch (padding changes 16-bit numerics), the engine and dtype, and the grading version."""
    rows = json.dumps([list(dataset["question"]), list(dataset["answer"])])
    return {
        "model": untrained_model_id(cfg.model_name, cfg.seed),
        "adapter": weights_fingerprint(lora_path),
        "eval_set": name,
        "questions": len(dataset),
        "questions_sha256": hashlib.sha256(rows.encode()).hexdigest()[:16],
        "prompt": prompt_label(cfg.one_shot),
        "decoding": "greedy",
        "max_new_tokens": cfg.eval_max_new_tokens,
        "batch_size": cfg.eval_batch_size,
        "backend": loaded.name if loaded is not None else None,
        "dtype": loaded.dtype if loaded is not None else None,
        "engine": "vllm" if loaded is not None and loaded.fast_inference else "generate",
        "eval_version": EVAL_VERSION,
    }
