"""Run folders: the names of the files a run writes, JSONL reading and writing, and provenance.

``runs/<name>/`` holds ``config.json`` (everything needed to rerun), ``environment.json`` (packages, GPU, git commit,
backend), ``rewards.json`` (name, weight and source of each reward), ``log.jsonl`` (one row per optimizer step),
``probe.jsonl`` (held-out accuracy during training), ``completions.jsonl`` (a few sampled completions per step),
``checkpoints/``, and at the end ``adapter/`` (LoRA) or ``model/`` (full fine-tuning) and the evaluation files.
"""

import json
import platform
import subprocess
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


def read_jsonl(path, required_fields: tuple = (), check=None) -> list[dict]:
    """Rows of a JSONL file; a bad line raises an error naming the file and line. ``check(row)`` may return what is
    wrong with a row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    rows = []
    with path.open(encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {line_number}: not valid JSON ({e}).") from None
            if not isinstance(row, dict) or not all(isinstance(row.get(field), str) for field in required_fields):
                raise ValueError(
                    f"{path}, line {line_number}: expected the fields {list(required_fields)} as strings."
                )
            problem = check(row) if check else None
            if problem:
                raise ValueError(f"{path}, line {line_number}: {problem}.")
            rows.append(row)
    return rows


def read_rows(path) -> list[dict]:
    """Rows a run wrote (log, probe, completions, evaluation); none when the file does not exist yet."""
    return read_jsonl(path) if Path(path).is_file() else []


def append_row(path, row: dict) -> None:
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def write_rows(path, rows) -> None:
    Path(path).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def truncate_rows(path, last_step: int) -> None:
    """Drop rows logged after the checkpoint a run resumes from, so each step appears once."""
    if Path(path).is_file():
        write_rows(path, [row for row in read_rows(path) if (row.get("step") or 0) <= last_step])


def write_json(path, value) -> None:
    Path(path).write_text(json.dumps(value, indent=2, default=str), encoding="utf-8")


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


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
