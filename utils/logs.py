"""Per-step training logs in one shape, the kit's runs (``log.jsonl``) and the study's (``assets/study_logs.csv``)
alike: a row per step with ``step``, ``completion_length`` (mean completion tokens: reasoning, tags and answer),
``accuracy`` (share of correct completions in that step's training batch) and one column per reward function.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from utils import runs

METRIC_LABELS = {
    "accuracy": "share of correct completions (training batch)",
    "completion_length": "completion tokens (reasoning, tags and answer)",
}
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
    """TRL's logged names (``train/rewards/<name>/mean``, ``completions/mean_length``) as plain columns, a row per
    step."""
    df = df.rename(columns=lambda c: c.removeprefix("train/").removeprefix("rewards/").removesuffix("/mean"))
    if "completion_length" not in df and "completions/mean_length" in df:
        df["completion_length"] = df["completions/mean_length"]
    df = df.drop(
        columns=[c for c in df.columns if c.endswith("/std") or c.startswith(("completions/", "clip_ratio/"))]
    )
    df = _add_accuracy(df.dropna(subset=["step"]))
    df["step"] = df["step"].astype(int)
    return df.drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)


def mean_over_seeds(logs_by_seed: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Step by step, the mean over seeds of every numeric column (steps that some seed has not reached yet use the
    seeds that have)."""
    return pd.concat(logs_by_seed.values()).groupby("step").mean(numeric_only=True).reset_index()


def load_run_logs(run_dir) -> pd.DataFrame:
    """Per-step logs of one of the kit's runs."""
    path = Path(run_dir) / runs.LOG
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {runs.LOG}: not a run folder, or a run that has not logged a step.")
    return tidy_logs(pd.DataFrame(runs.read_rows(path)))
