"""The one registry of experiments and the config every run saves next to its results.

Defaults reproduce the study (Qwen2.5-0.5B-Instruct, TRL 0.14, full fine-tuning, bf16) except where LoRA on a free T4
requires otherwise; those fields say ``KIT``. Each field declares its description and its limits beside it, and every
``ExperimentConfig`` checks them when it is made (``ExperimentConfig(...)``, ``.load()``, ``make_config``, the command
line), reporting every problem at once with the parameter's name and the fix. ``make_config`` also checks what needs
the installed libraries or the disk: TRL's argument names and types, the names TRL and transformers accept, the data
files, the model's availability.
"""

import dataclasses
import difflib
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from utils.data import SAMPLE_DATA_DIR, check_data_dir
from utils.rewards import REWARD_SETS

STUDY_LEARNING_RATE = 5e-6  # the study's, for full fine-tuning
# LoRA's best learning rate over full fine-tuning's: ~10x ("LoRA Without Regret", Schulman et al., Thinking Machines,
# 2025, with alpha 32 and alpha / rank scaling; verl's LoRA guide: an order of magnitude); utils.lora_lr checks it.
LORA_LEARNING_RATE_FACTOR = 10


def default_learning_rate(lora_rank: int) -> float:
    """The study's full-fine-tuning learning rate, times ``LORA_LEARNING_RATE_FACTOR`` for LoRA, so one epoch of LoRA
    moves the model as far as the study's full fine-tuning did, not a fraction of it."""
    return STUDY_LEARNING_RATE * (LORA_LEARNING_RATE_FACTOR if lora_rank > 0 else 1)


REQUIRED = dataclasses.MISSING  # a field without a default


def setting(default, help: str, **rule):
    """A config field with its one-line description and its limits: ``minimum`` / ``maximum`` (inclusive),
    ``above`` / ``below`` (strict), ``choices`` (a function returning the valid values, asked when checked),
    ``special`` (one more allowed value and what it means), ``path`` (``~`` and ``$VARS`` are expanded), ``absent``
    (what a run saved before the field existed ran with, when that is not the default), ``derived`` (a function of the
    config giving the value when None, set when the config is made), ``earlier_defaults`` (the kit's defaults before
    they changed: a run folder trained with one resumes with it), ``trains=False`` (the field cannot change what is
    trained: it never blocks a resume and is not part of the run's name)."""
    metadata = {"help": help, **rule}
    if default is REQUIRED:
        return field(metadata=metadata)
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


def _trl_loss_types() -> list[str]:
    """The loss types TRL's GRPOConfig documents as supported (its field's help text)."""
    import re

    from trl import GRPOConfig

    help_text = next(f for f in dataclasses.fields(GRPOConfig) if f.name == "loss_type").metadata.get("help", "")
    listed = help_text.split("Supported values are", 1)[-1].split(".", 1)[0]
    return re.findall(r"'([a-z_]+)'", listed)


def _optimizers() -> list[str]:
    from transformers.training_args import OptimizerNames

    return [o.value for o in OptimizerNames]


def _schedulers() -> list[str]:
    from transformers.trainer_utils import SchedulerType

    return [s.value for s in SchedulerType]


def _reporters() -> list[str]:
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    return ["none", "all", *INTEGRATION_TO_CALLBACK]


