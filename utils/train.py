"""GRPO training with TRL's GRPOTrainer, writing a self-describing, resumable run folder (see ``utils.runs``)."""

import dataclasses
import inspect
import math
from pathlib import Path

from transformers import TrainerCallback

from utils import runs
from utils.data import build_dataset
from utils.evaluate import evaluate, probe_config
from utils.experiments import ExperimentConfig
from utils.grading import GRADERS
from utils.model import explain_out_of_memory, pick_dtype
from utils.rewards import completion_texts, reward_name, split_rewards

# Fields that may change between a run and its resumption without changing what is trained.
RESUMABLE_FIELDS = {"eval_limit", "eval_batch_size", "eval_max_new_tokens", "extra", "description", "allow_cpu"}
# What a checkpoint must hold to be resumed from; a save cut short by a disconnect lacks some of it.
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
CHECKPOINT_WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")


def reward_record(func, weight: float) -> dict:
    """Name, weight and source of a reward function, so a run folder says exactly what it was trained on."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        source = None
    return {"name": reward_name(func), "weight": weight, "module": getattr(func, "__module__", None), "source": source}


class BatchGrader:
    """A zero-weight 'reward' that grades each training batch and keeps a few completions per step.

    It adds nothing to the reward (its weight is 0), but TRL logs its mean as ``rewards/<name>/mean``: the share of
    correct completions in the batch under that grader. That is training-batch accuracy, not held-out accuracy.
    """

    def __init__(self, grader: str, samples_path: Path | None = None, samples_per_step: int = 2):
        self.__name__ = f"batch_correct_{grader}"
        self.grade = GRADERS[grader]
        self.samples_path, self.samples_per_step = samples_path, samples_per_step

    def __call__(self, completions, answer, trainer_state=None, **kwargs) -> list[float]:
        texts = completion_texts(completions)
        verdicts = [float(self.grade(text, gold)) for text, gold in zip(texts, answer)]
        if self.samples_path is not None:
            step = trainer_state.global_step + 1 if trainer_state is not None else None
            for text, gold, verdict in list(zip(texts, answer, verdicts))[: self.samples_per_step]:
                runs.append_row(
                    self.samples_path, {"step": step, "gold": gold, "correct": bool(verdict), "completion": text}
                )
        return verdicts


class TrainingDiverged(RuntimeError):
    """The loss or the rewards became NaN or infinite; training stopped before saving the bad step."""


class StopOnNonFinite(TrainerCallback):
    """Stop at the first step whose loss or total reward is NaN/inf, or where a trained reward gave only NaN, before
    its checkpoint is saved."""

    def __init__(self, cfg: ExperimentConfig, checkpoints: Path, reward_names: list[str]):
        self.cfg, self.checkpoints = cfg, checkpoints
        self.watched = ["loss", "reward", *(f"rewards/{name}/mean" for name in reward_names)]

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs:
            return
        values = {key: float("nan") if logs[key] is None else logs[key] for key in self.watched if key in logs}
        bad = [key for key, value in values.items() if not math.isfinite(value)]
        if bad:
            last_good = last_complete_checkpoint(self.checkpoints)
            raise TrainingDiverged(
                f"Step {state.global_step}: {' and '.join(f'{k} = {values[k]}' for k in bad)}. Training stopped; the "
                f"last good checkpoint is {last_good or 'none yet'} and a rerun resumes from it. Try precision='fp32' "
                f"or 'bf16' (now {self.cfg.precision!r}), a lower learning_rate (now {self.cfg.learning_rate}), or "
                f"check that every reward returns finite numbers."
            )


class StepLogger(TrainerCallback):
    """One JSON row per optimizer step, readable without TensorBoard."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs or not state.is_world_process_zero:
            return
        row = {"step": state.global_step, **logs}
        row["completion_length"] = logs.get("completions/mean_length")
        for grader in GRADERS:
            row[f"correct_frac_{grader}"] = logs.get(f"rewards/batch_correct_{grader}/mean")
        runs.append_row(self.path, row)


class HeldOutProbe(TrainerCallback):
    """Greedy accuracy on a fixed set of test questions every ``cfg.probe_every`` steps, so users see task accuracy
    move, not only reward."""

    def __init__(self, cfg: ExperimentConfig, tokenizer, backend, path: Path):
        # The probe generates with the model in training memory; vLLM would need the adapter saved first.
        self.cfg, self.tokenizer, self.path = probe_config(cfg), tokenizer, path
        self.backend = dataclasses.replace(backend, fast_inference=False) if backend is not None else None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not (
            self.cfg.probe_every and state.global_step % self.cfg.probe_every == 0 and state.is_world_process_zero
        ):
            return
        summary = evaluate(self.cfg, model, self.tokenizer, backend=self.backend, progress=False)
        row = {
            "step": state.global_step,
            "n": summary["n"],
            "mean_completion_tokens": summary["mean_completion_tokens"],
            **{f"accuracy_{grader}": summary[f"accuracy_{grader}"] for grader in GRADERS},
        }
        runs.append_row(self.path, row)
        print(
            f"[probe] step {state.global_step}: held-out accuracy strict {row['accuracy_strict']:.3f}, numeric "
            f"{row['accuracy_numeric']:.3f} (n={row['n']})"
        )


