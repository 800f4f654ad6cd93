"""GRPO training with TRL's GRPOTrainer, writing a self-describing, resumable run folder.

``runs/<name>/`` holds: ``config.json`` (everything needed to rerun), ``environment.json`` (packages, GPU, git
commit, backend), ``log.jsonl`` (one row per optimizer step: every TRL metric, each reward's mean, the mean
completion length and the share of correct completions in the batch), ``probe.jsonl`` (held-out accuracy on a
fixed set of test questions during training), ``completions.jsonl`` (a few sampled completions per step),
``checkpoints/`` and, at the end, ``adapter/``.
"""

import inspect
import json
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from utils.data import REPO_ROOT, build_dataset, read_run_jsonl
from utils.evaluate import evaluate
from utils.experiments import ExperimentConfig
from utils.grading import is_correct, is_correct_strict
from utils.model import pick_dtype
from utils.rewards import completion_text

PACKAGES = ["torch", "transformers", "trl", "peft", "datasets", "accelerate", "unsloth", "unsloth_zoo", "vllm", "bitsandbytes"]
# Fields that may change between a run and its resumption without changing what is trained.
RESUMABLE_FIELDS = {"eval_limit", "eval_batch_size", "eval_max_new_tokens", "extra", "description", "allow_cpu"}


def environment_info(backend: dict | None = None, seed: int | None = None) -> dict:
    """Provenance: package versions, hardware, git commit, chosen backend."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cuda": torch.version.cuda,
        "packages": versions,
        "git_commit": commit or None,
        "git_dirty": dirty,
        "seed": seed,
        "backend": backend,
    }


def reward_record(func) -> dict:
    """Name and source of a reward function, so a run folder says exactly what it was trained on."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        source = None
    return {"name": getattr(func, "__name__", type(func).__name__), "module": getattr(func, "__module__", None), "source": source}


