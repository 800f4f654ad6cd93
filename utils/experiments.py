"""The one registry of experiments and the config every run saves next to its results.

Defaults reproduce the study (Qwen2.5-0.5B-Instruct, TRL 0.14, full fine-tuning, bf16) except where LoRA on a free T4
requires otherwise; those fields are marked ``KIT``. ``make_config`` checks every value, and the data files a run will
read, before any model is loaded.
"""

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from utils.data import SAMPLE_DATA_DIR, check_data_dir
from utils.rewards import REWARD_SETS


@dataclass
class ExperimentConfig:
    name: str  # run folder name under run_root
    one_shot: bool  # add the study's one-shot example to the prompt
    reward_set: str  # a key of utils.rewards.REWARD_SETS
    description: str = ""

    # model
    model_name: str = "Qwen/Qwen2.5-0.5B-Instruct"  # or "tiny" / "random-full" (random weights, see utils.model)
    use_unsloth: bool = True  # KIT: Unsloth on CUDA when installed, else transformers + PEFT
    lora_rank: int = 64  # KIT: the study fine-tuned all weights; 0 here means full fine-tuning
    lora_alpha: int = 64  # KIT: alpha = rank, as Unsloth's GRPO notebooks
    load_in_4bit: bool = False  # KIT: 0.5B fits a T4 in 16-bit; 4-bit saves memory, costs speed
    fast_inference: bool = (
        True  # KIT: Unsloth's vLLM generation, used only where vLLM runs (compute capability >= 8.0)
    )
    gpu_memory_utilization: float = 0.5  # KIT: share of GPU memory vLLM may take. Reduce if out of memory
    allow_cpu: bool = False  # let a real model run on CPU (very slow; for debugging only)
    precision: str = "auto"  # auto: bf16 where native, fp16 on a T4, fp32 on CPU; or "fp16" / "bf16" / "fp32"

    # data
    data_dir: str | None = None  # None: the hub, with local fallback (utils.data)
    train_limit: int | None = None  # use only the first N training questions
    max_prompt_length: int = 256  # study; TRL 1.x cannot truncate, so longer prompts (9 of 7,473) are dropped

    # GRPO, as the study ran it
    learning_rate: float = 5e-6
    optim: str = "adamw_torch"  # the study's; Unsloth's GRPOConfig would otherwise default to adamw_8bit
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    weight_decay: float = 0.1
    warmup_ratio: float = 0.1
    lr_scheduler_type: str = "cosine"
    max_grad_norm: float = 0.1
    num_generations: int = 4  # completions per prompt (the GRPO group)
    # The study ran batch 1 x gradient accumulation 4 in TRL 0.14, where batch counted prompts: 4 prompts and
    # 16 completions per optimizer step. Today's TRL counts completions, so this maps onto
    # per_device_train_batch_size = num_generations and gradient_accumulation_steps = prompts_per_step.
    prompts_per_step: int = 4
    max_completion_length: int = 786
    min_completion_length: int = 0  # > 0 forces this many tokens (benchmarks with random weights, which never stop)
    num_train_epochs: int = 1  # one epoch = 7,464 prompts / 4 = 1,866 steps
    max_steps: int = -1  # -1: num_train_epochs; a positive number overrides it
    beta: float = 0.04  # KL coefficient, TRL 0.14's default
    temperature: float = 0.9  # TRL 0.14's default
    top_k: int = 50  # TRL 0.14 sampled with transformers' default top-k 50 (today's TRL default, 0, disables it)
    loss_type: str = "grpo"  # TRL 0.14's per-sequence normalisation
    seed: int = 42
    logging_steps: int = 1
    save_steps: int = 50  # checkpoints to resume from after a disconnect
    # Recompute activations in the backward pass (Unsloth's offloaded variant on the Unsloth path): less memory,
    # about 20% slower. The study did not; a 0.5B model at 786 tokens fits a T4 without it.
    gradient_checkpointing: bool = False
    report_to: str = "none"  # or "tensorboard", "wandb", "trackio": where TRL also sends its logs
    trl_args: dict = field(
        default_factory=dict
    )  # any other GRPOConfig argument, passed as given (e.g. {"epsilon": 0.3})
    live_every: int = 25  # redraw the training curves in the notebook every this many steps (0: off)

    # evaluation
    eval_limit: int | None = None  # None: all 1,319 test questions
    ood_eval_limit: int | None = 300  # per out-of-distribution set (SVAMP, ASDiv, MAWPS); None: all, 0: skip them
    eval_batch_size: int = 64
    eval_max_new_tokens: int = 786
    probe_size: int = 50  # fixed test questions scored during training ...
    probe_every: int = 100  # ... every this many steps (0: off)

    run_root: str = "runs"
    extra: dict = field(default_factory=dict)  # anything a user wants saved with the run

    @property
    def run_dir(self) -> Path:
        return Path(self.run_root) / self.name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=str))

    @classmethod
    def load(cls, path) -> "ExperimentConfig":
        return cls(**json.loads(Path(path).read_text()))

    def problems(self) -> list[str]:
        """Every impossible setting, each with the parameter's name and the fix."""
        problems = []

        def at_least(name, minimum, allow_none=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                hint = " or None" if allow_none else ""
                problems.append(f"{name}={value!r}: use a whole number >= {minimum}{hint}")

        if self.reward_set not in REWARD_SETS:
            problems.append(f"reward_set={self.reward_set!r}: choose one of {sorted(REWARD_SETS)}")
        at_least("num_generations", 2)  # GRPO compares completions within a group
        for name in (
            "prompts_per_step",
            "eval_batch_size",
            "max_completion_length",
            "eval_max_new_tokens",
            "max_prompt_length",
            "num_train_epochs",
            "logging_steps",
            "save_steps",
        ):
            at_least(name, 1)
        for name in ("lora_rank", "min_completion_length", "probe_size", "probe_every", "live_every"):
            at_least(name, 0)
        at_least("train_limit", 1, allow_none=True)
        at_least("eval_limit", 1, allow_none=True)
        at_least("ood_eval_limit", 0, allow_none=True)
        if self.max_steps != -1 and (
            isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1
        ):
            problems.append(f"max_steps={self.max_steps!r}: use -1 (train num_train_epochs) or a whole number >= 1")
        if (
            isinstance(self.train_limit, int)
            and isinstance(self.prompts_per_step, int)
            and 0 < self.train_limit < self.prompts_per_step
        ):
            problems.append(
                f"train_limit={self.train_limit}: one optimizer step takes prompts_per_step={self.prompts_per_step} "
                "prompts; use at least that many (or None: all)"
            )
        if self.precision not in ("auto", "fp16", "bf16", "fp32"):
            problems.append(f"precision={self.precision!r}: choose one of auto, fp16, bf16, fp32")
        if (
            isinstance(self.min_completion_length, int)
            and isinstance(self.max_completion_length, int)
            and (self.min_completion_length > self.max_completion_length)
        ):
            problems.append("min_completion_length cannot exceed max_completion_length")
        if not 0 < self.gpu_memory_utilization < 1:
            problems.append(f"gpu_memory_utilization={self.gpu_memory_utilization!r}: use a share between 0 and 1")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate={self.learning_rate!r}: use a positive number")
        if not self.temperature > 0:
            problems.append(f"temperature={self.temperature!r}: use a positive number")
        unknown = sorted(set(self.trl_args) - grpo_config_fields()) if self.trl_args else []
        if unknown:
            problems.append(
                f"trl_args {unknown}: not GRPOConfig arguments; valid ones: {', '.join(sorted(grpo_config_fields()))}"
            )
        if self.trl_args:
            from utils.train import kit_set_trl_args

            problems += kit_set_trl_args(self)
        return problems

    def validate(self) -> None:
        """Catch impossible settings and unreadable data before any model is loaded."""
        problems = self.problems()
        if problems:
            raise ValueError(f"Invalid config for {self.name!r}:\n- " + "\n- ".join(problems))
        data_dir = self.data_dir or os.environ.get("GSM8K_DIR")
        if data_dir:
            check_data_dir(data_dir)


def grpo_config_fields() -> set[str]:
    """The arguments TRL's GRPOConfig takes."""
    from trl import GRPOConfig

    return {f.name for f in dataclasses.fields(GRPOConfig) if f.init}


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
    model_name="tiny",
    data_dir=str(SAMPLE_DATA_DIR),
    learning_rate=1e-3,
    prompts_per_step=2,
    max_completion_length=24,
    max_steps=4,
    save_steps=2,
    eval_limit=8,
    ood_eval_limit=4,
    eval_batch_size=8,
    eval_max_new_tokens=24,
    probe_size=4,
    probe_every=2,
    run_root="runs/smoke",
)