def grpo_config(cfg: ExperimentConfig, output_dir: Path, backend=None, reward_weights: list[float] | None = None):
    """Map the experiment config onto TRL's GRPOConfig (see ExperimentConfig.prompts_per_step).

    Every argument whose default differs between TRL and Unsloth's generated subclass (which ``trl.GRPOConfig`` is
    after ``import unsloth``) is passed explicitly, so both train what the study trained. Mixed precision follows the
    dtype the model was loaded in.
    """
    from trl import GRPOConfig

    dtype = str(pick_dtype(cfg.precision)).replace("torch.", "") if backend is None else backend.dtype
    generation_kwargs = {}
    if cfg.min_completion_length:
        key = "min_tokens" if backend is not None and backend.fast_inference else "min_new_tokens"  # vLLM's name
        generation_kwargs[key] = cfg.min_completion_length
    return GRPOConfig(
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
        per_device_train_batch_size=cfg.num_generations,
        gradient_accumulation_steps=cfg.prompts_per_step,
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
        report_to="none",
        disable_tqdm=False,
    )


def last_complete_checkpoint(checkpoints: Path) -> Path | None:
    """The newest checkpoint with every file a resume needs; a save cut short by a disconnect is skipped, loudly."""
    if not checkpoints.is_dir():
        return None
    candidates = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for checkpoint in candidates:
        missing = [f for f in CHECKPOINT_FILES if not (checkpoint / f).is_file()]
        if not any((checkpoint / f).is_file() for f in CHECKPOINT_WEIGHTS):
            missing.append("model weights")
        if not missing:
            return checkpoint
        print(f"Skipping {checkpoint.name}: incomplete (missing {', '.join(missing)}), probably a save cut short.")
    return None


def _check_resumable(cfg: ExperimentConfig, records: list[dict], run_dir: Path) -> None:
    """Refuse to resume a run folder trained with another config or other rewards."""
    saved = runs.read_json(run_dir / runs.CONFIG)
    changes = [
        f"{k}: {saved.get(k)!r} -> {v!r}"
        for k, v in cfg.to_dict().items()
        if k not in RESUMABLE_FIELDS and saved.get(k) != v
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


def train(cfg: ExperimentConfig, model, tokenizer, rewards: list, backend=None) -> Path:
    """Train with GRPO on ``rewards`` (``(function, weight)`` pairs, or functions of weight 1.0), resuming from the
    run folder's last complete checkpoint if there is one. Returns the run folder."""
    from accelerate import PartialState
    from trl import GRPOTrainer

    cfg.validate()
    funcs, weights = split_rewards(rewards)
    records = [reward_record(f, w) for f, w in zip(funcs, weights)]
    run_dir, main = cfg.run_dir, PartialState().is_main_process
    checkpoints = run_dir / runs.CHECKPOINTS
    if (run_dir / runs.CONFIG).exists():
        _check_resumable(cfg, records, run_dir)
    last_checkpoint = last_complete_checkpoint(checkpoints)
    resume_step = int(last_checkpoint.name.split("-")[-1]) if last_checkpoint else 0
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

    dataset = build_dataset("train", cfg.one_shot, cfg.data_dir, cfg.train_limit, tokenizer, cfg.max_prompt_length)
    graders = [BatchGrader(name, samples_path if name == "strict" and main else None) for name in GRADERS]
    args = grpo_config(cfg, checkpoints, backend, reward_weights=weights + [0.0] * len(graders))
    callbacks = [StopOnNonFinite(cfg, checkpoints, [reward_name(f) for f in funcs]), StepLogger(log_path)]
    if cfg.probe_every and cfg.probe_size:
        callbacks.append(HeldOutProbe(cfg, tokenizer, backend, probe_path))
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs + graders,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    with explain_out_of_memory(cfg, "training", backend):
        trainer.train(resume_from_checkpoint=str(last_checkpoint) if last_checkpoint else None)
    trainer.save_model(str(run_dir / (runs.ADAPTER if cfg.lora_rank else runs.FULL_MODEL)))
    if main:
        environment = runs.read_json(run_dir / runs.ENVIRONMENT)
        runs.write_json(run_dir / runs.ENVIRONMENT, {**environment, "trainer": what_ran(trainer)})
    return run_dir


def what_ran(trainer) -> dict:
    """The trainer class, optimizer and attention that actually ran (Unsloth patches all three when imported first)."""
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps the optimizer
    return {
        "trainer_class": f"{type(trainer).__module__}.{type(trainer).__name__}",
        "optimizer": f"{type(optimizer).__module__}.{type(optimizer).__name__}",
        "optim": trainer.args.optim,
        "attention": getattr(trainer.model.config, "_attn_implementation", None),
        "mixed_precision": "fp16" if trainer.args.fp16 else "bf16" if trainer.args.bf16 else "no",
    }