def _append_jsonl(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop rows logged after the checkpoint we resume from, so each step appears once."""
    if path.exists():
        path.write_text("".join(json.dumps(row) + "\n" for row in read_run_jsonl(path) if row.get("step", 0) <= last_step))


class BatchGrader:
    """A zero-weight 'reward' that grades each training batch and keeps a few completions per step.

    It adds nothing to the reward (its weight is 0), but TRL logs its mean as ``rewards/<name>/mean``:
    the share of correct completions in the batch. That is training-batch accuracy, not held-out accuracy.
    """

    def __init__(self, grader: str, samples_path: Path | None = None, samples_per_step: int = 2):
        self.__name__ = f"batch_correct_{grader}"
        self.grade = {"strict": is_correct_strict, "numeric": is_correct}[grader]
        self.samples_path, self.samples_per_step = samples_path, samples_per_step

    def __call__(self, completions, answer, trainer_state=None, **kwargs) -> list[float]:
        texts = [completion_text(c) for c in completions]
        verdicts = [float(self.grade(t, a)) for t, a in zip(texts, answer)]
        if self.samples_path is not None:
            step = trainer_state.global_step + 1 if trainer_state is not None else None
            for text, gold, verdict in list(zip(texts, answer, verdicts))[: self.samples_per_step]:
                _append_jsonl(self.samples_path, {"step": step, "gold": gold, "correct": bool(verdict), "completion": text})
        return verdicts


class StepLogger(TrainerCallback):
    """One JSON row per optimizer step, readable without TensorBoard."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs:
            return
        row = {"step": state.global_step, **logs}
        row["completion_length"] = logs.get("completions/mean_length")
        row["correct_frac_strict"] = logs.get("rewards/batch_correct_strict/mean")
        row["correct_frac_numeric"] = logs.get("rewards/batch_correct_numeric/mean")
        _append_jsonl(self.path, row)


class HeldOutProbe(TrainerCallback):
    """Greedy accuracy on a fixed set of test questions every ``cfg.probe_every`` steps, so users see task
    accuracy move, not only reward."""

    def __init__(self, cfg: ExperimentConfig, tokenizer, backend: dict, path: Path):
        self.cfg, self.tokenizer, self.backend, self.path = cfg, tokenizer, backend, path

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.cfg.probe_every and state.global_step % self.cfg.probe_every == 0:
            # The probe generates with the model in training memory; vLLM would need the adapter saved first.
            backend = {**self.backend, "fast_inference": False}
            summary = evaluate(model, self.tokenizer, self.cfg, backend=backend, limit=self.cfg.probe_size, progress=False)
            row = {"step": state.global_step, "n": summary["n"], "accuracy_strict": summary["accuracy_strict"],
                   "accuracy_numeric": summary["accuracy_numeric"], "mean_completion_tokens": summary["mean_completion_tokens"]}
            _append_jsonl(self.path, row)
            print(f"[probe] step {state.global_step}: held-out accuracy strict {row['accuracy_strict']:.3f}, numeric {row['accuracy_numeric']:.3f} (n={row['n']})")


def grpo_config(cfg: ExperimentConfig, output_dir: Path, backend: dict | None = None):
    """Map the experiment config onto TRL's GRPOConfig (see ExperimentConfig.prompts_per_step)."""
    from trl import GRPOConfig

    dtype = pick_dtype(cfg.precision)
    generation_kwargs = None
    if cfg.min_completion_length:
        key = "min_tokens" if (backend or {}).get("fast_inference") else "min_new_tokens"  # vLLM vs transformers name
        generation_kwargs = {key: cfg.min_completion_length}
    return GRPOConfig(
        output_dir=str(output_dir),
        learning_rate=cfg.learning_rate, adam_beta1=cfg.adam_beta1, adam_beta2=cfg.adam_beta2, weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float below 1 is a ratio
        lr_scheduler_type=cfg.lr_scheduler_type, max_grad_norm=cfg.max_grad_norm,
        per_device_train_batch_size=cfg.num_generations, gradient_accumulation_steps=cfg.prompts_per_step,
        num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
        num_train_epochs=cfg.num_train_epochs, max_steps=cfg.max_steps, beta=cfg.beta, temperature=cfg.temperature, top_k=cfg.top_k,
        loss_type=cfg.loss_type, seed=cfg.seed, logging_steps=cfg.logging_steps,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=2,
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, gradient_checkpointing=cfg.gradient_checkpointing,
        generation_kwargs=generation_kwargs, report_to="none", disable_tqdm=False,
    )


def _check_resumable(cfg: ExperimentConfig, config_path: Path) -> None:
    saved = json.loads(config_path.read_text())
    changed = {k: (saved.get(k), v) for k, v in cfg.to_dict().items() if k not in RESUMABLE_FIELDS and saved.get(k) != v}
    if changed:
        raise ValueError(
            f"{config_path.parent} holds a run with a different config ({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in changed.items())}). "
            "To keep it, write the new run elsewhere (RUN_ROOT in the notebook, run_root in code); to start over, delete that folder."
        )


def train(cfg: ExperimentConfig, model, tokenizer, reward_funcs: list, backend: dict | None = None) -> Path:
    """Train with GRPO, resuming from the run folder's last checkpoint if there is one. Returns the run folder."""
    from trl import GRPOTrainer

    cfg.validate()
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = run_dir / "checkpoints"
    last_checkpoint = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if (run_dir / "config.json").exists():
        _check_resumable(cfg, run_dir / "config.json")
    cfg.save(run_dir / "config.json")
    (run_dir / "environment.json").write_text(json.dumps(environment_info(backend, cfg.seed), indent=2))
    log_path, probe_path, samples_path = run_dir / "log.jsonl", run_dir / "probe.jsonl", run_dir / "completions.jsonl"
    resume_step = int(Path(last_checkpoint).name.split("-")[-1]) if last_checkpoint else 0
    for path in (log_path, probe_path, samples_path):
        _truncate_jsonl(path, resume_step)
    if last_checkpoint:
        print(f"Resuming from {last_checkpoint} (step {resume_step}).")

    (run_dir / "rewards.json").write_text(json.dumps([reward_record(f) for f in reward_funcs], indent=2))
    dataset = build_dataset("train", cfg.one_shot, cfg.data_dir, cfg.train_limit, tokenizer, cfg.max_prompt_length)
    graders = [BatchGrader("strict", samples_path), BatchGrader("numeric")]
    args = grpo_config(cfg, checkpoints, backend)
    args.reward_weights = [1.0] * len(reward_funcs) + [0.0] * len(graders)
    callbacks = [StepLogger(log_path)]
    if cfg.probe_every and cfg.probe_size:
        callbacks.append(HeldOutProbe(cfg, tokenizer, backend or {}, probe_path))
    trainer = GRPOTrainer(model=model, reward_funcs=list(reward_funcs) + graders, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)
    trainer.train(resume_from_checkpoint=last_checkpoint)
    trainer.save_model(str(run_dir / ("adapter" if cfg.lora_rank else "model")))
    return run_dir
