"""The one registry of experiments and the config every run saves next to its results.

Defaults reproduce the study (Qwen2.5-0.5B-Instruct, TRL 0.14, full fine-tuning, bf16) except where LoRA on a
free T4 requires otherwise; those fields are marked ``KIT``.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from utils.data import SAMPLE_DATA_DIR
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
    fast_inference: bool = True  # KIT: Unsloth's vLLM generation when vllm is installed
    gpu_memory_utilization: float = 0.5  # KIT: share of GPU memory vLLM may take. Reduce if out of memory
    allow_cpu: bool = False  # let a real model run on CPU (very slow; for debugging only)
    precision: str = "auto"  # auto: bf16 where supported, fp16 on a T4, fp32 on CPU; or "fp16" / "bf16" / "fp32"

    # data
    data_dir: str | None = None  # None: the hub, with local fallback (utils.data)
    train_limit: int | None = None  # use only the first N training questions
    max_prompt_length: int = 256  # study; TRL 1.x cannot truncate, so longer prompts (9 of 7,473) are dropped

    # GRPO, as the study ran it
    learning_rate: float = 5e-6
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
    max_steps: int = -1  # > 0 overrides epochs
    beta: float = 0.04  # KL coefficient, TRL 0.14's default
    temperature: float = 0.9  # TRL 0.14's default
    top_k: int = 50  # TRL 0.14 sampled with transformers' default top-k 50 (today's TRL default, 0, disables it)
    loss_type: str = "grpo"  # TRL 0.14's per-sequence normalisation
    seed: int = 42
    logging_steps: int = 1
    save_steps: int = 50  # checkpoints to resume from after a disconnect
    gradient_checkpointing: bool = False

    # evaluation
    eval_limit: int | None = None  # None: all 1,319 test questions
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

    def validate(self) -> None:
        """Catch impossible settings before any model is loaded."""
        problems = []
        if self.reward_set not in REWARD_SETS:
            problems.append(f"reward_set {self.reward_set!r} is not one of {sorted(REWARD_SETS)}")
        if self.num_generations < 2:
            problems.append("num_generations must be at least 2: GRPO compares completions within a group")
        if self.prompts_per_step < 1:
            problems.append("prompts_per_step must be at least 1")
        if self.eval_batch_size < 1:
            problems.append("eval_batch_size must be at least 1")
        if self.max_completion_length < 1 or self.eval_max_new_tokens < 1:
            problems.append("max_completion_length and eval_max_new_tokens must be positive")
        if self.lora_rank < 0:
            problems.append("lora_rank must be >= 0 (0 = full fine-tuning)")
        if self.precision not in ("auto", "fp16", "bf16", "fp32"):
            problems.append(f"precision {self.precision!r} is not one of auto, fp16, bf16, fp32")
        if self.min_completion_length > self.max_completion_length:
            problems.append("min_completion_length cannot exceed max_completion_length")
        if self.probe_every < 0 or self.probe_size < 0:
            problems.append("probe_every and probe_size must be >= 0")
        if problems:
            raise ValueError(f"Invalid config for {self.name!r}: " + "; ".join(problems) + ".")


EXPERIMENTS = {
    "exp1_no_oneshot": dict(one_shot=False, reward_set="standard", description="System prompt only, standard rewards"),
    "exp2_oneshot": dict(one_shot=True, reward_set="standard", description="System prompt + one-shot example, standard rewards"),
    "exp3_cosine_penalty": dict(one_shot=True, reward_set="cosine_penalty", description="One-shot, cosine length reward that penalises wrong answers"),
    "exp4_cosine_no_penalty": dict(one_shot=True, reward_set="cosine_no_penalty", description="One-shot, cosine length reward without the penalty"),
}

# A few minutes on two CPU cores: the tiny random model, a few steps, a small evaluation, bundled data.
SMOKE_OVERRIDES = dict(
    model_name="tiny", data_dir=str(SAMPLE_DATA_DIR), learning_rate=1e-3, prompts_per_step=2, max_completion_length=24,
    max_steps=4, save_steps=2, eval_limit=8, eval_batch_size=8, eval_max_new_tokens=24, probe_size=4, probe_every=2,
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
