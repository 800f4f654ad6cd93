"""Run folders: the names of the files a run writes, JSONL reading and writing, and provenance.

``runs/<name>/`` holds ``config.json`` (everything needed to rerun), ``environment.json`` (packages, GPU, git commit,
backend), ``rewards.json`` (name, weight and source of each reward), ``log.jsonl`` (one row per optimizer step),
``probe.jsonl`` (held-out accuracy during training), ``completions.jsonl`` (a few sampled completions per step),
``checkpoints/`` (``last_complete_checkpoint`` is where a rerun resumes), and at the end ``adapter/`` (LoRA) or
``model/`` (full fine-tuning) and the evaluation files. Rewrites are atomic, and ``TrainingLock`` keeps one trainer
per run folder.
"""

import json
import os
import platform
import socket
import subprocess
import threading
import time
from importlib import metadata
from pathlib import Path

from utils import REPO_ROOT

CONFIG = "config.json"
ENVIRONMENT = "environment.json"
REWARDS = "rewards.json"
LOG = "log.jsonl"
PROBE = "probe.jsonl"
COMPLETIONS = "completions.jsonl"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
FULL_MODEL = "model"
MERGED = "merged"  # the LoRA merged into a 16-bit model, on request
EVAL = "eval.jsonl"  # GSM8K test; the other evaluation sets: eval_<set>.jsonl (see eval_files)
EVAL_SUMMARY = "eval_summary.json"
BENCH = "bench.json"
BUDGET_STOP = "stopped_on_budget.json"  # training stopped at a checkpoint when the session's time ran short

PACKAGES = [
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "accelerate",
    "unsloth",
    "unsloth_zoo",
    "vllm",
    "bitsandbytes",
    "xformers",
]


def eval_files(eval_set: str = "gsm8k") -> tuple[str, str]:
    """The per-question records and the summary of one evaluation set."""
    if eval_set == "gsm8k":
        return EVAL, EVAL_SUMMARY
    return f"eval_{eval_set}.jsonl", f"eval_{eval_set}_summary.json"


def sampled_files(eval_set: str = "gsm8k") -> tuple[str, str]:
    """The per-sample records and the summary of one set's sampled evaluation (``utils.sampled``)."""
    suffix = "" if eval_set == "gsm8k" else f"_{eval_set}"
    return f"sampled{suffix}.jsonl", f"sampled{suffix}_summary.json"


# What a checkpoint must hold to be resumed from; a save cut short by a disconnect lacks some of it.
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
CHECKPOINT_WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")


def evaluation_seconds(folder) -> float:
    """How long the evaluations saved in a folder took (greedy on every set, sampled, harness), from their summaries:
    what a trained model's evaluation will take again."""
    paths = [*Path(folder).glob("*summary.json"), Path(folder) / "harness.json"]
    return float(sum(read_json(p).get("seconds", 0) for p in paths if p.is_file()))


def budget_stop(run_dir) -> dict | None:
    """The record of a run that stopped on the session's time budget, or None."""
    path = Path(run_dir) / BUDGET_STOP
    return read_json(path) if path.is_file() else None


def steps_trained(run_dir) -> str:
    """How far a run trained, for tables: ``40 of 40 steps``, with the budget stop when there was one."""
    last = last_complete_checkpoint(Path(run_dir) / CHECKPOINTS, report=False)
    if last is None:
        return "no checkpoint"
    state = read_json(last / "trainer_state.json")
    stopped = " (stopped on the time budget)" if budget_stop(run_dir) is not None else ""
    return f"{state['global_step']} of {state['max_steps']} steps{stopped}"


def training_status(run_dir) -> str:
    """How far a run got, in a sentence for the notebook's last cell."""
    stop = budget_stop(run_dir)
    if stop is not None:
        return (f"Stopped on the time budget at step {stop['step']} of {stop['max_steps']} "
                f"({stop['seconds_per_step']:.0f} s a step), at a saved checkpoint; the evaluation above is of that "
                f"checkpoint. Run all again, in this session or a new one, to resume from step {stop['step']}.")
    last = last_complete_checkpoint(Path(run_dir) / CHECKPOINTS, report=False)
    if last is None:
        return f"{run_dir} has no checkpoint yet."
    state = read_json(last / "trainer_state.json")
    return f"Finished: {state['global_step']} of {state['max_steps']} steps trained, in {run_dir}."


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[-1])


