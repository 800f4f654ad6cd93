"""GRPO training with TRL's GRPOTrainer, writing a self-describing, resumable run folder (see ``utils.runs``).

The command line runs one experiment exactly as its notebook does (config, reward set, reward checks, baseline,
training with resume, evaluation on every set), on one process or several:

    python -m utils.train exp2_oneshot [--smoke] [--set KEY=VALUE ...] [--no-eval]
    torchrun --nproc_per_node 2 -m utils.train exp2_oneshot --set precision=fp16
    accelerate launch --config_file utils/accelerate/zero2.yaml -m utils.train exp4_cosine_no_penalty
"""

if __name__ == "__main__":  # the command line: Unsloth must be imported before transformers to patch it
    from utils.runtime import import_unsloth_first

    import_unsloth_first()

import argparse
import dataclasses
import inspect
import math
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from utils import runs
from utils.data import build_dataset
from utils.evaluate import evaluate, probe_config
from utils.experiments import ExperimentConfig
from utils.grading import GRADERS
from utils.model import explain_out_of_memory, pick_dtype
from utils.rewards import completion_texts, reward_name, split_rewards
from utils.runtime import process_state, world_size

# Fields that may change between a run and its resumption without changing what is trained.
RESUMABLE_FIELDS = {
    "eval_limit",
    "ood_eval_limit",
    "eval_batch_size",
    "eval_max_new_tokens",
    "extra",
    "description",
    "allow_cpu",
    "live_every",
    "report_to",
}
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


def quiet_progress(trainer) -> None:
    """Keep the trainer's progress bar but not the metrics it prints (a dict per step) or tabulates in a notebook (a
    row per step): log.jsonl and the live view have them."""
    for callback in list(trainer.callback_handler.callbacks):
        if type(callback).__name__ in ("ProgressCallback", "NotebookProgressCallback"):
            trainer.remove_callback(callback)
            trainer.add_callback(type(f"Quiet{type(callback).__name__}", (type(callback),), {"on_log": _no_log})())


def _no_log(self, args, state, control, logs=None, **kwargs):
    pass


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
                f"last good checkpoint is {last_good or 'none yet'}. Check that every reward returns finite numbers "
                f"(a rerun as is resumes from that checkpoint), or start a new run (another RUN_ROOT) with "
                f"precision='fp32' or 'bf16' (now {self.cfg.precision!r}) or a lower learning_rate (now "
                f"{self.cfg.learning_rate})."
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
        summary = evaluate(self.cfg, model, self.tokenizer, backend=self.backend, progress=False, shard=False)
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
    dtype the model was loaded in. With N processes (torchrun / accelerate) each accumulates prompts_per_step / N
    prompts, so an optimizer step still sees prompts_per_step prompts. ``cfg.trl_args`` go in last, as given.
    """
    from trl import GRPOConfig

    dtype = str(pick_dtype(cfg.precision)).replace("torch.", "") if backend is None else backend.dtype
    generation_kwargs = {}
    if cfg.min_completion_length:
        key = "min_tokens" if backend is not None and backend.fast_inference else "min_new_tokens"  # vLLM's name
        generation_kwargs[key] = cfg.min_completion_length
    kit = dict(
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
    return GRPOConfig(**{**kit, **cfg.trl_args})


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


def finished(checkpoint: Path) -> bool:
    """Whether a checkpoint is the last step of its run."""
    state = runs.read_json(checkpoint / "trainer_state.json")
    return state["global_step"] >= state["max_steps"]


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


def train(cfg: ExperimentConfig, model, tokenizer, rewards: list, backend=None, live_view=None) -> Path:
    """Train with GRPO on ``rewards`` (``(function, weight)`` pairs, or functions of weight 1.0), resuming from the
    run folder's last complete checkpoint if there is one. In a notebook the curves are redrawn every
    ``cfg.live_every`` steps (``live_view`` replaces the notebook display). Returns the run folder."""
    from trl import GRPOTrainer

    cfg.validate()
    funcs, weights = split_rewards(rewards)
    records = [reward_record(f, w) for f, w in zip(funcs, weights)]
    state = process_state()
    run_dir, main = cfg.run_dir, state.is_main_process
    checkpoints = run_dir / runs.CHECKPOINTS
    if (run_dir / runs.CONFIG).exists():
        _check_resumable(cfg, records, run_dir)
    last_checkpoint = last_complete_checkpoint(checkpoints)
    state.wait_for_everyone()  # every process has read the run folder before the first one rewrites it
    resume_step = int(last_checkpoint.name.split("-")[-1]) if last_checkpoint else 0
    log_path, probe_path, samples_path = run_dir / runs.LOG, run_dir / runs.PROBE, run_dir / runs.COMPLETIONS
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / runs.CONFIG)
        environment = runs.environment_info(backend and backend.to_dict(), cfg.seed)
        environment["batch"] = {
            "world_size": world_size(),
            **batch_mapping(cfg),
            "num_generations": cfg.num_generations,
        }
        runs.write_json(run_dir / runs.ENVIRONMENT, environment)
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
    if cfg.live_every and main:
        callbacks.append(LiveView(run_dir, cfg.live_every, show=live_view))
    trainer_class = GRPOTrainer if torch.cuda.is_available() or world_size() == 1 else resumable_on_cpus(GRPOTrainer)
    trainer = trainer_class(
        model=model,
        reward_funcs=funcs + graders,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    quiet_progress(trainer)
    if last_checkpoint and finished(last_checkpoint):  # resuming there would train one step past the end
        print(f"{run_dir} finished training at step {resume_step}: loading its weights instead of training.")
        trainer._load_from_checkpoint(str(last_checkpoint))
    else:
        with explain_out_of_memory(cfg, "training", backend):
            trainer.train(resume_from_checkpoint=str(last_checkpoint) if last_checkpoint else None)
    trainer.save_model(str(run_dir / (runs.ADAPTER if cfg.lora_rank else runs.FULL_MODEL)))
    if main:
        environment = runs.read_json(run_dir / runs.ENVIRONMENT)
        runs.write_json(run_dir / runs.ENVIRONMENT, {**environment, "trainer": what_ran(trainer)})
    return run_dir


def resumable_on_cpus(trainer_class):
    """The trainer, able to resume under torchrun on CPUs (gloo): transformers loads the optimizer onto args.device,
    ``cpu:0`` there, which ``torch.load`` cannot map to. GPUs need none of this."""

    class CPUDistributedGRPOTrainer(trainer_class):
        def _load_optimizer_and_scheduler(self, checkpoint):
            if checkpoint is None:
                return
            self.optimizer.load_state_dict(
                torch.load(Path(checkpoint) / "optimizer.pt", map_location="cpu", weights_only=True)
            )
            self.lr_scheduler.load_state_dict(torch.load(Path(checkpoint) / "scheduler.pt", weights_only=True))

    return CPUDistributedGRPOTrainer


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


class LiveView(TrainerCallback):
    """Redraw the run's curves in the notebook every ``every`` steps with the elapsed time and an ETA. One figure,
    updated in place, so a saved notebook (papermill) keeps just the last; outside a notebook it draws nothing."""

    def __init__(self, run_dir: Path, every: int, show=None):
        self.run_dir, self.every = run_dir, every
        self.show = show if show is not None else notebook_figure()
        self.drawn: list[int] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step = time.time(), state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "train_runtime" not in logs and state.global_step % self.every == 0:
            self.draw(state)

    def on_train_end(self, args, state, control, **kwargs):
        if state.global_step not in self.drawn:
            self.draw(state)

    def draw(self, state):
        if self.show is None or not state.is_world_process_zero:
            return
        import matplotlib.pyplot as plt

        from utils.analysis import plot_run

        elapsed, done = time.time() - self.started, state.global_step - self.first_step
        eta = elapsed / done * (state.max_steps - state.global_step) if done else float("nan")
        title = f"step {state.global_step}/{state.max_steps}: elapsed {_minutes(elapsed)}, ETA {_minutes(eta)}"
        fig = plot_run(self.run_dir, title=title)
        self.show(fig)
        plt.close(fig)
        self.drawn.append(state.global_step)


def _minutes(seconds: float) -> str:
    return "unknown" if not math.isfinite(seconds) else f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def notebook_figure():
    """A function that shows a figure in the running notebook, replacing the one it showed before; None outside a
    notebook kernel."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    if get_ipython() is None or not hasattr(get_ipython(), "kernel"):
        return None
    handle = None

    def show(fig):
        nonlocal handle
        if handle is None:
            handle = display(fig, display_id=True)
        else:
            handle.update(fig)

    return show