def make_config(experiment: str, smoke: bool = False, **overrides) -> ExperimentConfig:
    """The config of a registered experiment, with smoke settings and then ``overrides`` (None values ignored)."""
    if experiment not in EXPERIMENTS:
        raise KeyError(f"Unknown experiment {experiment!r}; choose one of {list(EXPERIMENTS)}.")
    settings = dict(name=experiment, **EXPERIMENTS[experiment])
    if smoke:
        settings.update(SMOKE_OVERRIDES)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(ExperimentConfig)}
    if unknown:
        raise TypeError(f"Unknown config fields {sorted(unknown)}; see utils.experiments.ExperimentConfig.")
    settings.update({k: v for k, v in overrides.items() if v is not None})
    config = ExperimentConfig(**settings)
    config.validate()
    return config


def config_table(cfg: ExperimentConfig):
    """The resolved config as a table, one row per field, marking what differs from the experiment's defaults."""
    import pandas as pd

    defaults = ExperimentConfig(
        name=cfg.name, **EXPERIMENTS.get(cfg.name, dict(one_shot=cfg.one_shot, reward_set=cfg.reward_set))
    )
    rows = {
        name: {"value": repr(value), "changed": "yes" if getattr(defaults, name) != value else ""}
        for name, value in cfg.to_dict().items()
    }
    return pd.DataFrame(rows).T.rename_axis(cfg.name)
