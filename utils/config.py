"""The config every run saves next to its results: one dataclass, each field with its default and help beside it,
checked when it is made (``ExperimentConfig(...)``, ``.load()``, ``make_config``, the command line), like TRL's
``GRPOConfig``. Every problem is reported at once, naming the field and the fix.

Defaults reproduce the study (Qwen2.5-0.5B-Instruct, TRL 0.14, full fine-tuning, bf16) except where LoRA on a free T4
requires otherwise; those fields' help says KIT. What needs the installed libraries or the disk (TRL's own checks of
its arguments, the data files, the model's availability) is checked by ``utils.experiments.make_config``.
"""

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from utils import runs
from utils.checks import choose, type_problem
from utils.data import OOD_SETS, SAMPLE_DATA_DIR
from utils.named_models import CPU_MODELS, NAMED_MODELS, RANDOM_MODELS
from utils.rewards import REWARD_SETS, STUDY_COMPLETION_TOKENS
from utils.session import secret_problems

STUDY_LEARNING_RATE = 5e-6  # the study's, for full fine-tuning
# LoRA's best learning rate over full fine-tuning's: ~10x ("LoRA Without Regret", Schulman et al., Thinking Machines,
# 2025, with alpha 32 and alpha / rank scaling; verl's LoRA guide: an order of magnitude); checked by
# utils.scripts.lora_lr.
LORA_LEARNING_RATE_FACTOR = 10
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
# The loss types TRL 1.14's GRPOTrainer implements. TRL checks the name only when it computes the first loss, after a
# model has loaded and generated, so the config checks it here.
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"  # the study's; its tokenizer and config are bundled (utils/assets)


def untrained_model_id(model_name: str, seed: int) -> str:
    """What the untrained model is: the hub id or folder; random weights also depend on the seed that drew them."""
    return f"{model_name}-seed{seed}" if model_name in RANDOM_MODELS else model_name


def default_learning_rate(lora_rank: int) -> float:
    """The study's full-fine-tuning learning rate, times ``LORA_LEARNING_RATE_FACTOR`` for LoRA, so one epoch of LoRA
    moves the model as far as the study's full fine-tuning did, not a fraction of it."""
    return STUDY_LEARNING_RATE * (LORA_LEARNING_RATE_FACTOR if lora_rank > 0 else 1)


