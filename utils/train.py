"""GRPO training with TRL's GRPOTrainer, writing a self-describing, resumable run folder (see ``utils.runs``).

The command line runs one experiment exactly as its notebook does (config, reward set, reward checks, baseline,
training with resume, evaluation on every set), on one process or several:

    python -m utils.train exp2_oneshot [--smoke] [--set KEY=VALUE ...] [--no-eval] [--seeds 42 43 44]
    python -m utils.train exp2_oneshot --seeds 42 43 --devices 0 1     # one seed per GPU, at once
    torchrun --nproc_per_node 2 -m utils.train exp2_oneshot --set precision=fp16
    accelerate launch --config_file utils/accelerate/zero2.yaml -m utils.train exp4_cosine_no_penalty
"""

if __name__ == "__main__":  # the command line: Unsloth must be imported before transformers to patch it
    from utils.runtime import import_unsloth_first

    import_unsloth_first()

import argparse
import dataclasses
import inspect
from pathlib import Path

import torch

from utils import runs
from utils.callbacks import (
    BatchGrader,
    HeldOutProbe,
    LiveView,
    StepLogger,
    StopOnNonFinite,
    count_non_finite,
    quiet_progress,
)
from utils.data import build_dataset
from utils.experiments import ExperimentConfig, trains, with_absent_fields
from utils.grading import GRADERS
from utils.model import explain_out_of_memory, pick_dtype
from utils.rewards import reward_name, split_rewards
from utils.runtime import process_state, world_size