def last_complete_checkpoint(checkpoints: Path, report: bool = True) -> Path | None:
    """The newest checkpoint with every file a resume needs; a save cut short by a disconnect is skipped, loudly."""
    if not checkpoints.is_dir():
        return None
    candidates = [p for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    for checkpoint in sorted(candidates, key=checkpoint_step, reverse=True):
        missing = [f for f in CHECKPOINT_FILES if not (checkpoint / f).is_file()]
        if not any((checkpoint / f).is_file() for f in CHECKPOINT_WEIGHTS):
            missing.append("model weights")
        if not missing:
            return checkpoint
        if report:
            print(f"Skipping {checkpoint.name}: incomplete (missing {', '.join(missing)}), probably a save cut short.")
    return None


def finished(checkpoint: Path) -> bool:
    """Whether a checkpoint is the last step of its run."""
    state = read_json(checkpoint / "trainer_state.json")
    return state["global_step"] >= state["max_steps"]


def _text_lines(path: Path) -> list[str]:
    """The file's lines as UTF-8 text; a compressed or otherwise encoded file is an error naming the file and line."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        raise ValueError(f"{path} is gzip-compressed, not JSON lines: decompress it first (gunzip, or gzip.open).")
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"{path}, line {line}: not UTF-8 text (byte {data[error.start]:#04x}); save the file as UTF-8."
        ) from None


def _parse_line(path: Path, number: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}, line {number}: not valid JSON ({e}).") from None
    if not isinstance(row, dict):
        raise ValueError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}.")
    return row


def read_jsonl(path, required_fields: tuple = (), check=None) -> list[dict]:
    """Rows of a JSONL file; a bad line raises an error naming the file and line. ``check(row)`` may return what is
    wrong with a row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    rows = []
    for number, line in enumerate(_text_lines(path), start=1):
        if not line.strip():
            continue
        row = _parse_line(path, number, line)
        if not all(isinstance(row.get(field), str) for field in required_fields):
            raise ValueError(f"{path}, line {number}: expected the fields {list(required_fields)} as strings.")
        problem = check(row) if check else None
        if problem:
            raise ValueError(f"{path}, line {number}: {problem}.")
        rows.append(row)
    return rows


def read_rows(path, report_cut_line: bool = False) -> list[dict]:
    """Rows a run wrote (log, probe, completions, evaluation); none when the file does not exist yet. A last line cut
    short by a crash mid-append is left out (and reported when ``report_cut_line``); any other bad line is an error
    naming the file and line."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = [(number, line) for number, line in enumerate(_text_lines(path), start=1) if line.strip()]
    if lines:
        try:
            json.loads(lines[-1][1])
        except json.JSONDecodeError:
            lines.pop()
            if report_cut_line:
                print(f"{path}: dropped its last line, cut short by a crash (1 row dropped, {len(lines)} kept).")
    return [_parse_line(path, number, line) for number, line in lines]


def append_row(path, row: dict) -> None:
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def _write_atomically(path, text: str) -> None:
    """Write beside, then rename: a full disk or a crash mid-write leaves the old file whole, never a cut one."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_rows(path, rows) -> None:
    _write_atomically(path, "".join(json.dumps(row) + "\n" for row in rows))


def truncate_rows(path, last_step: int) -> None:
    """Drop rows logged after the checkpoint a run resumes from, so each step appears once."""
    if Path(path).is_file():
        rows = read_rows(path, report_cut_line=True)
        write_rows(path, [row for row in rows if (row.get("step") or 0) <= last_step])


def write_json(path, value) -> None:
    _write_atomically(path, json.dumps(value, indent=2, default=str))


def read_json(path):
    """A JSON file of a run folder; an empty or corrupt one is an error naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is {'empty' if not path.read_text(encoding='utf-8').strip() else 'not valid JSON'} ({error}). "
            "It was probably cut short by a crash or edited by hand: restore it from a copy, or start a new run "
            "(another RUN_ROOT, or delete the run folder)."
        ) from None


LOCK = ".training.lock"
HEARTBEAT_SECONDS = 60  # the lock's holder refreshes it this often while it trains
LOCK_STALE_SECONDS = 5 * 60  # a lock not refreshed for this long was left by a session that is gone


class RunLocked(RuntimeError):
    """Another process is training into this run folder."""


class TrainingLock:
    """One trainer per run folder: a lock file created exclusively, refreshed every minute by a background thread
    while training runs, removed at the end. A lock left by a crash is taken over when its process is gone (same
    machine) or it has not been refreshed for ``LOCK_STALE_SECONDS`` (another machine, e.g. a Colab session that
    disconnected with its run on Drive)."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / LOCK
        self._stop = threading.Event()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(descriptor, "w") as f:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%c")}, f)
            threading.Thread(target=self._heartbeat, daemon=True).start()
            return

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:
                return

    def _take_over_if_stale(self) -> None:
        try:
            text, age = self.path.read_text(), time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return  # released meanwhile
        try:
            holder = json.loads(text)
        except json.JSONDecodeError:
            holder = {}  # cut short while being written
        here = holder.get("host") == socket.gethostname()
        gone = here and isinstance(holder.get("pid"), int) and not _process_alive(holder["pid"])
        if gone or age > LOCK_STALE_SECONDS:
            why = "its process is gone" if gone else f"not refreshed for {age / 60:.0f} min"
            print(f"Taking over {self.path}, left by a session that ended ({why}).")
            self.path.unlink(missing_ok=True)
            return
        raise RunLocked(
            f"{self.path.parent} is being trained by another process (pid {holder.get('pid')} on "
            f"{holder.get('host')}, since {holder.get('since')}; refreshed {age:.0f} s ago). Wait for it to finish, "
            f"or train elsewhere (another RUN_ROOT). If that session is gone (closed or disconnected), the lock is "
            f"taken over {LOCK_STALE_SECONDS // 60} min after its last refresh: run again then, or delete "
            f"{self.path} now."
        )

    def release(self) -> None:
        """Remove the lock, and the run folder too if the run never wrote anything into it."""
        self._stop.set()
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:
            pass


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _git(*args) -> str:
    done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    return done.stdout.strip()


def environment_info(backend: dict | None = None, seed: int | None = None) -> dict:
    """Provenance: package versions, hardware, git commit, chosen backend."""
    import torch

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit, dirty = _git("rev-parse", "HEAD") or None, bool(_git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cuda": torch.version.cuda,
        "packages": versions,
        "git_commit": commit,
        "git_dirty": dirty,
        "seed": seed,
        "backend": backend,
    }