def option(default, help: str, changes_training: bool = True):
    """A config field with its default and help. ``changes_training=False`` marks evaluation, storage and display
    settings: changing one never blocks a resume, and it is not part of a run's name."""
    metadata = {"help": help, "changes_training": changes_training}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class ExperimentConfig:
    name: str = field(metadata={"help": "the experiment, a key of utils.experiments.EXPERIMENTS"})
    one_shot: bool = field(metadata={"help": "add the study's one-shot example to the prompt"})
    reward_set: str = field(metadata={"help": "the reward set, a key of utils.rewards.REWARD_SETS"})
    description: str = option("", "what the experiment tests, shown in tables", changes_training=False)
    smoke: bool = option(False, "made with the smoke settings (SMOKE): tiny random model, a few CPU steps")

    # model
    model_name: str = option(DEFAULT_MODEL, f"a hub id, a local folder, or one of {', '.join(NAMED_MODELS)}")
    use_unsloth: bool = option(True, "KIT: Unsloth on CUDA when installed, else transformers + PEFT")
    lora_rank: int = option(64, "KIT: LoRA rank (the study fine-tuned all weights); 0: full fine-tuning")
    lora_alpha: int = option(
        32,
        "KIT: LoRA alpha, fixed whatever the rank: the update is scaled by alpha / rank, under which LoRA's best "
        "learning rate barely depends on the rank ('LoRA Without Regret')",
    )
    load_in_4bit: bool = option(False, "KIT: load the base model in 4 bits (less memory, slower)")
    fast_inference: bool = option(True, "KIT: Unsloth's vLLM generation, only where vLLM runs (compute capability 8+)")
    gpu_memory_utilization: float = option(0.5, "KIT: share of GPU memory vLLM may take; lower it if out of memory")
    allow_cpu: bool = option(
        False, f"let a hub model run on CPU (very slow); {', '.join(CPU_MODELS)} always may", changes_training=False
    )
    precision: str = option("auto", "auto: bf16 where native, fp16 on a T4, fp32 on CPU; or fp16, bf16, fp32")

    # data
    data_dir: str | None = option(None, "a folder with GSM8K's train.jsonl and test.jsonl; None: the hub")
    train_limit: int | None = option(None, "train on the first N questions only; None: all 7,473")
    max_prompt_length: int = option(
        256, "study: prompt tokens, counted by the model's tokenizer; longer prompts are dropped (of 7,473 one-shot "
        "prompts, 9 for Qwen2.5, 29 for SmolLM2)"
    )

    # GRPO, as the study ran it
    learning_rate: float | None = option(
        None, "None: the study's 5e-6 for full fine-tuning, 10x that for LoRA, set when the config is made"
    )
    optim: str = option("adamw_torch", "the study's optimizer (Unsloth would default to adamw_8bit)")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.99, "AdamW beta2")
    weight_decay: float = option(0.1, "AdamW weight decay")
    warmup_ratio: float = option(0.1, "share of the steps spent warming the learning rate up")
    lr_scheduler_type: str = option("cosine", "learning-rate schedule")
    max_grad_norm: float = option(0.1, "gradient clipping norm")
    num_generations: int = option(4, "completions per prompt (the GRPO group)")
    # The study ran batch 1 x gradient accumulation 4 in TRL 0.14, where batch counted prompts: 4 prompts and
    # 16 completions per optimizer step. Today's TRL counts completions (utils.experiments.batch_mapping).
    prompts_per_step: int = option(4, "prompts per optimizer step (study: 4, of 4 completions each)")
    max_completion_length: int = option(STUDY_COMPLETION_TOKENS, "study: completion tokens")
    min_completion_length: int = option(0, "> 0 forces this many tokens (benchmarks with random weights never stop)")
    num_train_epochs: int = option(1, "epochs; one = 7,464 prompts / 4 = 1,866 steps")
    max_steps: int = option(-1, "-1: train num_train_epochs; a positive number stops there")
    beta: float = option(0.04, "KL coefficient (TRL 0.14's default)")
    temperature: float = option(0.9, "sampling temperature (TRL 0.14's default)")
    top_k: int = option(50, "sampling top-k, transformers' default in TRL 0.14 (0: off, today's TRL default)")
    loss_type: str = option("grpo", "TRL 0.14's per-sequence normalisation")
    seed: int = option(42, "seeds the adapter's initialisation, the data order and sampling")
    logging_steps: int = option(1, "log every this many steps", changes_training=False)
    save_steps: int = option(50, "checkpoint every this many steps (a rerun resumes from the last)", False)
    gradient_checkpointing: bool = option(False, "recompute activations in backward: less memory, ~20% slower")
    report_to: str = option("none", "where TRL also sends its logs: tensorboard, wandb, trackio, ...", False)
    trl_args: dict = option({}, "any other GRPOConfig argument, passed as given (e.g. {'epsilon': 0.3})")
    live_every: int = option(25, "redraw the training curves in the notebook every N steps (0: off)", False)

    # rewards
    cosine_max_length: int | None = option(
        None, "the cosine reward's token budget; None: max_completion_length (the study: 786 both)"
    )
    cosine_scale: float = option(5.0, "the cosine reward's largest value (study: 5.0)")
    correctness_weight: float | None = option(
        None, "weight of the correctness reward; None: the set's (2.0 standard, 1.0 beside the cosine reward)"
    )

    # evaluation
    eval_limit: int | None = option(None, "evaluate on the first N GSM8K test questions; None: all 1,319", False)
    ood_eval_limit: int | None = option(
        300, "questions per out-of-distribution set (SVAMP, ASDiv, MAWPS); None: all, 0: skip them", False
    )
    ood_sets: str = option(
        "svamp,asdiv,mawps", "the out-of-distribution sets evaluated, comma-separated (of svamp, asdiv, mawps)", False
    )
    eval_batch_size: int = option(64, "prompts per evaluation batch", changes_training=False)
    eval_max_new_tokens: int = option(STUDY_COMPLETION_TOKENS, "tokens an evaluation answer may take", False)
    sampled_eval_limit: int | None = option(
        300,
        "GSM8K questions answered sampled_eval_k times at the training's sampling (pass@k, majority vote, length vs "
        "correctness); None: all, 0: off",
        changes_training=False,
    )
    sampled_eval_k: int = option(8, "samples per question in the sampled evaluation", changes_training=False)
    harness_eval_limit: int | None = option(
        None, "GSM8K questions through lm-evaluation-harness's own tasks; None: all 1,319, 0: off", False
    )
    probe_size: int = option(50, "fixed test questions scored during training ...", changes_training=False)
    probe_every: int = option(100, "... every this many steps (0: off)", changes_training=False)

    run_root: str = option("runs", "where run folders go", changes_training=False)
    run_name: str | None = option(
        None, "the run folder's name; None: experiment__[settings that differ]__seedN", changes_training=False
    )
    extra: dict = option({}, "anything you want saved with the run", changes_training=False)

    def __post_init__(self):
        self.data_dir = expand_path(self.data_dir)
        self.run_root = expand_path(self.run_root)
        secrets = [p for name in ("trl_args", "extra") if isinstance(getattr(self, name), dict)
                   for p in secret_problems(getattr(self, name), name)]  # fmt: skip
        if secrets:  # first, before any message could repeat the value
            raise ValueError(f"Invalid config for {self.name!r}:\n- " + "\n- ".join(secrets))
        problems = [p for f in dataclasses.fields(self) if (p := type_problem(f, getattr(self, f.name)))]
        if not problems:  # derived here, so config.json holds the value that ran
            if self.learning_rate is None:
                self.learning_rate = default_learning_rate(self.lora_rank)
            if self.cosine_max_length is None:
                self.cosine_max_length = self.max_completion_length
            problems = self.value_problems()
        if problems:
            raise ValueError(f"Invalid config for {self.name!r}:\n- " + "\n- ".join(problems))

    def value_problems(self) -> list[str]:
        """Each field's limits, top to bottom, as (field, holds, fix); None passes where the field allows it."""
        at_least = lambda value, low: value is None or value >= low  # noqa: E731
        checks = [
            ("reward_set", self.reward_set in REWARD_SETS, f"choose one of {', '.join(REWARD_SETS)}"),
            ("lora_rank", self.lora_rank >= 0, "use a whole number >= 0 (0: full fine-tuning)"),
            ("lora_alpha", self.lora_alpha >= 1, "use a whole number >= 1"),
            ("gpu_memory_utilization", 0 < self.gpu_memory_utilization < 1, "use a number > 0 and < 1"),
            ("precision", self.precision in PRECISIONS, f"choose one of {', '.join(PRECISIONS)}"),
            ("train_limit", at_least(self.train_limit, 1), "use a whole number >= 1 or None"),
            ("max_prompt_length", self.max_prompt_length >= 1, "use a whole number >= 1"),
            ("learning_rate", self.learning_rate > 0, "use a number > 0 or None"),
            ("adam_beta1", 0 <= self.adam_beta1 < 1, "use a number >= 0 and < 1"),
            ("adam_beta2", 0 <= self.adam_beta2 < 1, "use a number >= 0 and < 1"),
            ("weight_decay", self.weight_decay >= 0, "use a number >= 0"),
            ("warmup_ratio", 0 <= self.warmup_ratio <= 1, "use a number >= 0 and <= 1"),
            ("max_grad_norm", self.max_grad_norm > 0, "use a number > 0"),
            ("num_generations", self.num_generations >= 2, "use a whole number >= 2"),
            ("prompts_per_step", self.prompts_per_step >= 1, "use a whole number >= 1"),
            ("max_completion_length", self.max_completion_length >= 1, "use a whole number >= 1"),
            (
                "min_completion_length",
                0 <= self.min_completion_length <= self.max_completion_length,
                f"use a whole number >= 0 that cannot exceed max_completion_length={self.max_completion_length}",
            ),
            ("num_train_epochs", self.num_train_epochs >= 1, "use a whole number >= 1"),
            ("max_steps", self.max_steps == -1 or self.max_steps >= 1, "use -1 (train num_train_epochs) or >= 1"),
            ("beta", self.beta >= 0, "use a number >= 0"),
            ("temperature", self.temperature > 0, "use a number > 0"),
            ("top_k", self.top_k >= 0, "use a whole number >= 0"),
            ("loss_type", self.loss_type in LOSS_TYPES, choose(self.loss_type, LOSS_TYPES)),
            ("seed", 0 <= self.seed <= 2**32 - 1, "use a whole number >= 0 and <= 4294967295"),
            ("logging_steps", self.logging_steps >= 1, "use a whole number >= 1"),
            ("save_steps", self.save_steps >= 1, "use a whole number >= 1"),
            ("live_every", self.live_every >= 0, "use a whole number >= 0 (0: off)"),
            ("cosine_max_length", self.cosine_max_length >= 1, "use a whole number >= 1 or None"),
            ("cosine_scale", self.cosine_scale > 0, "use a number > 0"),
            ("correctness_weight", at_least(self.correctness_weight, 0), "use a number >= 0 or None"),
            ("eval_limit", at_least(self.eval_limit, 1), "use a whole number >= 1 or None"),
            ("ood_eval_limit", at_least(self.ood_eval_limit, 0), "use a whole number >= 0 (0: off) or None"),
            ("ood_sets", set(self.ood_set_names) <= set(OOD_SETS), f"use a comma-separated list of {OOD_SETS}"),
            ("eval_batch_size", self.eval_batch_size >= 1, "use a whole number >= 1"),
            ("eval_max_new_tokens", self.eval_max_new_tokens >= 1, "use a whole number >= 1"),
            ("sampled_eval_limit", at_least(self.sampled_eval_limit, 0), "use a whole number >= 0 (0: off) or None"),
            ("sampled_eval_k", self.sampled_eval_k >= 2, "use a whole number >= 2"),
            ("harness_eval_limit", at_least(self.harness_eval_limit, 0), "use a whole number >= 0 (0: off) or None"),
            ("probe_size", self.probe_size >= 0, "use a whole number >= 0"),
            ("probe_every", self.probe_every >= 0, "use a whole number >= 0 (0: off)"),
            (
                "train_limit",
                self.train_limit is None or self.train_limit >= self.prompts_per_step,
                f"one optimizer step takes prompts_per_step={self.prompts_per_step} prompts; use at least that many "
                "(or None: all)",
            ),
        ]
        return [f"{name}={getattr(self, name)!r}: {fix}" for name, holds, fix in checks if not holds]

    @property
    def run_dir(self) -> Path:
        return Path(self.run_root) / (self.run_name or default_run_name(self))

    @property
    def ood_set_names(self) -> list[str]:
        return [name.strip() for name in self.ood_sets.split(",") if name.strip()]

    @property
    def reward_settings(self) -> dict:
        """The reward builder's parameters (``utils.rewards.build_rewards``)."""
        return {
            "cosine_max_length": self.cosine_max_length,
            "cosine_scale": self.cosine_scale,
            "correctness_weight": self.correctness_weight,
        }

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path) -> None:
        runs.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> "ExperimentConfig":
        """A saved config, checked like any other. One written by an earlier version of the kit, whose fields differ,
        is refused with what to do: the kit has never been released, so nothing converts such a folder."""
        saved = runs.read_json(path)
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = sorted(set(saved) - fields), sorted(fields - set(saved))
        if unknown or missing:
            differences = [f"fields {unknown} unknown" if unknown else "", f"{missing} missing" if missing else ""]
            raise ValueError(
                f"{path} was written by an earlier version of the kit ({', '.join(d for d in differences if d)}). "
                "This version can neither resume nor analyse it: start a new run (another RUN_ROOT) or delete that "
                "run folder."
            )
        return cls(**saved)