def reward_record(func, weight: float) -> dict:
    """Name, weight and source of a reward function, so a run folder says exactly what it was trained on."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        source = None
    return {"name": reward_name(func), "weight": weight, "module": getattr(func, "__module__", None), "source": source}


def grpo_arguments(cfg: ExperimentConfig, output_dir, backend=None, reward_weights: list[float] | None = None) -> dict:
    """The ``GRPOConfig`` arguments the kit sets, from the experiment config (see ExperimentConfig.prompts_per_step).

    Every argument whose default differs between TRL and Unsloth's generated subclass (which ``trl.GRPOConfig`` is
    after ``import unsloth``) is passed explicitly, so both train what the study trained. Mixed precision follows the
    dtype the model was loaded in. With N processes (torchrun / accelerate) each accumulates prompts_per_step / N
    prompts, so an optimizer step still sees prompts_per_step prompts.
    """
    dtype = str(pick_dtype(cfg.precision)).replace("torch.", "") if backend is None else backend.dtype
    generation_kwargs = {}
    if cfg.min_completion_length:
        key = "min_tokens" if backend is not None and backend.fast_inference else "min_new_tokens"  # vLLM's name
        generation_kwargs[key] = cfg.min_completion_length
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
        generation_kwargs=generation_kwargs,
        reward_weights=reward_weights,
        report_to=cfg.report_to,
        disable_tqdm=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),  # also what makes torchrun on CPU data-parallel (gloo)
    )


# Kit-set GRPOConfig arguments that come from a config field of another name (the rest share the field's name, or
# are fixed by the kit for every run).
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


def kit_set_trl_args(cfg: ExperimentConfig) -> list[str]:
    """What is wrong with ``cfg.trl_args`` naming an argument the kit sets: each with the field to set instead, so
    that config.json always says what ran."""
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    kit = grpo_arguments(cfg, output_dir=".")
    problems = []
    for name in sorted(set(cfg.trl_args) & set(kit)):
        if name in SET_THROUGH:
            problems.append(f"trl_args[{name!r}]: set {SET_THROUGH[name]} instead")
        elif name in fields:
            problems.append(f"trl_args[{name!r}]: set the config field {name} instead")
        else:
            problems.append(f"trl_args[{name!r}]: fixed by the kit for every run (to {kit[name]!r})")
    return problems


def grpo_config(cfg: ExperimentConfig, output_dir, backend=None, reward_weights: list[float] | None = None):
    """TRL's GRPOConfig: the kit's arguments (``grpo_arguments``) and ``cfg.trl_args``, which may only name arguments
    the kit does not set (``make_config`` refuses the others), so config.json says what ran."""
    from trl import GRPOConfig

    return GRPOConfig(**grpo_arguments(cfg, output_dir, backend, reward_weights), **cfg.trl_args)


def batch_mapping(cfg: ExperimentConfig) -> dict:
    """Per process: one prompt's completions per micro-batch, and the share of the step's prompts to accumulate."""
    processes = world_size()
    if cfg.prompts_per_step % processes:
        raise ValueError(
            f"prompts_per_step={cfg.prompts_per_step} cannot be split over {processes} processes: use a number of "
            "processes that divides it (the study's 4 prompts per step: 1, 2 or 4)."
        )
    return {
        "per_device_train_batch_size": cfg.num_generations,
        "gradient_accumulation_steps": cfg.prompts_per_step // processes,
    }


def mixed_precision(args) -> str:
    """The mixed precision a built GRPOConfig trains in."""
    return "fp16" if args.fp16 else "bf16" if args.bf16 else "no"


def what_reached_trl(args) -> dict:
    """The batch, precision and every argument as the built GRPOConfig holds them: the record, not a recomputation."""
    return {
        "batch": {
            "world_size": args.world_size,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "num_generations": args.num_generations,
            "completions_per_step": args.per_device_train_batch_size
            * args.gradient_accumulation_steps
            * args.world_size,
        },
        "mixed_precision": mixed_precision(args),
        "grpo_config": args.to_dict(),
    }


def check_resumable(cfg: ExperimentConfig, records: list[dict], run_dir: Path) -> None:
    """Refuse to resume a run folder trained with another config or other rewards (a config saved by an older kit
    reads its missing fields as what that kit ran with)."""
    saved = with_absent_fields(runs.read_json(run_dir / runs.CONFIG))
    changes = [
        f"{f.name}: {saved.get(f.name)!r} -> {getattr(cfg, f.name)!r}"
        for f in dataclasses.fields(cfg)
        if trains(f) and saved.get(f.name) != getattr(cfg, f.name)
    ]
    if (run_dir / runs.REWARDS).is_file():
        before = {r["name"]: r for r in runs.read_json(run_dir / runs.REWARDS)}
        after = {r["name"]: r for r in records}
        changes += [f"reward {name} removed" for name in before.keys() - after.keys()]
        changes += [f"reward {name} added" for name in after.keys() - before.keys()]
        changes += [
            f"reward {name} changed ({', '.join(k for k in ('weight', 'source') if before[name][k] != r[k])})"
            for name, r in after.items()
            if name in before and (before[name]["weight"], before[name]["source"]) != (r["weight"], r["source"])
        ]
    if changes:
        raise ValueError(
            f"{run_dir} holds a run trained differently ({'; '.join(changes)}), so it cannot be resumed. To start a "
            "new run, write it elsewhere (RUN_ROOT in the notebook, run_root in code) or delete that folder."
        )


def check_no_rows_lost(run_dir: Path, resume_step: int, save_steps: int) -> None:
    """Refuse a rerun that would discard steps a checkpoint should hold: rows after the resumed step are redone only
    when they are the few an interrupted save interval explains, never when the checkpoints are gone."""
    logged = max((row.get("step") or 0 for row in runs.read_rows(run_dir / runs.LOG)), default=0)
    if logged > resume_step + save_steps:
        where = f"checkpoint-{resume_step}" if resume_step else "no complete checkpoint"
        raise ValueError(
            f"{run_dir} logged {logged} steps, but {run_dir / runs.CHECKPOINTS} has {where}: training again would "
            f"restart at step {resume_step} and drop the rows of steps {resume_step + 1}-{logged}. Put the "
            "checkpoints back, or start a new run elsewhere (another RUN_ROOT), or delete the run folder."
        )


def check_enough_prompts(cfg: ExperimentConfig, dataset) -> None:
    """A run that could not make one optimizer step is an error, not a run that 'finished' at step 0."""
    if len(dataset) < cfg.prompts_per_step:
        raise ValueError(
            f"Only {len(dataset)} training prompts are left (train_limit={cfg.train_limit}, prompts longer than "
            f"max_prompt_length={cfg.max_prompt_length} tokens dropped), and one optimizer step takes "
            f"prompts_per_step={cfg.prompts_per_step}. Raise train_limit or max_prompt_length, or check the data."
        )


def use_untrained_model_as_reference(trainer) -> None:
    """The KL reference is the untrained model on every path: the base with the adapter disabled.

    The kit adds its LoRA before training (Unsloth requires it, and the other path does the same so a notebook holds
    the same model either way). TRL 1.14 reads a ``PeftModel`` passed without ``peft_config`` as a *pretrained*
    adapter and keeps a frozen copy of it, ``ref``, as the reference. The kit's adapter is always new, so that copy
    equals the base model; Unsloth's trainer never makes it, and TRL's own ``peft_config`` path disables the adapter
    instead. Worse, the copy is saved as ``checkpoint-*/ref/``, and transformers then resumes only sub-folder
    adapters, never the trained one at the checkpoint's root (huggingface/transformers#30478, whose fix #30505 assumes
    every adapter is in a sub-folder): a resumed run would restart from an untrained adapter. So the copy goes.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")


