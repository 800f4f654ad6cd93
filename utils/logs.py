"""Per-step training logs of any run, read into one shape.

``load_run_logs`` reads a TensorBoard event file or folder or a TRL ``trainer_state.json`` (the study's TRL 0.14 logs),
this kit's run folder (``log.jsonl``), or the committed study curves (``utils/assets/study_logs.csv``) into a row per
step with ``step``, ``completion_length`` (mean completion tokens: reasoning, tags and answer), ``accuracy`` (share of
correct completions in that step's training batch) and one column per reward function.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from utils import runs

# In the study's TRL 0.14 logs the correctness rewards paid 2.0 (correctness_reward_func) or 1.0 (accuracy_func) per
# correct completion: their logged mean divided by this is the batch accuracy. The kit logs it directly.
STUDY_CORRECTNESS_VALUES = {"correctness_reward_func": 2.0, "accuracy_func": 1.0}


def _add_accuracy(df: pd.DataFrame) -> pd.DataFrame:
    """Share of correct completions per step: the kit's batch grader, or the study's correctness reward rescaled."""
    if "correct_frac_strict" in df:
        df["accuracy"] = df["correct_frac_strict"]
        return df
    for name, value in STUDY_CORRECTNESS_VALUES.items():
        if name in df:
            df["accuracy"] = df[name] / value
            return df
    df["accuracy"] = np.nan
    return df


def tidy_logs(df: pd.DataFrame) -> pd.DataFrame:
    df = df.rename(columns=lambda c: c.removeprefix("train/").removeprefix("rewards/").removesuffix("/mean"))
    if "completion_length" not in df and "completions/mean_length" in df:
        df["completion_length"] = df["completions/mean_length"]
    df = df.drop(
        columns=[c for c in df.columns if c.endswith("/std") or c.startswith(("completions/", "clip_ratio/"))]
    )
    df = _add_accuracy(df.dropna(subset=["step"]))
    df["step"] = df["step"].astype(int)
    return df.drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)


def _read_tensorboard(path: Path) -> pd.DataFrame:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"scalars": 0})
    events.Reload()
    series = {tag: pd.Series({e.step: e.value for e in events.Scalars(tag)}) for tag in events.Tags()["scalars"]}
    return pd.DataFrame(series).rename_axis("step").reset_index()


def load_run_logs(path) -> pd.DataFrame:
    """Per-step logs of one run from any of the supported sources (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        if (path / runs.LOG).exists():
            return load_run_logs(path / runs.LOG)
        events = sorted(path.glob("events.out.tfevents*"))
        if events:
            return load_run_logs(events[-1])
        if (path / "trainer_state.json").exists():
            return load_run_logs(path / "trainer_state.json")
        raise FileNotFoundError(f"{path} has no {runs.LOG}, TensorBoard event file or trainer_state.json.")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.name.startswith("events.out.tfevents"):
        return tidy_logs(_read_tensorboard(path))
    if path.suffix == ".jsonl":
        return tidy_logs(pd.DataFrame(runs.read_rows(path)))
    if path.suffix == ".json":
        history = json.loads(path.read_text()).get("log_history", [])
        return tidy_logs(pd.DataFrame([row for row in history if "step" in row and "train_runtime" not in row]))
    if path.suffix == ".csv":
        return tidy_logs(pd.read_csv(path))
    raise ValueError(
        f"Cannot read run logs from {path}: expected a run folder, event file, trainer_state.json, .jsonl or .csv."
    )