# The one registry of experiments: what each sets beyond the defaults.
EXPERIMENTS = {
    "exp1_no_oneshot": dict(one_shot=False, reward_set="standard", description="System prompt only, standard rewards"),
    "exp2_oneshot": dict(
        one_shot=True, reward_set="standard", description="System prompt + one-shot example, standard rewards"
    ),
    "exp3_cosine_penalty": dict(
        one_shot=True,
        reward_set="cosine_penalty",
        description="One-shot, cosine length reward that penalises wrong answers",
    ),
    "exp4_cosine_no_penalty": dict(
        one_shot=True, reward_set="cosine_no_penalty", description="One-shot, cosine length reward without the penalty"
    ),
}

# A few minutes on two CPU cores: the tiny random model, a few steps, a small evaluation, bundled data.
SMOKE_OVERRIDES = dict(
    model_name="tiny", data_dir=str(SAMPLE_DATA_DIR), learning_rate=1e-3, prompts_per_step=2, max_completion_length=24,
    max_steps=4, save_steps=2, eval_limit=8, ood_eval_limit=4, eval_batch_size=8, eval_max_new_tokens=24, probe_size=4,
    probe_every=2, sampled_eval_limit=4, sampled_eval_k=4, harness_eval_limit=4, run_root="runs/smoke",
)  # fmt: skip