@dataclass
class ExperimentConfig:
    name: str = setting(REQUIRED, "the experiment, and its run folder's name under run_root")
    one_shot: bool = setting(REQUIRED, "add the study's one-shot example to the prompt")
    reward_set: str = setting(
        REQUIRED, "the reward set, a key of utils.rewards.REWARD_SETS", choices=lambda: REWARD_SETS
    )
    description: str = setting("", "what the experiment tests, shown in tables", trains=False)
    smoke: bool = setting(False, "made with the smoke settings (SMOKE): tiny random model, a few CPU steps")

    # model
    model_name: str = setting(
        "Qwen/Qwen2.5-0.5B-Instruct", "a hub id or local folder; 'tiny' / 'random-full': random weights (utils.model)"
    )
    use_unsloth: bool = setting(True, "KIT: Unsloth on CUDA when installed, else transformers + PEFT")
    lora_rank: int = setting(64, "KIT: LoRA rank (the study fine-tuned all weights); 0: full fine-tuning", minimum=0)
    lora_alpha: int = setting(
        32,
        "KIT: LoRA alpha, fixed whatever the rank: the update is scaled by alpha / rank, under which LoRA's best "
        "learning rate barely depends on the rank ('LoRA Without Regret')",
        minimum=1,
        earlier_defaults=(64,),
    )
    load_in_4bit: bool = setting(False, "KIT: load the base model in 4 bits (less memory, slower)")
    fast_inference: bool = setting(
        True, "KIT: Unsloth's vLLM generation, only where vLLM runs (compute capability 8+)"
    )
    gpu_memory_utilization: float = setting(
        0.5, "KIT: share of GPU memory vLLM may take; lower it if out of memory", above=0, below=1
    )
    allow_cpu: bool = setting(False, "let a real model run on CPU (very slow; for debugging only)", trains=False)
    precision: str = setting(
        "auto", "auto: bf16 where native, fp16 on a T4, fp32 on CPU", choices=lambda: ["auto", "fp16", "bf16", "fp32"]
    )

    # data
    data_dir: str | None = setting(None, "a folder with GSM8K's train.jsonl and test.jsonl; None: the hub", path=True)
    train_limit: int | None = setting(None, "train on the first N questions only; None: all 7,473", minimum=1)
    max_prompt_length: int = setting(256, "study: prompt tokens; longer prompts (9 of 7,473) are dropped", minimum=1)

    # GRPO, as the study ran it
    learning_rate: float | None = setting(
        None,
        "None: the study's 5e-6 for full fine-tuning, 10x that for LoRA (LoRA_LEARNING_RATE_FACTOR), set when the "
        "config is made; a number you set always wins",
        above=0,
        derived=lambda cfg: default_learning_rate(cfg.lora_rank),
        earlier_defaults=(STUDY_LEARNING_RATE,),
    )
    optim: str = setting(
        "adamw_torch", "the study's optimizer (Unsloth would default to adamw_8bit)", choices=_optimizers
    )
    adam_beta1: float = setting(0.9, "AdamW beta1", minimum=0, below=1)
    adam_beta2: float = setting(0.99, "AdamW beta2", minimum=0, below=1)
    weight_decay: float = setting(0.1, "AdamW weight decay", minimum=0)
    warmup_ratio: float = setting(0.1, "share of the steps spent warming the learning rate up", minimum=0, maximum=1)
    lr_scheduler_type: str = setting("cosine", "learning-rate schedule", choices=_schedulers)
    max_grad_norm: float = setting(0.1, "gradient clipping norm", above=0)
    num_generations: int = setting(4, "completions per prompt (the GRPO group)", minimum=2)
    # The study ran batch 1 x gradient accumulation 4 in TRL 0.14, where batch counted prompts: 4 prompts and
    # 16 completions per optimizer step. Today's TRL counts completions, so this maps onto
    # per_device_train_batch_size = num_generations and gradient_accumulation_steps = prompts_per_step.
    prompts_per_step: int = setting(4, "prompts per optimizer step (study: 4, of 4 completions each)", minimum=1)
    max_completion_length: int = setting(786, "study: completion tokens", minimum=1)
    min_completion_length: int = setting(
        0, "> 0 forces this many tokens (benchmarks with random weights, which never stop)", minimum=0
    )
    num_train_epochs: int = setting(1, "epochs; one = 7,464 prompts / 4 = 1,866 steps", minimum=1)
    max_steps: int = setting(-1, "a positive number stops there", minimum=1, special=(-1, "train num_train_epochs"))
    beta: float = setting(0.04, "KL coefficient (TRL 0.14's default)", minimum=0)
    temperature: float = setting(0.9, "sampling temperature (TRL 0.14's default)", above=0)
    top_k: int = setting(
        50, "sampling top-k, transformers' default in TRL 0.14 (0: off, today's TRL default)", minimum=0
    )
    loss_type: str = setting("grpo", "TRL 0.14's per-sequence normalisation", choices=_trl_loss_types)
    seed: int = setting(
        42, "seeds the adapter's initialisation, the data order and sampling", minimum=0, maximum=2**32 - 1
    )
    logging_steps: int = setting(1, "log every this many steps", minimum=1, trains=False)
    save_steps: int = setting(
        50, "checkpoint every this many steps (a rerun resumes from the last)", minimum=1, trains=False
    )
    gradient_checkpointing: bool = setting(
        False, "recompute activations in the backward pass: less memory, ~20% slower (the study did not)"
    )
    report_to: str = setting(
        "none", "where TRL also sends its logs: tensorboard, wandb, trackio, ...", choices=_reporters, trains=False
    )
    trl_args: dict = setting({}, "any other GRPOConfig argument, passed as given (e.g. {'epsilon': 0.3})")
    live_every: int = setting(
        25, "redraw the training curves in the notebook every this many steps (0: off)", minimum=0, trains=False
    )

    # rewards
    cosine_max_length: int | None = setting(
        None,
        "the cosine reward's token budget; None: max_completion_length (the study: 786 both)",
        minimum=1,
        absent=786,
        derived=lambda cfg: cfg.max_completion_length,
    )
    cosine_scale: float = setting(5.0, "the cosine reward's largest value (study: 5.0)", above=0)
    correctness_weight: float | None = setting(
        None,
        "weight of the correctness reward; None: the set's (2.0 standard, 1.0 beside the cosine reward)",
        minimum=0,
    )

    # evaluation
    eval_limit: int | None = setting(
        None, "evaluate on the first N GSM8K test questions; None: all 1,319", minimum=1, trains=False
    )
    ood_eval_limit: int | None = setting(
        300,
        "questions per out-of-distribution set (SVAMP, ASDiv, MAWPS); None: all, 0: skip them",
        minimum=0,
        trains=False,
    )
    eval_batch_size: int = setting(64, "prompts per evaluation batch", minimum=1, trains=False)
    eval_max_new_tokens: int = setting(786, "tokens an evaluation answer may take", minimum=1, trains=False)
    sampled_eval_limit: int | None = setting(
        300,
        "GSM8K questions answered sampled_eval_k times at the training's sampling (pass@k, majority vote, length vs "
        "correctness); None: all, 0: off",
        minimum=0,
        trains=False,
    )
    sampled_eval_k: int = setting(8, "samples per question in the sampled evaluation", minimum=2, trains=False)
    harness_eval_limit: int | None = setting(
        None,
        "GSM8K test questions through lm-evaluation-harness's own gsm8k tasks (numbers comparable with published "
        "ones); None: all 1,319, 0: off",
        minimum=0,
        trains=False,
    )
    probe_size: int = setting(50, "fixed test questions scored during training ...", minimum=0, trains=False)
    probe_every: int = setting(100, "... every this many steps (0: off)", minimum=0, trains=False)

    run_root: str = setting("runs", "where run folders go", path=True, trains=False)
    run_name: str | None = setting(
        None, "the run folder's name; None: experiment__[settings that differ]__seedN (see run_name)", trains=False
    )
    extra: dict = setting({}, "anything you want saved with the run", trains=False)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if f.metadata.get("path") and isinstance(getattr(self, f.name), str):
                setattr(self, f.name, os.path.expandvars(os.path.expanduser(getattr(self, f.name))))
        for f in dataclasses.fields(self):  # so config.json holds the value that ran
            if "derived" in f.metadata and getattr(self, f.name) is None:
                try:
                    setattr(self, f.name, f.metadata["derived"](self))
                except TypeError:
                    pass  # from a field of the wrong type, reported below
        problems = [problem for f in dataclasses.fields(self) if (problem := field_problem(f, getattr(self, f.name)))]
        problems += self.combination_problems() if not problems else []
        if problems:
            raise ValueError(f"Invalid config for {self.name!r}:\n- " + "\n- ".join(problems))

    def combination_problems(self) -> list[str]:
        problems = []
        if self.min_completion_length > self.max_completion_length:
            problems.append("min_completion_length cannot exceed max_completion_length")
        if self.train_limit is not None and self.train_limit < self.prompts_per_step:
            problems.append(
                f"train_limit={self.train_limit}: one optimizer step takes prompts_per_step={self.prompts_per_step} "
                "prompts; use at least that many (or None: all)"
            )
        return problems

    @property
    def run_dir(self) -> Path:
        return Path(self.run_root) / (self.run_name or default_run_name(self))

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
        from utils import runs

        runs.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> "ExperimentConfig":
        """A saved config, checked like any other; fields it predates read as what that older kit ran with."""
        from utils import runs

        saved = runs.read_json(path)
        unknown = sorted(set(saved) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown config fields {unknown} (written by another version of the kit?).")
        return cls(**with_absent_fields(saved))

    def validate(self) -> None:
        """What needs the installed libraries or the disk, before any model is loaded: TRL's argument names and
        types, the data files (``data_dir`` or ``$GSM8K_DIR``), a model name the hub cannot serve offline."""
        problems = trl_args_problems(self) + model_name_problems(self.model_name)
        if problems:
            raise ValueError(f"Invalid config for {self.name!r}:\n- " + "\n- ".join(problems))
        data_dir = self.data_dir or os.environ.get("GSM8K_DIR")
        if data_dir:
            check_data_dir(data_dir)


def _arms(annotation) -> tuple:
    """The types a value may have: ``int | None`` -> (int, NoneType); ``Optional[list[str]]`` -> (list[str], None)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def matches(annotation, value) -> bool:
    """Whether ``value`` has the declared type (bools are not numbers, ints are floats; unknown types pass)."""
    for arm in _arms(annotation):
        origin = typing.get_origin(arm) or arm
        if arm is typing.Any or arm is type(None) and value is None:
            return True
        if origin is typing.Literal and value in typing.get_args(arm):
            return True
        if arm is bool and isinstance(value, bool):
            return True
        if arm is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if arm is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if origin in (list, tuple) and isinstance(value, (list, tuple)):
            return True
        if isinstance(origin, type) and origin not in (bool, int, float) and isinstance(value, origin):
            return True
        if not isinstance(origin, type) and origin is not typing.Literal:
            return True  # a type this check does not know
    return False


def describe_type(annotation) -> str:
    names = {bool: "True or False", int: "a whole number", float: "a number", str: "a string", dict: "a dict"}
    arms = [
        names.get(arm, "None" if arm is type(None) else getattr(arm, "__name__", str(arm)))
        for arm in _arms(annotation)
    ]
    return " or ".join(dict.fromkeys(arms))


def value_problem(annotation, value, rule: dict) -> str | None:
    """What is wrong with ``value`` for a field declared ``annotation`` with limits ``rule``, as the fix to make; None
    when it is right."""
    if value is None and type(None) in _arms(annotation):
        return None
    special = rule.get("special")
    if special is not None and value == special[0] and not isinstance(value, bool):
        return None
    expected = _expectation(annotation, rule)
    if not matches(annotation, value):
        numeric = any(arm in (int, float) for arm in _arms(annotation))
        quoted = isinstance(value, str) and numeric and _is_number(value)
        return expected + (f" (write it without quotes: {value.strip()})" if quoted else "")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not _within(value, rule):
        return expected
    choices = rule.get("choices")
    if choices is not None:
        valid = [str(v) for v in choices()]
        if valid and value not in valid:
            close = closest(value, valid)
            return f"choose one of {', '.join(valid)}" + (f" (did you mean {close!r}?)" if close else "")
    return None


def closest(value, valid) -> str | None:
    """The valid name a typo most likely meant: one it begins (``adamw`` -> ``adamw_torch``), else the most similar."""
    text, valid = str(value), [str(v) for v in valid]
    starts = [v for v in valid if v.startswith(text) or text.lower() == v.lower()]
    return starts[0] if starts else next(iter(difflib.get_close_matches(text, valid, n=1, cutoff=0.5)), None)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _within(value, rule: dict) -> bool:
    return (
        value == value  # not NaN
        and ("minimum" not in rule or value >= rule["minimum"])
        and ("maximum" not in rule or value <= rule["maximum"])
        and ("above" not in rule or value > rule["above"])
        and ("below" not in rule or value < rule["below"])
    )


def _expectation(annotation, rule: dict) -> str:
    arms = [arm for arm in _arms(annotation) if arm is not type(None)]
    noun = describe_type(arms[0]) if len(arms) == 1 else describe_type(annotation)
    bounds = [
        f"{sign} {rule[key]}"
        for key, sign in (("minimum", ">="), ("above", ">"), ("maximum", "<="), ("below", "<"))
        if key in rule
    ]
    noun += (" " + " and ".join(bounds)) if bounds else ""
    if arms == [dict]:
        noun += " (a JSON object on the command line), e.g. {'epsilon': 0.3}"
    special = rule.get("special")
    text = f"use {special[0]} ({special[1]}) or {noun}" if special else f"use {noun}"
    return text + (" or None" if type(None) in _arms(annotation) else "")


def field_problem(f: dataclasses.Field, value) -> str | None:
    problem = value_problem(f.type, value, f.metadata)
    return f"{f.name}={value!r}: {problem}" if problem else None


def with_absent_fields(saved: dict) -> dict:
    """A saved config's values, with each field it predates set to what the kit before that field ran with: its
    ``absent`` value, else its default."""
    predated = {}
    for f in dataclasses.fields(ExperimentConfig):
        if f.name not in saved and "absent" in f.metadata:
            predated[f.name] = f.metadata["absent"]
        elif f.name not in saved and f.default is not dataclasses.MISSING:
            predated[f.name] = f.default
    return {**predated, **saved}


def parse_setting(f: dataclasses.Field, text: str):
    """A command-line value read as its field's declared type: true/false for booleans, null for None where the field
    allows it, JSON for dicts; a value that does not parse is an error naming the field."""
    arms = _arms(f.type)
    if type(None) in arms and text.strip().lower() in ("null", "none"):
        return None
    kind = next(arm for arm in arms if arm is not type(None))
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    try:
        if kind is bool:
            return words[text.strip().lower()]
        if kind in (int, float):
            return kind(text)
        if kind is dict:
            value = json.loads(text)
            if isinstance(value, dict):
                return value
            raise ValueError
        return text
    except (KeyError, ValueError):
        raise ValueError(f"--set {f.name}={text}: {_expectation(f.type, f.metadata)}.") from None


def trains(f: dataclasses.Field) -> bool:
    """Whether a field can change what is trained (and so blocks a resume when changed)."""
    return f.metadata.get("trains", True)


def reference_value(cfg: ExperimentConfig, f: dataclasses.Field):
    """What the field would be had nothing been set: the registry's value for the experiment, the derived value, or
    the default."""
    registered = {**EXPERIMENTS.get(cfg.name, {}), **(SMOKE_OVERRIDES if cfg.smoke else {})}
    if f.name in registered:
        return registered[f.name]
    if "derived" in f.metadata:
        return f.metadata["derived"](cfg)
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def changed_settings(cfg: ExperimentConfig) -> dict:
    """The fields that change what is trained and differ from the experiment's defaults (seed aside)."""
    return {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if trains(f) and f.name not in ("name", "seed", "smoke") and getattr(cfg, f.name) != reference_value(cfg, f)
    }


def run_label(cfg: ExperimentConfig) -> str:
    """A run's experiment and settings, seed aside: what runs of several seeds share (``exp2_oneshot``,
    ``exp2_oneshot__smoke``, ``exp2_oneshot__max_steps=200``)."""
    return default_run_name(cfg).rsplit("__seed", 1)[0]


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


def fields_help() -> str:
    """Every config field with its default and description, for ``python -m utils.train --help``."""
    lines = []
    for f in dataclasses.fields(ExperimentConfig):
        if f.default is not dataclasses.MISSING:
            default = f"default {f.default!r}"
        elif f.default_factory is not dataclasses.MISSING:
            default = f"default {f.default_factory()!r}"
        else:
            default = "from the experiment"
        lines.append(f"  {f.name} ({default}): {f.metadata['help']}")
    return "\n".join(lines)


def trl_args_problems(cfg: ExperimentConfig) -> list[str]:
    """``trl_args`` naming an argument GRPOConfig lacks, or one the kit sets from a config field, or a value of the
    wrong type for TRL's declared one: each with the fix."""
    from trl import GRPOConfig

    from utils.train import kit_set_trl_args

    if not cfg.trl_args:
        return []
    arguments = {f.name: f for f in dataclasses.fields(GRPOConfig) if f.init}
    unknown = sorted(set(cfg.trl_args) - set(arguments))
    problems = []
    for name in unknown:
        close = closest(name, arguments)
        problems.append(
            f"trl_args[{name!r}]: not a GRPOConfig argument"
            + (f" (did you mean {close!r}?)" if close else f"; valid ones: {', '.join(sorted(arguments))}")
        )
    hints = typing.get_type_hints(GRPOConfig)
    for name, value in cfg.trl_args.items():
        if name in arguments and name in hints and not matches(hints[name], value):
            problems.append(f"trl_args[{name!r}]={value!r}: TRL expects {describe_type(hints[name])}")
    return problems + kit_set_trl_args(cfg)


def model_name_problems(model_name: str) -> list[str]:
    """A model the hub would have to serve while it cannot be reached (it would retry for a minute, then fail after
    the config cell), with what is available offline."""
    from utils.data import hub_reachable
    from utils.model import BUNDLED_TOKENIZER_OF, RANDOM_MODELS

    if model_name in RANDOM_MODELS or model_name == BUNDLED_TOKENIZER_OF or Path(model_name).is_dir():
        return []
    if hub_reachable() or _in_hub_cache(model_name):
        return []
    offline = [BUNDLED_TOKENIZER_OF, *RANDOM_MODELS]
    close = closest(model_name, offline)
    return [
        f"model_name={model_name!r}: the hub cannot be reached and this model is neither downloaded nor a local "
        f"folder. Offline: {BUNDLED_TOKENIZER_OF!r} (its tokenizer is bundled; weights must be in the hub cache), "
        f"'tiny' or 'random-full' (random weights), or a local folder"
        + (f" (did you mean {close!r}?)" if close else "")
    ]


def _in_hub_cache(model_name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(model_name, "config.json"), str)
    except Exception:  # an id the hub would refuse: not cached either
        return False


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
    sampled_eval_limit=4,
    sampled_eval_k=4,
    harness_eval_limit=4,
    run_root="runs/smoke",
)


