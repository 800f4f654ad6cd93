"""What watches a training run: batch graders, the held-out probe, the step log, the stop for non-finite numbers, and
the live figure. ``utils.trainer`` wires them into TRL's ``GRPOTrainer``."""

import dataclasses
import functools
import inspect
import math
import time
from pathlib import Path

import pandas as pd
from transformers import TrainerCallback

from utils import runs
from utils.evaluate import evaluate, probe_config
from utils.grading import GRADERS
from utils.logs import load_run_logs
from utils.rewards import completion_texts


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
    """A reward returned NaN or infinity, or the loss became non-finite; training stopped before saving the bad
    step."""


NON_FINITE = "rewards/{}/non_finite"  # logged per reward: the share of its values that were NaN or infinite


def count_non_finite(func):
    """The reward ``func``, also logging the share of NaN or infinite values it returns (through TRL's
    ``log_metric``, averaged over processes, so every process sees the same number). ``None`` is not counted: it is
    how a reward abstains on a completion."""
    metric = NON_FINITE.format(func.__name__)

    def share(values) -> float:
        return sum(v is not None and not math.isfinite(float(v)) for v in values) / max(len(values), 1)

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def counted_async(*args, log_metric=None, **kwargs):
            values = await func(*args, log_metric=log_metric, **kwargs)
            if log_metric is not None:
                log_metric(metric, share(values))
            return values

        return counted_async

    @functools.wraps(func)
    def counted(*args, log_metric=None, **kwargs):
        values = func(*args, log_metric=log_metric, **kwargs)
        if log_metric is not None:
            log_metric(metric, share(values))
        return values

    return counted


class StopOnNonFinite(TrainerCallback):
    """Stop at the first step where a reward returned NaN or infinity or the loss is not finite, before that step's
    checkpoint is saved. A reward that returns None (abstains) for a whole batch is not a divergence."""

    def __init__(self, cfg, checkpoints: Path, reward_names: list[str]):
        self.cfg, self.checkpoints, self.reward_names = cfg, checkpoints, reward_names

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs:
            return
        last_good = runs.last_complete_checkpoint(self.checkpoints, report=False) or "none yet"
        rewards = [name for name in self.reward_names if logs.get(NON_FINITE.format(name), 0) > 0]
        if rewards:
            raise TrainingDiverged(
                f"Step {state.global_step}: "
                + " and ".join(f"reward {name} returned NaN or infinity" for name in rewards)
                + f". Training stopped; the last good checkpoint is {last_good}. Make every reward return finite "
                "numbers (None abstains on a completion), then start a new run (another RUN_ROOT): a run is never "
                "resumed with a changed reward."
            )
        loss = logs.get("loss", 0.0)
        if loss is None or not math.isfinite(loss):
            raise TrainingDiverged(
                f"Step {state.global_step}: loss = {loss}. Training stopped; the last good checkpoint is {last_good}. "
                f"A rerun as is resumes from that checkpoint; or start a new run (another RUN_ROOT) with "
                f"precision='fp32' or 'bf16' (now {self.cfg.precision!r}) or a lower learning_rate (now "
                f"{self.cfg.learning_rate})."
            )