def parse_overrides(pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings as config overrides; a value is read as JSON when it parses (numbers, true/false, null,
    lists, dicts), else as a string."""
    import json

    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}.")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise SystemExit(f"--set: unknown config field(s) {unknown}; valid ones: {', '.join(sorted(fields))}.")
    return overrides


def run_experiment(experiment: str, smoke: bool = False, overrides: dict | None = None, evaluate_runs: bool = True):
    """What an experiment notebook does, top to bottom: config and data checks, the reward set and its checks, the
    model, the untrained baseline, training (resuming), and evaluation on every set. Returns the run folder."""
    from utils.evaluate import baseline_dir, evaluate_all, evaluate_baseline, summaries_table
    from utils.experiments import make_config
    from utils.model import load_model, load_tokenizer
    from utils.reward_lab import check_reward_funcs
    from utils.rewards import build_rewards

    cfg = make_config(experiment, smoke=smoke, **(overrides or {}))
    state = process_state()  # starts the process group under torchrun / accelerate launch
    rewards = build_rewards(cfg.reward_set, load_tokenizer(cfg.model_name))
    check_reward_funcs(rewards, one_shot=cfg.one_shot)
    model, tokenizer, backend = load_model(cfg)
    if evaluate_runs:
        table = summaries_table(evaluate_baseline(cfg, model, tokenizer, backend))
        if state.is_main_process:
            print(f"Untrained baseline ({baseline_dir(cfg)}):\n{table.to_string()}")
    run_dir = train(cfg, model, tokenizer, rewards, backend)
    if evaluate_runs:
        adapter = run_dir / runs.ADAPTER
        table = summaries_table(evaluate_all(cfg, model, tokenizer, run_dir, backend, adapter))
        if state.is_main_process:
            print(f"Trained ({run_dir}):\n{table.to_string()}")
    state.wait_for_everyone()
    return run_dir


def main(argv=None) -> None:
    from utils.experiments import EXPERIMENTS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=list(EXPERIMENTS))
    parser.add_argument("--smoke", action="store_true", help="tiny random model, a few CPU steps, bundled data")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any ExperimentConfig field, e.g. --set max_steps=200 --set trl_args='{\"epsilon\": 0.3}'",
    )
    parser.add_argument("--no-eval", action="store_true", help="skip the baseline and the final evaluations")
    args = parser.parse_args(argv)
    run_experiment(args.experiment, args.smoke, parse_overrides(args.set), evaluate_runs=not args.no_eval)


if __name__ == "__main__":
    main()