def resumable(trainer_class):
    """The trainer, resuming every checkpoint this kit wrote: those of kit versions before 2026-12 also hold the
    ``ref/`` copy (see ``use_untrained_model_as_reference``), beside which transformers would not load the trained
    adapter; and under torchrun on CPUs (gloo) transformers loads the optimizer onto args.device, ``cpu:0``, which
    ``torch.load`` cannot map to."""

    class ResumableGRPOTrainer(trainer_class):
        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            model = model if model is not None else self.model
            if (Path(resume_from_checkpoint) / "ref").is_dir() and hasattr(model, "load_adapter"):
                model.load_adapter(resume_from_checkpoint, "default", is_trainable=True)
                return
            super()._load_from_checkpoint(resume_from_checkpoint, model)

        def _load_optimizer_and_scheduler(self, checkpoint):
            if checkpoint is None or torch.cuda.is_available() or world_size() == 1:
                return super()._load_optimizer_and_scheduler(checkpoint)
            self.optimizer.load_state_dict(
                torch.load(Path(checkpoint) / "optimizer.pt", map_location="cpu", weights_only=True)
            )
            self.lr_scheduler.load_state_dict(torch.load(Path(checkpoint) / "scheduler.pt", weights_only=True))

    return ResumableGRPOTrainer


def _on_main_then_everywhere(state, action) -> None:
    """Run ``action`` on the main process; if it raises, raise the same error on every process (a lone failure would
    leave the others waiting at the next barrier)."""
    error = None
    if state.is_main_process:
        try:
            action()
        except Exception as exc:  # re-raised below, on every process
            error = exc
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        error = broadcast_object_list([error])[0]
    if error is not None:
        raise error


def train(cfg: ExperimentConfig, model, tokenizer, rewards: list, backend=None, live_view=None) -> Path:
    """Train with GRPO on ``rewards`` (``(function, weight)`` pairs, or functions of weight 1.0), resuming from the
    run folder's last complete checkpoint if there is one; a finished run reloads its final weights instead. One
    trainer per run folder at a time (``runs.TrainingLock``). In a notebook the curves are redrawn every
    ``cfg.live_every`` steps (``live_view`` replaces the notebook display). Returns the run folder."""
    cfg.validate()
    funcs, weights = split_rewards(rewards)
    records = [reward_record(f, w) for f, w in zip(funcs, weights)]
    state = process_state()
    lock = runs.TrainingLock(cfg.run_dir)
    _on_main_then_everywhere(state, lock.acquire)
    try:
        return _train(cfg, model, tokenizer, funcs, weights, records, backend, live_view, state)
    finally:
        if state.is_main_process:
            lock.release()


