"""Model loading: Unsloth LoRA on a CUDA GPU, transformers + PEFT LoRA elsewhere, and random Qwen2 stand-ins.

Model names:
- a hub id such as ``Qwen/Qwen2.5-0.5B-Instruct``: the real weights (GPU expected);
- ``tiny``: a small random Qwen2 built from the real Qwen2.5 config and tokenizer, for tests and smoke runs;
- ``random-full``: the full Qwen2.5-0.5B architecture with random weights, for memory and speed benchmarks.
"""

import importlib.util
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

ASSETS_DIR = Path(__file__).resolve().parent / "assets" / "qwen2.5-0.5b-instruct"
BUNDLED_TOKENIZER_OF = "Qwen/Qwen2.5-0.5B-Instruct"  # ASSETS_DIR holds this model's real tokenizer
RANDOM_MODELS = ("tiny", "random-full")
LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Small enough to train on two CPU cores; initializer_range=0.5 makes the random model's sampling peaked
# enough for GRPO to find a learning signal (the default 0.02 samples almost uniformly over 151k tokens).
TINY_OVERRIDES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_window_layers=2, initializer_range=0.5)


def unsloth_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def pick_dtype(precision: str = "auto") -> torch.dtype:
    """bf16 where the GPU supports it, fp16 on older GPUs such as the T4, fp32 on CPU; or as asked."""
    if precision != "auto":
        return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    if not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_tokenizer(model_name: str):
    """The model's tokenizer; for Qwen2.5-0.5B-Instruct, the bundled copy when the hub cannot be reached."""
    from utils.data import hub_reachable

    offline_copy = model_name == BUNDLED_TOKENIZER_OF and not hub_reachable()
    if offline_copy:
        print(f"The hub is unreachable; using the bundled {BUNDLED_TOKENIZER_OF} tokenizer from {ASSETS_DIR}.")
    tokenizer = AutoTokenizer.from_pretrained(ASSETS_DIR if model_name in RANDOM_MODELS or offline_copy else model_name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_random_qwen2(model_name: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32):
    """A randomly initialised Qwen2 with the real Qwen2.5-0.5B config (shrunk for ``tiny``)."""
    config = AutoConfig.from_pretrained(ASSETS_DIR)
    if model_name == "tiny":
        for key, value in TINY_OVERRIDES.items():
            setattr(config, key, value)
        if getattr(config, "layer_types", None):
            config.layer_types = config.layer_types[: config.num_hidden_layers]
    config.torch_dtype = dtype
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=dtype)


def _add_peft_lora(model, cfg):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=LORA_TARGET_MODULES, lora_dropout=0.0, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def _load_unsloth(cfg):
    from unsloth import FastLanguageModel

    fast_inference = cfg.fast_inference and vllm_available()
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=cfg.model_name,
        max_seq_length=cfg.max_prompt_length + cfg.max_completion_length,
        load_in_4bit=cfg.load_in_4bit,
        fast_inference=fast_inference,
        max_lora_rank=max(cfg.lora_rank, 1),
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        dtype=None if cfg.precision == "auto" else pick_dtype(cfg.precision),
        full_finetuning=cfg.lora_rank == 0,
    )
    if cfg.lora_rank > 0:
        model = FastLanguageModel.get_peft_model(
            model, r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=LORA_TARGET_MODULES,
            use_gradient_checkpointing="unsloth", random_state=cfg.seed,
        )
    return model, tokenizer, fast_inference


def load_model(cfg):
    """Model and tokenizer for an experiment config, plus a record of the backend that was chosen."""
    dtype = pick_dtype(cfg.precision)
    if cfg.model_name not in RANDOM_MODELS and not torch.cuda.is_available() and not cfg.allow_cpu:
        raise RuntimeError(
            f"Training {cfg.model_name} needs a CUDA GPU and none was found. On Colab: Runtime > Change runtime type > "
            "T4 GPU. On Kaggle: Settings > Accelerator > GPU. For a quick CPU check use SMOKE=True (tiny random model)."
        )
    backend = {"model_name": cfg.model_name, "dtype": str(dtype).replace("torch.", ""), "device": "cuda" if torch.cuda.is_available() else "cpu"}
    if cfg.use_unsloth and unsloth_available() and cfg.model_name not in RANDOM_MODELS:
        model, tokenizer, fast_inference = _load_unsloth(cfg)
        backend.update(backend="unsloth", fast_inference=fast_inference)
    else:
        # Full fine-tuning in fp16 keeps fp32 master weights (fp16 autocast), as a T4 without bf16 requires.
        weights_dtype = torch.float32 if cfg.lora_rank == 0 and dtype == torch.float16 else dtype
        if cfg.model_name in RANDOM_MODELS:
            model = build_random_qwen2(cfg.model_name, seed=cfg.seed, dtype=weights_dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(cfg.model_name, dtype=weights_dtype, attn_implementation="sdpa")
        tokenizer = load_tokenizer(cfg.model_name)
        if cfg.lora_rank > 0:
            model = _add_peft_lora(model, cfg)
        if torch.cuda.is_available():
            model = model.to("cuda")
        backend.update(backend="transformers+peft" if cfg.lora_rank > 0 else "transformers (full fine-tuning)", fast_inference=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    backend["lora_rank"] = cfg.lora_rank
    backend["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print("Backend:", ", ".join(f"{k}={v}" for k, v in backend.items()))
    return model, tokenizer, backend
