"""Making an experiment's config, the GRPOConfig it trains with, and finding the runs it left.

``make_config`` merges the registry (``utils.config.EXPERIMENTS``), the smoke settings and yours, and checks what
needs the installed libraries or the disk before any model loads: TRL builds the ``GRPOConfig`` (its errors reported
in the kit's words), the data files are read, the model is known to be reachable.
"""

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from utils import runs
from utils.checks import choose, closest, describe_type, has_type
from utils.config import (
    EXPERIMENTS,
    SMOKE_OVERRIDES,
    ExperimentConfig,
    reference_value,
    run_label,
    untrained_model_id,
)
from utils.data import check_data_dir
from utils.preflight import integration_problems, model_name_problems, run_root_problems
from utils.prompts import prompt_label
from utils.runtime import pick_dtype, rank_and_processes


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
        hints = [f"{n!r} (did you mean {c!r}?)" if (c := closest(n, fields)) else repr(n) for n in unknown]
        raise TypeError(f"Unknown config fields {', '.join(hints)}; see utils.config.ExperimentConfig.")
    twice = sorted(set(given) & set(overrides))
    if twice:
        raise TypeError(
            "Set twice: "
            + "; ".join(f"{name} as {given[name]!r} and in OVERRIDES as {overrides[name]!r}" for name in twice)
            + ". Set each in one place (the notebook parameter, or OVERRIDES with the parameter left at None)."
        )
    smoke_settings = dict(SMOKE_OVERRIDES, smoke=True) if smoke else {}
    cfg = ExperimentConfig(**{**experiment_settings(experiment), **smoke_settings, **given, **overrides})
    check_environment(cfg)
    return cfg


def check_environment(cfg: ExperimentConfig) -> None:
    """What needs the installed libraries or the disk, before any model is loaded: TRL's own checks of the arguments
    the run gives it, the model's availability, the data files (``data_dir`` or ``$GSM8K_DIR``)."""
    problems = trl_problems(cfg) + model_name_problems(cfg.model_name) + integration_problems(cfg)
    problems = problems or run_root_problems(cfg.run_root)
    if problems:
        raise ValueError(f"Invalid config for {cfg.name!r}:\n- " + "\n- ".join(problems))
    data_dir = cfg.data_dir or os.environ.get("GSM8K_DIR")
    if data_dir:
        check_data_dir(data_dir)


def batch_mapping(cfg: ExperimentConfig) -> dict:
    """Per process: one prompt's completions per micro-batch, and the share of the step's prompts to accumulate, so
    an optimizer step sees ``prompts_per_step`` prompts whatever the number of processes (torchrun, accelerate)."""
    processes = rank_and_processes()[1]
    if cfg.prompts_per_step % processes:
        raise ValueError(
            f"prompts_per_step={cfg.prompts_per_step} cannot be split over {processes} processes: use a number of "
            "processes that divides it (the study's 4 prompts per step: 1, 2 or 4)."
        )
    return {
        "per_device_train_batch_size": cfg.num_generations,
        "gradient_accumulation_steps": cfg.prompts_per_step // processes,
    }