def _train(cfg, model, tokenizer, funcs, weights, records, backend, live_view, state) -> Path:
    from trl import GRPOTrainer

    run_dir, main = cfg.run_dir, state.is_main_process
    checkpoints = run_dir / runs.CHECKPOINTS
    if (run_dir / runs.CONFIG).exists():
        check_resumable(cfg, records, run_dir)
    last_checkpoint = runs.last_complete_checkpoint(checkpoints, report=main)
    resume_step = runs.checkpoint_step(last_checkpoint) if last_checkpoint else 0
    check_no_rows_lost(run_dir, resume_step, cfg.save_steps)
    dataset = build_dataset("train", cfg.one_shot, cfg.data_dir, cfg.train_limit, tokenizer, cfg.max_prompt_length)
    check_enough_prompts(cfg, dataset)
    state.wait_for_everyone()  # every process has read the run folder before the first one rewrites it
    log_path, probe_path, samples_path = run_dir / runs.LOG, run_dir / runs.PROBE, run_dir / runs.COMPLETIONS
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / runs.CONFIG)
        runs.write_json(run_dir / runs.ENVIRONMENT, runs.environment_info(backend and backend.to_dict(), cfg.seed))
        runs.write_json(run_dir / runs.REWARDS, records)
        for path in (log_path, probe_path, samples_path):
            runs.truncate_rows(path, resume_step)
        if last_checkpoint:
            print(f"Resuming from {last_checkpoint} (step {resume_step}).")

    graders = [BatchGrader(name, samples_path if name == "strict" and main else None) for name in GRADERS]
    args = grpo_config(cfg, checkpoints, backend, reward_weights=weights + [0.0] * len(graders))
    callbacks = [StopOnNonFinite(cfg, checkpoints, [reward_name(f) for f in funcs]), StepLogger(log_path)]
    if cfg.probe_every and cfg.probe_size:
        callbacks.append(HeldOutProbe(cfg, tokenizer, backend, probe_path))
    if cfg.live_every and main:
        callbacks.append(LiveView(run_dir, cfg.live_every, show=live_view))
    trainer = resumable(GRPOTrainer)(
        model=model,
        reward_funcs=[count_non_finite(f) for f in funcs] + graders,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    use_untrained_model_as_reference(trainer)
    quiet_progress(trainer)
    if last_checkpoint and runs.finished(last_checkpoint):  # resuming there would train one step past the end
        print(f"{run_dir} finished training at step {resume_step}: loading its weights instead of training.")
        trainer._load_from_checkpoint(str(last_checkpoint))
    else:
        with explain_out_of_memory(cfg, "training", backend):
            trainer.train(resume_from_checkpoint=str(last_checkpoint) if last_checkpoint else None)
    trainer.save_model(str(run_dir / (runs.ADAPTER if cfg.lora_rank else runs.FULL_MODEL)))
    if main:
        environment = runs.read_json(run_dir / runs.ENVIRONMENT)
        runs.write_json(
            run_dir / runs.ENVIRONMENT,
            {**environment, **what_reached_trl(args), "trainer": what_ran(trainer, GRPOTrainer)},
        )
    return run_dir


def what_ran(trainer, trainer_class) -> dict:
    """The trainer class, optimizer and attention that actually ran (Unsloth patches all three when imported first;
    ``trainer_class`` is what ``trl.GRPOTrainer`` was, before the kit's ``resumable`` subclass)."""
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps the optimizer
    return {
        "trainer_class": f"{trainer_class.__module__}.{trainer_class.__name__}",
        "optimizer": f"{type(optimizer).__module__}.{type(optimizer).__name__}" if optimizer is not None else None,
        "optim": trainer.args.optim,
        "attention": getattr(trainer.model.config, "_attn_implementation", None),
        "mixed_precision": mixed_precision(trainer.args),
    }


def parse_overrides(pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings as config overrides, each value read as its field's declared type (``--set
    one_shot=false``, ``--set ood_eval_limit=null``, ``--set trl_args='{"epsilon": 0.3}'``)."""
    from utils.experiments import closest, parse_setting

    fields = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
    overrides = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}.")
        if key not in fields:
            hint = f" (did you mean {close!r}?)" if (close := closest(key, fields)) else ""
            raise SystemExit(f"--set: unknown config field {key!r}{hint}; see --help for every field.")
        try:
            overrides[key] = parse_setting(fields[key], text)
        except ValueError as error:
            raise SystemExit(str(error)) from None
    return overrides


def train_and_evaluate(
    cfg: ExperimentConfig, rewards: list, seed: int | None = None, baseline: bool = True, evaluate_runs: bool = True
) -> Path:
    """One seed of an experiment, as its notebook runs it: a fresh model, the untrained baseline (reused when already
    evaluated for this base model and prompt), training (resuming), evaluation on every set and sampled on GSM8K.
    ``seed`` replaces the config's. The model is freed at the end, so seeds can follow one another. Returns the run
    folder."""
    import gc

    from utils.evaluate import (
        baseline_dir,
        evaluate_all,
        evaluate_baseline,
        harness_evaluate,
        sampled_evaluation,
        summaries_table,
    )
    from utils.model import load_model

    if seed is not None and seed != cfg.seed and cfg.run_name:
        raise ValueError(f"run_name={cfg.run_name!r} names one folder, and each seed needs its own: leave it None.")
    cfg = cfg if seed is None else dataclasses.replace(cfg, seed=seed)
    state = process_state()
    model, tokenizer, backend = load_model(cfg)
    if evaluate_runs and baseline:
        table = summaries_table(evaluate_baseline(cfg, model, tokenizer, backend))
        if state.is_main_process:
            print(f"Untrained baseline ({baseline_dir(cfg)}):\n{table.to_string()}")
    run_dir = train(cfg, model, tokenizer, rewards, backend)
    if evaluate_runs:
        table = summaries_table(evaluate_all(cfg, model, tokenizer, run_dir, backend, run_dir / runs.ADAPTER))
        if state.is_main_process:
            print(f"Trained ({run_dir}):\n{table.to_string()}")
        sampled_evaluation(cfg, model, tokenizer, run_dir, backend, run_dir / runs.ADAPTER)
        harness_evaluate(cfg, model, tokenizer, run_dir, backend)
    state.wait_for_everyone()
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return run_dir


def run_experiment(
    experiment: str,
    smoke: bool = False,
    overrides: dict | None = None,
    evaluate_runs: bool = True,
    seeds: list[int] | None = None,
    baseline: bool = True,
    baseline_only: bool = False,
) -> list[Path]:
    """What an experiment notebook does, top to bottom, for each seed one after another (default: the config's):
    config and data checks, the reward set and its checks, then per seed the model, the untrained baseline (once per
    base model and prompt), training (resuming) and evaluation on every set. Returns the run folders."""
    from utils.evaluate import evaluate_baseline
    from utils.experiments import make_config
    from utils.model import load_model, load_tokenizer
    from utils.reward_lab import check_reward_funcs, training_rows
    from utils.rewards import build_rewards

    cfg = make_config(experiment, smoke=smoke, overrides=overrides)
    process_state()  # starts the process group under torchrun / accelerate launch
    if baseline_only:  # the seed launcher's first step: one evaluation that every seed then reuses
        model, tokenizer, backend = load_model(cfg)
        evaluate_baseline(cfg, model, tokenizer, backend)
        return []
    rewards = build_rewards(cfg.reward_set, load_tokenizer(cfg.model_name), **cfg.reward_settings)
    check_reward_funcs(rewards, training_rows(cfg), one_shot=cfg.one_shot)
    return [train_and_evaluate(cfg, rewards, seed, baseline, evaluate_runs) for seed in seeds or [cfg.seed]]


def main(argv=None) -> None:
    from utils.experiments import EXPERIMENTS, fields_help

    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="config fields (--set KEY=VALUE):\n" + fields_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("experiment", choices=list(EXPERIMENTS))
    parser.add_argument("--smoke", action="store_true", help="tiny random model, a few CPU steps, bundled data")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config field below, e.g. --set max_steps=200 --set one_shot=false "
        "--set trl_args='{\"epsilon\": 0.3}'",
    )
    parser.add_argument("--no-eval", action="store_true", help="skip the baseline and the final evaluations")
    parser.add_argument("--seeds", type=int, nargs="+", help="train these seeds, one after another (default: seed)")
    parser.add_argument(
        "--devices",
        nargs="+",
        metavar="DEVICE",
        help="with --seeds: one seed per device at once, each in its own process and run folder (GPU indices, e.g. "
        "0 1; 'cpu' for a CPU process). Independent runs, unlike torchrun's data-parallel one",
    )
    parser.add_argument("--no-baseline", action="store_true", help=argparse.SUPPRESS)  # the launcher's children
    parser.add_argument("--baseline-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.devices:
        from utils.launcher import run_seeds_on_devices

        run_seeds_on_devices(args.experiment, args.smoke, args.set, args.seeds, args.devices, not args.no_eval)
        return
    run_experiment(
        args.experiment,
        args.smoke,
        parse_overrides(args.set),
        evaluate_runs=not args.no_eval,
        seeds=args.seeds,
        baseline=not args.no_baseline,
        baseline_only=args.baseline_only,
    )


if __name__ == "__main__":
    main()
