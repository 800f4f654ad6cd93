"""GRPO training with TRL's GRPOTrainer, writing a self-describing, resumable run folder (see ``utils.runs``)."""

import dataclasses
import inspect
import time
from pathlib import Path

import torch

from utils import runs
from utils.callbacks import (
    BatchGrader,
    HeldOutProbe,
    LiveView,
    StepLogger,
    StopOnNonFinite,
    StopOnTimeBudget,
    count_non_finite,
    quiet_progress,
)
from utils.config import ExperimentConfig, changes_training
from utils.data import build_dataset
from utils.experiments import baseline_dir, check_environment, grpo_arguments
from utils.grading import GRADERS
from utils.model import explain_out_of_memory
from utils.rewards import reward_name, split_rewards
from utils.runtime import process_state, rank_and_processes

SAVE_SECONDS = 300  # kept besides the evaluation: the final save, the merged model, the analysis cells


def reward_record(func, weight: float) -> dict:
    """Name, weight and source of a reward function, so a run folder says exactly what it was trained on."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        source = None
    return {"name": reward_name(func), "weight": weight, "module": getattr(func, "__module__", None), "source": source}


def grpo_config(cfg: ExperimentConfig, output_dir, loaded=None, reward_weights: list[float] | None = None):
    """TRL's GRPOConfig: the kit's arguments (``utils.experiments.grpo_arguments``) in the precision the model was
    loaded in, and ``cfg.trl_args``, which may only name arguments the kit does not set (config.json says what ran)."""
    from trl import GRPOConfig

    dtype, vllm = (loaded.dtype, loaded.fast_inference) if loaded is not None else (None, False)
    arguments = grpo_arguments(cfg, output_dir, dtype, vllm)
    return GRPOConfig(**arguments, reward_weights=reward_weights, **cfg.trl_args)


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
    """Refuse to resume a run folder trained with another config or other rewards."""
    saved = ExperimentConfig.load(run_dir / runs.CONFIG).to_dict()
    changes = [
        f"{f.name}: {saved[f.name]!r} -> {getattr(cfg, f.name)!r}"
        for f in dataclasses.fields(cfg)
        if changes_training(f) and saved[f.name] != getattr(cfg, f.name)
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
    """The trainer, resuming under torchrun on CPUs too: there (gloo) transformers loads the optimizer onto
    args.device, ``cpu:0``, which ``torch.load`` cannot map to."""

    class ResumableGRPOTrainer(trainer_class):
        def _load_optimizer_and_scheduler(self, checkpoint):
            if checkpoint is None or torch.cuda.is_available() or rank_and_processes()[1] == 1:
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


def train(cfg: ExperimentConfig, model, tokenizer, rewards: list, loaded=None, live_view=None, budget=None) -> Path:
    """Train with GRPO on ``rewards`` (``(function, weight)`` pairs, or functions of weight 1.0), resuming from the
    run folder's last complete checkpoint if there is one; a finished run reloads its final weights instead. One
    trainer per run folder at a time (``runs.TrainingLock``). In a notebook the curves are redrawn every
    ``cfg.live_every`` steps (``live_view`` replaces the notebook display). With a ``budget``
    (``utils.session.TimeBudget``) training stops at a checkpoint early enough for the evaluation, which takes about
    as long as the untrained baseline's did, and the run folder says so (``runs.BUDGET_STOP``). Returns the run
    folder."""
    check_environment(cfg)
    funcs, weights = split_rewards(rewards)
    records = [reward_record(f, w) for f, w in zip(funcs, weights)]
    state = process_state()
    lock = runs.TrainingLock(cfg.run_dir)
    _on_main_then_everywhere(state, lock.acquire)
    try:
        return _train(cfg, model, tokenizer, funcs, weights, records, loaded, live_view, state, budget)
    finally:
        if state.is_main_process:
            lock.release()


def _train(cfg, model, tokenizer, funcs, weights, records, loaded, live_view, state, budget) -> Path:
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
        runs.write_json(run_dir / runs.ENVIRONMENT, runs.environment_info(loaded and loaded.to_dict(), cfg.seed))
        runs.write_json(run_dir / runs.REWARDS, records)
        for path in (log_path, probe_path, samples_path):
            runs.truncate_rows(path, resume_step)
        if last_checkpoint:
            print(f"Resuming from {last_checkpoint} (step {resume_step}).")

    graders = [BatchGrader(name, samples_path if name == "strict" and main else None) for name in GRADERS]
    args = grpo_config(cfg, checkpoints, loaded, reward_weights=weights + [0.0] * len(graders))
    callbacks = [StopOnNonFinite(cfg, checkpoints, [reward_name(f) for f in funcs]), StepLogger(log_path)]
    if cfg.probe_every and cfg.probe_size:
        callbacks.append(HeldOutProbe(cfg, tokenizer, loaded, probe_path))
    if cfg.live_every and main:
        callbacks.append(LiveView(run_dir, cfg.live_every, show=live_view))
    stopper = None
    if budget is not None:
        stopper = StopOnTimeBudget(budget, runs.evaluation_seconds(baseline_dir(cfg)) + SAVE_SECONDS)
        callbacks.append(stopper)
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
        with explain_out_of_memory(cfg, "training", loaded):
            trainer.train(resume_from_checkpoint=str(last_checkpoint) if last_checkpoint else None)
    trainer.save_model(str(run_dir / (runs.ADAPTER if cfg.lora_rank else runs.FULL_MODEL)))
    if main:
        record_budget_stop(run_dir, stopper, budget, trainer.state)
        environment = runs.read_json(run_dir / runs.ENVIRONMENT)
        runs.write_json(
            run_dir / runs.ENVIRONMENT,
            {**environment, **what_reached_trl(args), "trainer": what_ran(trainer, GRPOTrainer)},
        )
    return run_dir


def record_budget_stop(run_dir: Path, stopper, budget, state) -> None:
    """Say in the run folder that training stopped on the time budget (notebook 05 shows it), or remove an earlier
    stop's record once a rerun has gone past it."""
    path = run_dir / runs.BUDGET_STOP
    if stopper is None or stopper.stopped_at is None:
        path.unlink(missing_ok=True)
        return
    runs.write_json(path, {
        "step": stopper.stopped_at, "max_steps": state.max_steps, "budget_hours": budget.hours,
        "counted_from": budget.counted_from, "seconds_per_step": round(stopper.seconds_per_step, 1),
        "reserved_seconds": round(stopper.reserve), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    })  # fmt: skip


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