def grpo_arguments(cfg: ExperimentConfig, output_dir, dtype: str | None = None, vllm: bool = False) -> dict:
    """The ``GRPOConfig`` arguments the kit sets from the config. Every argument whose default differs between TRL and
    Unsloth's generated subclass (which ``trl.GRPOConfig`` is after ``import unsloth``) is passed explicitly, so both
    train what the study trained. Mixed precision follows ``dtype``, the one the model was loaded in (default: the
    config's precision on this machine)."""
    import torch

    dtype = dtype or str(pick_dtype(cfg.precision)).replace("torch.", "")
    key = "min_tokens" if vllm else "min_new_tokens"  # vLLM's name for it
    return dict(
        output_dir=str(output_dir),
        learning_rate=cfg.learning_rate,
        optim=cfg.optim,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        adam_epsilon=1e-8,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float below 1 is a ratio
        lr_scheduler_type=cfg.lr_scheduler_type,
        max_grad_norm=cfg.max_grad_norm,
        **batch_mapping(cfg),
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        beta=cfg.beta,
        temperature=cfg.temperature,
        top_p=1.0,
        top_k=cfg.top_k,
        repetition_penalty=1.0,
        loss_type=cfg.loss_type,
        seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        logging_nan_inf_filter=False,  # a NaN loss must show, not be averaged away
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        torch_empty_cache_steps=None,
        bf16=dtype == "bfloat16",
        fp16=dtype == "float16",
        gradient_checkpointing=cfg.gradient_checkpointing,
        generation_kwargs={key: cfg.min_completion_length} if cfg.min_completion_length else {},
        report_to=cfg.report_to,
        disable_tqdm=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),  # also what makes torchrun on CPU data-parallel (gloo)
    )


# GRPOConfig arguments the kit sets from a config field of another name (the rest share the field's name, or are
# fixed by the kit for every run): trl_args may not set them, so config.json always says what ran.
SET_THROUGH = {
    "output_dir": "run_root (checkpoints go to <run folder>/checkpoints, where a rerun resumes)",
    "per_device_train_batch_size": "num_generations and prompts_per_step",
    "gradient_accumulation_steps": "prompts_per_step",
    "warmup_steps": "warmup_ratio",
    "bf16": "precision",
    "fp16": "precision",
    "generation_kwargs": "min_completion_length",
    "reward_weights": "the weights in the reward cell ((function, weight) pairs)",
}


# GRPOConfig arguments whose accepted values TRL 1.14 states only in its help and checks late, if at all (a wrong
# scale_rewards fails inside the first step's loss, or silently changes meaning). tests/test_errors.py checks every
# value here against the installed TRL's help, so the list follows TRL.
TRL_CHOICES = {
    "scale_rewards": ("group", "batch", "none", True, False),
    "multi_objective_aggregation": ("sum_then_normalize", "normalize_then_sum"),
    "vllm_mode": ("server", "colocate"),
    "vllm_model_impl": ("transformers", "vllm"),
    "importance_sampling_level": ("token", "sequence"),
}


def trl_problems(cfg: ExperimentConfig) -> list[str]:
    """What TRL and transformers refuse of the arguments the run gives them, asked of them: ``GRPOConfig`` is built
    here (it checks ``optim`` and ``lr_scheduler_type``), and so is the list of loggers (``report_to``). Before that,
    ``trl_args`` naming an argument GRPOConfig lacks, one the kit sets, or a value of the wrong type for TRL's
    declared one (TRL does not check types)."""
    import typing

    from transformers.integrations import get_reporting_integration_callbacks
    from trl import GRPOConfig

    arguments = {f.name for f in dataclasses.fields(GRPOConfig) if f.init}
    hints, kit = typing.get_type_hints(GRPOConfig), grpo_arguments(cfg, "unused") | {"reward_weights": None}
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    problems = []
    for name, value in cfg.trl_args.items():
        if name not in arguments:
            close = closest(name, arguments)
            hint = f" (did you mean {close!r}?)" if close else f"; valid ones: {', '.join(sorted(arguments))}"
            problems.append(f"trl_args[{name!r}]: not a GRPOConfig argument{hint}")
        elif name in SET_THROUGH:
            problems.append(f"trl_args[{name!r}]: set {SET_THROUGH[name]} instead")
        elif name in fields:
            problems.append(f"trl_args[{name!r}]: set the config field {name} instead")
        elif name in kit:
            problems.append(f"trl_args[{name!r}]: fixed by the kit for every run (to {kit[name]!r})")
        elif name in TRL_CHOICES and value not in TRL_CHOICES[name]:
            accepted = ", ".join(map(repr, TRL_CHOICES[name]))
            hint = f" (did you mean {c!r}?)" if (c := closest(value, TRL_CHOICES[name])) else ""
            problems.append(f"trl_args[{name!r}]={value!r}: TRL accepts {accepted}{hint}")
        elif name in hints and name not in TRL_CHOICES and not has_type(hints[name], value):
            problems.append(f"trl_args[{name!r}]={value!r}: TRL expects {describe_type(hints[name])}")
    if problems:
        return problems
    try:
        args = GRPOConfig(**grpo_arguments(cfg, "unused"), **cfg.trl_args)
        get_reporting_integration_callbacks(args.report_to)
    except (ValueError, TypeError) as error:
        return [refusal_in_kit_words(cfg, error)]
    return []