def experiment_settings(experiment: str) -> dict:
    """The registry's settings of an experiment; an unknown name suggests the closest."""
    if experiment not in EXPERIMENTS:
        close = closest(experiment, EXPERIMENTS)
        hint = f" Did you mean {close!r}?" if close else ""
        raise KeyError(f"Unknown experiment {experiment!r}; choose one of {list(EXPERIMENTS)}.{hint}")
    return dict(name=experiment, **EXPERIMENTS[experiment])


def make_config(experiment: str, smoke: bool = False, overrides: dict | None = None, **settings) -> ExperimentConfig:
    """The config of a registered experiment: its registry settings, the smoke settings when asked, then
    ``settings`` (keywords whose value is None are left at the default: a notebook's ``MAX_STEPS = None``), then
    ``overrides`` exactly as given (None included, for fields where None means something). Every value is checked
    here, before any model is loaded, and so are TRL's arguments, the data files and the model's availability."""
    if overrides is not None and not isinstance(overrides, dict):
        raise TypeError(f"OVERRIDES (overrides) must be a dict of config fields, got {type(overrides).__name__}.")
    overrides = dict(overrides or {})
    given = {k: v for k, v in settings.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = sorted((set(given) | set(overrides)) - fields)
    if unknown:
        hints = [
            f"{name!r} (did you mean {close!r}?)" if (close := closest(name, fields)) else repr(name)
            for name in unknown
        ]
        raise TypeError(f"Unknown config fields {', '.join(hints)}; see utils.experiments.ExperimentConfig.")
    twice = sorted(set(given) & set(overrides))
    if twice:
        raise TypeError(
            "Set twice: "
            + "; ".join(f"{name} as {given[name]!r} and in OVERRIDES as {overrides[name]!r}" for name in twice)
            + ". Set each in one place (the notebook parameter, or OVERRIDES with the parameter left at None)."
        )
    registered = experiment_settings(experiment)
    values = {**registered, **(dict(SMOKE_OVERRIDES, smoke=True) if smoke else {}), **given, **overrides}
    config = keep_earlier_defaults(ExperimentConfig(**values), set(values) - set(registered))
    config.validate()
    return config


def keep_earlier_defaults(cfg: ExperimentConfig, set_here: set) -> ExperimentConfig:
    """A run folder trained under one of the kit's earlier defaults (``earlier_defaults``: LoRA at 5e-6 with alpha
    64) resumes with what it was trained with, never silently switched: each such field not set here keeps its saved
    value, and the config keeps pointing at that folder."""
    path = cfg.run_dir / "config.json"
    if not path.is_file():
        return cfg
    from utils import runs

    saved = with_absent_fields(runs.read_json(path))
    kept = {
        f.name: saved[f.name]
        for f in dataclasses.fields(cfg)
        if f.name not in set_here
        and saved.get(f.name) in f.metadata.get("earlier_defaults", ())
        and saved[f.name] != getattr(cfg, f.name)
    }
    if not kept:
        return cfg
    print(
        f"{cfg.run_dir} was trained with the kit's earlier defaults {kept}: resuming it with them (a new run "
        "elsewhere gets today's; set them to choose)."
    )
    return dataclasses.replace(cfg, **kept, run_name=cfg.run_dir.name)


def config_table(cfg: ExperimentConfig):
    """The resolved config as a table, one row per field with its value, whether it differs from the experiment's
    default, and what it does; the run folder it trains into is the table's name."""
    import pandas as pd

    rows = {
        f.name: {
            "value": repr(getattr(cfg, f.name)),
            "changed": "yes" if reference_value(cfg, f) != getattr(cfg, f.name) else "",
            "what it does": f.metadata["help"],
        }
        for f in dataclasses.fields(cfg)
    }
    return pd.DataFrame(rows).T.rename_axis(str(cfg.run_dir))
