"""GSM8K loading: the hub by default, a local folder of GSM8K's own JSONL when asked or when the hub is down."""

import functools
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset

from utils import REPO_ROOT
from utils.grading import extract_hash_answer, parse_value
from utils.prompts import build_prompt
from utils.runs import read_jsonl

HUB_ID, HUB_CONFIG = "openai/gsm8k", "main"
# A few dozen real GSM8K rows shipped with the kit, for tests and smoke runs that must work offline.
SAMPLE_DATA_DIR = REPO_ROOT / "utils" / "assets" / "gsm8k_sample"
# Where notebook 00 saves a full copy, and where loading looks when the hub cannot be reached.
LOCAL_COPY_DIR = REPO_ROOT / "data" / "gsm8k"
SPLITS = ("train", "test")
GSM8K_FIELDS = ("question", "answer")


@functools.cache
def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """One quick check per session, so an offline machine falls back at once instead of after minutes of retries."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _gold_problem(row: dict) -> str | None:
    """What makes a GSM8K row's gold answer ungradable: none, empty, or not a number."""
    gold = extract_hash_answer(row["answer"])
    if gold is None:
        return "the solution has no '#### <answer>' line"
    if not gold:
        return "the answer after '####' is empty, so an empty answer would be graded correct"
    if parse_value(gold) is None:
        return f"the answer after '####' is {gold!r}, not a number"
    return None


def _from_rows(rows: list[dict]) -> Dataset:
    """GSM8K rows -> question, gold ``answer`` (the number after ``####``), full ``solution``."""
    return Dataset.from_dict(
        {
            "question": [r["question"] for r in rows],
            "answer": [extract_hash_answer(r["answer"]) for r in rows],
            "solution": [r["answer"] for r in rows],
        }
    )


def read_local_gsm8k(split: str, data_dir) -> list[dict]:
    """The rows of ``data_dir/<split>.jsonl``, each checked; errors name the file, the line and the fix."""
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"DATA_DIR (data_dir) {data_dir}: {path} does not exist. Point it at a folder with GSM8K's train.jsonl "
            "and test.jsonl, or set it to None to load GSM8K from the hub."
        )
    return read_jsonl(path, GSM8K_FIELDS, check=_gold_problem)


def check_data_dir(data_dir) -> None:
    """Read and check every line a run will read from ``data_dir``, before any model is loaded."""
    for split in SPLITS:
        if not read_local_gsm8k(split, data_dir):
            raise ValueError(f"{Path(data_dir) / f'{split}.jsonl'} has no questions: a run needs GSM8K rows there.")