def refusal_in_kit_words(cfg: ExperimentConfig, error: Exception) -> str:
    """TRL's or transformers' error about a named choice, as the field, its value and the closest valid one."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    valid = {
        "optim": [o.value for o in OptimizerNames],
        "lr_scheduler_type": [s.value for s in SchedulerType],
        "report_to": ["none", "all", *INTEGRATION_TO_CALLBACK],
    }
    for name, values in valid.items():
        value = getattr(cfg, name)
        if value not in values and str(value) in str(error):
            return f"{name}={value!r}: transformers refuses it ({error}); {choose(value, values)}"
    return f"TRL's GRPOConfig refuses these settings: {error}"


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


def baseline_dir(cfg: ExperimentConfig) -> Path:
    """Where the untrained model's evaluations go: one folder per base model and prompt, shared by every seed and
    experiment that starts from them (random weights differ by seed, so they get one each)."""
    model = untrained_model_id(cfg.model_name, cfg.seed).replace("/", "--")
    return Path(cfg.run_root) / f"baseline__{model}__{prompt_label(cfg.one_shot).replace(' ', '-')}"


@dataclass(frozen=True)
class KitRun:
    """A trained run of this kit: its folder and its saved config, which says what it is."""

    path: Path
    cfg: ExperimentConfig

    @property
    def label(self) -> str:
        return run_label(self.cfg)

    @property
    def seed(self) -> int:
        return self.cfg.seed


def find_runs(runs_root="runs") -> list[KitRun]:
    """The trained runs under ``runs_root`` (a config.json and a log.jsonl), identified by their config.json, never by
    their folder's name: a renamed or copied folder is read the same way."""
    found = [
        KitRun(config.parent, ExperimentConfig.load(config))
        for config in sorted(Path(runs_root).glob(f"*/{runs.CONFIG}"))
        if (config.parent / runs.LOG).is_file()
    ]
    return sorted(found, key=lambda run: (run.label, run.seed))


def runs_by_label(runs_root="runs") -> dict[str, list[KitRun]]:
    """The runs grouped by experiment and settings, each group's runs one per seed."""
    groups: dict[str, list[KitRun]] = {}
    for run in find_runs(runs_root):
        groups.setdefault(run.label, []).append(run)
    return groups


def find_baselines(runs_root="runs") -> list[Path]:
    """The untrained-model evaluations under ``runs_root``: folders of evaluation summaries without a config.json."""
    return sorted(
        summary.parent
        for summary in Path(runs_root).glob(f"*/{runs.EVAL_SUMMARY}")
        if not (summary.parent / runs.CONFIG).exists()
    )


def baseline_label(folder: Path) -> str:
    """How tables name an untrained baseline: ``untrained: <model>__<prompt>``."""
    return "untrained: " + folder.name.removeprefix("baseline__")


def model_folders(runs_root="runs") -> dict[str, list[Path]]:
    """Every evaluated model under ``runs_root`` with its folders: each untrained baseline (one folder), then each
    experiment and settings (grouped by config.json) with one folder per seed."""
    groups = {baseline_label(folder): [folder] for folder in find_baselines(runs_root)}
    groups.update({label: [run.path for run in group] for label, group in runs_by_label(runs_root).items()})
    return groups