def reference_value(cfg: ExperimentConfig, f: dataclasses.Field):
    """What the field would be had nothing been set: the registry's value for the experiment, the derived value, or
    the default."""
    registered = {**EXPERIMENTS.get(cfg.name, {}), **(SMOKE_OVERRIDES if cfg.smoke else {})}
    if f.name in registered:
        return registered[f.name]
    if f.name == "learning_rate":
        return default_learning_rate(cfg.lora_rank)
    if f.name == "cosine_max_length":
        return cfg.max_completion_length
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else getattr(cfg, f.name)


def changed_settings(cfg: ExperimentConfig) -> dict:
    """The fields that change what is trained and differ from the experiment's defaults (seed aside)."""
    return {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if changes_training(f)
        and f.name not in ("name", "seed", "smoke")
        and getattr(cfg, f.name) != reference_value(cfg, f)
    }


def default_run_name(cfg: ExperimentConfig) -> str:
    """``experiment__seedN``, with ``smoke`` and the settings that change training and differ from the experiment's
    defaults in between (``exp2_oneshot__max_steps=200__seed42``; a fingerprint of them when they are long). Runs of
    one experiment, settings and seed land in one folder; another seed or setting is another run."""
    changed = changed_settings(cfg)
    settings = ",".join(f"{k}={v}" for k, v in sorted(changed.items()))
    if len(settings) > 40 or not all(c.isalnum() or c in "_.=,-" for c in settings):
        fingerprint = hashlib.sha256(json.dumps(changed, sort_keys=True, default=str).encode()).hexdigest()[:8]
        settings = f"settings-{fingerprint}"
    parts = [cfg.name, *(["smoke"] if cfg.smoke else []), *([settings] if settings else []), f"seed{cfg.seed}"]
    return "__".join(parts)


def run_label(cfg: ExperimentConfig) -> str:
    """A run's experiment and settings, seed aside: what runs of several seeds share (``exp2_oneshot``,
    ``exp2_oneshot__smoke``, ``exp2_oneshot__max_steps=200``)."""
    return default_run_name(cfg).rsplit("__seed", 1)[0]


def expand_path(path: str | None) -> str | None:
    return os.path.expandvars(os.path.expanduser(path)) if isinstance(path, str) else path


def declared_default(f: dataclasses.Field) -> str | None:
    """A field's default as written (``64``, ``{}``); None for the fields each experiment sets."""
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return repr(f.default_factory())
    return None


def changes_training(f: dataclasses.Field) -> bool:
    """Whether a field can change what is trained (and so blocks a resume when changed, and names the run)."""
    return f.metadata.get("changes_training", True)