class StopOnTimeBudget(TrainerCallback):
    """Stops training at a saved checkpoint when the next step plus ``reserve`` seconds (the evaluation that follows
    and saving) would pass the session's deadline (``utils.session.TimeBudget``); after the first steps it prints the
    measured time per step and how many steps fit. A rerun resumes from that checkpoint."""

    plan_after = 3  # steps measured before the plan is printed (the first includes warm-up: a cautious estimate)

    def __init__(self, budget, reserve: float):
        self.budget, self.reserve = budget, reserve
        self.stopped_at, self.seconds_per_step = None, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step = time.time(), state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        done = state.global_step - self.first_step
        self.seconds_per_step = (time.time() - self.started) / max(done, 1)
        left_after_this = state.max_steps - state.global_step
        if done == min(self.plan_after, state.max_steps - self.first_step):
            fit = max(int((self.budget.left() - self.reserve) // self.seconds_per_step), 0)
            ending = "the run finishes in this session" if fit >= left_after_this else (
                f"training stops at about step {state.global_step + fit} of {state.max_steps}, at a checkpoint; "
                "Run all again in a new session to go on")  # fmt: skip
            print(f"Time budget: {self.seconds_per_step:.0f} s a step over {done} steps; {min(fit, left_after_this)} "
                  f"of the {left_after_this} steps left fit before the evaluation ({self.reserve / 60:.0f} min "
                  f"kept for it): {ending}.", flush=True)  # fmt: skip
        if left_after_this > 0 and time.time() + self.seconds_per_step + self.reserve > self.budget.deadline:
            control.should_save = control.should_training_stop = True
            self.stopped_at = state.global_step
            print(f"Time budget: stopping at step {state.global_step} of {state.max_steps} with a checkpoint, "
                  f"{self.reserve / 60:.0f} min before the budget ends, for the evaluation.", flush=True)  # fmt: skip


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

    def __init__(self, cfg, tokenizer, loaded, path: Path):
        # The probe generates with the model in training memory; vLLM would need the adapter saved first.
        self.cfg, self.tokenizer, self.path = probe_config(cfg), tokenizer, path
        self.loaded = dataclasses.replace(loaded, fast_inference=False) if loaded is not None else None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not (
            self.cfg.probe_every and state.global_step % self.cfg.probe_every == 0 and state.is_world_process_zero
        ):
            return
        summary = evaluate(self.cfg, model, self.tokenizer, loaded=self.loaded, progress=False, shard=False)
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


def quiet_progress(trainer) -> None:
    """Keep the trainer's progress bar but not the metrics it prints (a dict per step) or tabulates in a notebook (a
    row per step): log.jsonl and the live view have them."""
    for callback in list(trainer.callback_handler.callbacks):
        if type(callback).__name__ in ("ProgressCallback", "NotebookProgressCallback"):
            trainer.remove_callback(callback)
            trainer.add_callback(type(f"Quiet{type(callback).__name__}", (type(callback),), {"on_log": _no_log})())


def _no_log(self, args, state, control, logs=None, **kwargs):
    pass


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


def plot_run(run_dir, window: int = 10, title: str | None = None):
    """Training curves of one run: total reward and each reward's mean, completion length, training-batch accuracy
    under both graders, and held-out probe accuracy."""
    import matplotlib.pyplot as plt

    df = load_run_logs(run_dir)
    probe = pd.DataFrame(runs.read_rows(Path(run_dir) / runs.PROBE))
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.6))

    def curve(ax, column, label, colour):
        if column in df and df[column].notna().any():
            ax.plot(df["step"], df[column], alpha=0.25, color=colour)
            ax.plot(df["step"], df[column].rolling(window, min_periods=1).mean(), color=colour, label=label)

    curve(axes[0], "reward", "total (weighted)", "black")
    logged = runs.read_rows(Path(run_dir) / runs.LOG)[:1]
    rewards = [
        key.removeprefix("rewards/").removesuffix("/mean")
        for key in (logged[0] if logged else {})
        if key.startswith("rewards/") and key.endswith("/mean") and "/batch_correct_" not in key
    ]
    for i, column in enumerate(rewards):
        curve(axes[0], column, column, f"C{i}")
    curve(axes[1], "completion_length", "mean completion tokens", "tab:blue")
    for i, grader in enumerate(GRADERS):
        curve(axes[2], f"correct_frac_{grader}", f"{grader} grader", f"C{i}")
    for grader, style in zip(GRADERS, ("s--", "o-")):
        if not probe.empty:
            axes[3].plot(probe["step"], probe[f"accuracy_{grader}"], style, label=f"{grader} grader")
    n = int(probe["n"].iloc[0]) if not probe.empty else 0
    titles = ["reward (rolling mean)", "completion tokens", "training-batch accuracy", f"held-out probe (n={n})"]
    for ax, panel_title in zip(axes, titles):
        ax.set(title=panel_title, xlabel="step")
        if ax.has_data():
            ax.legend(fontsize=7)
    axes[2].set_ylim(-0.02, 1.02)
    axes[3].set_ylim(-0.02, 1.02)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