def load_gsm8k(split: str, data_dir=None) -> Dataset:
    """GSM8K ``split`` with columns ``question``, ``answer`` (gold number as a string) and ``solution``.

    Source: ``data_dir`` or ``$GSM8K_DIR`` when given; else the hub (``openai/gsm8k``, ``main``); if the hub cannot be
    reached, the local copy notebook 00 saved in ``data/gsm8k/``, with a printed notice.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; GSM8K has {SPLITS}.")
    data_dir = data_dir or os.environ.get("GSM8K_DIR")
    if data_dir:
        return _from_rows(read_local_gsm8k(split, data_dir))
    try:
        if not hub_reachable():
            raise ConnectionError("the hub is unreachable")
        from datasets import load_dataset

        return _from_rows(list(load_dataset(HUB_ID, HUB_CONFIG, split=split)))
    except Exception as error:
        if (LOCAL_COPY_DIR / f"{split}.jsonl").is_file():
            print(f"Could not load {HUB_ID} from the hub ({error}); using the local copy in {LOCAL_COPY_DIR}.")
            return _from_rows(read_local_gsm8k(split, LOCAL_COPY_DIR))
        raise RuntimeError(
            f"Could not load {HUB_ID} from the hub ({error}) and found no local copy in {LOCAL_COPY_DIR}. Connect to "
            "the internet (on Kaggle: Settings > Internet on), or set DATA_DIR (data_dir, or $GSM8K_DIR) to a folder "
            "with GSM8K's train.jsonl and test.jsonl."
        ) from error


OOD_DATA_DIR = REPO_ROOT / "utils" / "assets" / "math_ood"
OOD_FIELDS = ("input", "target")


def _gold_string(target) -> str:
    """A numeric target as the answer a model would write: ``51.0`` -> ``"51"``."""
    return str(int(target)) if float(target).is_integer() else repr(float(target))


def _ood_row_problem(row: dict) -> str | None:
    if not isinstance(row.get("input"), str):
        return "expected the question as a string in 'input'"
    target = row.get("target")
    if isinstance(target, bool) or not isinstance(target, (int, float)):
        return f"expected the answer as a number in 'target', got {target!r}"
    return None


def load_ood(file_name: str) -> Dataset:
    """A bundled out-of-distribution set as ``question`` and ``answer`` (the gold number, written as a string)."""
    rows = read_jsonl(OOD_DATA_DIR / file_name, check=_ood_row_problem)
    return Dataset.from_dict(
        {"question": [r["input"] for r in rows], "answer": [_gold_string(r["target"]) for r in rows]}
    )


@dataclass(frozen=True)
class EvalSet:
    """A held-out evaluation set: how to load it, its size, and which grader is its headline number."""

    name: str
    description: str
    size: int
    load: Callable  # data_dir -> Dataset with "question" and "answer"
    headline_grader: str  # GSM8K: the study's strict grader is meaningful; the others: numeric golds, numeric grader


EVAL_SETS = {
    "gsm8k": EvalSet("gsm8k", "GSM8K test split", 1319, lambda d: load_gsm8k("test", d), "strict"),
    "svamp": EvalSet("svamp", "SVAMP: one-step, with variations", 1000, lambda d: load_ood("svamp.jsonl"), "numeric"),
    "asdiv": EvalSet(
        "asdiv", "ASDiv: diverse elementary problems", 2096, lambda d: load_ood("asdiv.jsonl"), "numeric"
    ),
    "mawps": EvalSet("mawps", "MAWPS MultiArith", 600, lambda d: load_ood("mawpsmultiarith.jsonl"), "numeric"),
}
OOD_SETS = [name for name in EVAL_SETS if name != "gsm8k"]


def eval_set(name: str) -> EvalSet:
    if name not in EVAL_SETS:
        raise KeyError(f"Unknown evaluation set {name!r}; choose one of {list(EVAL_SETS)}.")
    return EVAL_SETS[name]


def build_eval_dataset(name: str, one_shot: bool, data_dir=None, limit: int | None = None) -> Dataset:
    """The first ``limit`` questions of an evaluation set (all when None) with the chat ``prompt`` column."""
    return with_prompts(eval_set(name).load(data_dir), one_shot, limit)


def with_prompts(dataset: Dataset, one_shot: bool, limit: int | None = None) -> Dataset:
    """The first ``limit`` rows (all when None) with the chat ``prompt`` column the trainer and evaluation read."""
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return dataset.add_column("prompt", [build_prompt(question, one_shot) for question in dataset["question"]])


def prompt_token_count(tokenizer, messages: list[dict]) -> int:
    """Tokens the model sees for a chat prompt, generation prompt included."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def build_dataset(
    split: str,
    one_shot: bool,
    data_dir=None,
    limit: int | None = None,
    tokenizer=None,
    max_prompt_tokens: int | None = None,
) -> Dataset:
    """GSM8K with the chat ``prompt`` column GRPOTrainer reads.

    TRL 1.x no longer truncates prompts, so with a tokenizer and ``max_prompt_tokens`` the prompts longer than that
    are dropped (and counted) rather than cut, which would remove the system prompt.
    """
    dataset = with_prompts(load_gsm8k(split, data_dir), one_shot, limit)
    if tokenizer is not None and max_prompt_tokens:
        lengths = [prompt_token_count(tokenizer, p) for p in dataset["prompt"]]
        keep = [i for i, n in enumerate(lengths) if n <= max_prompt_tokens]
        if len(keep) < len(dataset):
            print(
                f"Dropped {len(dataset) - len(keep)} of {len(dataset)} {split} prompts longer than "
                f"{max_prompt_tokens} tokens."
            )
            dataset = dataset.select(keep)
    return dataset


def save_local_copy(splits: dict, out_dir=LOCAL_COPY_DIR) -> Path:
    """Write loaded splits as GSM8K's own JSONL, the place ``load_gsm8k`` looks when the hub is down."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, dataset in splits.items():
        with (out_dir / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for row in dataset:
                f.write(json.dumps({"question": row["question"], "answer": row["solution"]}) + "\n")
    print(f"Saved {', '.join(f'{s} ({len(d)})' for s, d in splits.items())} to {out_dir}.")
    return out_dir


def token_length_table(dataset: Dataset, tokenizer):
    """Tokens per row: the prompt without and with the one-shot example, and the reference solution."""
    import pandas as pd

    return pd.DataFrame(
        {
            "prompt_system_only": [prompt_token_count(tokenizer, build_prompt(q, False)) for q in dataset["question"]],
            "prompt_one_shot": [prompt_token_count(tokenizer, build_prompt(q, True)) for q in dataset["question"]],
            "solution": [
                len(ids) for ids in tokenizer(list(dataset["solution"]), add_special_tokens=False)["input_ids"]
            ],
        }
    )


def plot_token_lengths(lengths, prompt_limit: int = 256):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
    for column in ("prompt_system_only", "prompt_one_shot"):
        over = (lengths[column] > prompt_limit).sum()
        axes[0].hist(lengths[column], bins=50, alpha=0.6, label=f"{column} (over {prompt_limit}: {over})")
    axes[0].axvline(prompt_limit, color="red", ls="--")
    axes[0].set(title="prompt tokens", xlabel="tokens", ylabel="questions")
    axes[0].legend(fontsize=8)
    axes[1].hist(lengths["solution"], bins=50, color="tab:green")
    axes[1].set(title="reference solution tokens", xlabel="tokens")
    fig.tight_layout()
    return fig
