"""The command line, on one process and on two under torchrun (gloo on CPU): the same run as the notebook's."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from utils import REPO_ROOT, runs
from utils.train import parse_overrides


@pytest.mark.bad_input
def test_set_reaches_any_config_field_and_names_the_valid_ones():
    overrides = parse_overrides(["max_steps=200", "precision=fp16", 'trl_args={"epsilon": 0.3}', "eval_limit=null"])
    assert overrides == {"max_steps": 200, "precision": "fp16", "trl_args": {"epsilon": 0.3}, "eval_limit": None}
    with pytest.raises(SystemExit, match=r"unknown config field\(s\) \['max_step'\]; valid ones: .*max_steps"):
        parse_overrides(["max_step=3"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        parse_overrides(["max_steps"])


def command(run_root, *extra, processes=1):
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        if processes > 1
        else [sys.executable]
    )
    return [
        *launcher,
        "-m",
        "utils.train",
        "exp2_oneshot",
        "--smoke",
        "--set",
        f"run_root={run_root}",
        "--set",
        "live_every=0",
        *extra,
    ]


def run(cmd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.fault
@pytest.mark.slow
def test_two_processes_train_the_same_steps_once_and_resume(tmp_path):
    run(command(tmp_path / "one", "--no-eval"))
    single = runs.read_rows(tmp_path / "one" / "exp2_oneshot" / runs.LOG)

    out = run(command(tmp_path / "two", processes=2))
    run_dir = tmp_path / "two" / "exp2_oneshot"
    rows = runs.read_rows(run_dir / runs.LOG)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # every step exactly once
    # The same prompts and as many completions per step as one process (num_tokens counts all processes' tokens).
    assert [r["num_tokens"] for r in rows] == [r["num_tokens"] for r in single]
    batch = runs.read_json(run_dir / runs.ENVIRONMENT)["batch"]
    assert batch == {
        "world_size": 2,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "num_generations": 4,
    }
    assert [r["step"] for r in runs.read_rows(run_dir / runs.PROBE)] == [2, 4]
    assert out.count("Trained (") == 1  # the main process reports; the other does not repeat it
    summary = runs.read_json(run_dir / runs.EVAL_SUMMARY)  # sharded over both processes, gathered, written once
    assert summary["n"] == 8 and [r["index"] for r in runs.read_rows(run_dir / runs.EVAL)] == list(range(8))
    assert json.loads((run_dir / runs.CONFIG).read_text())["name"] == "exp2_oneshot"

    shutil.rmtree(run_dir / runs.CHECKPOINTS / "checkpoint-4")  # as if the session ended after step 3
    again = run(command(tmp_path / "two", "--no-eval", processes=2))
    assert "Resuming from" in again and "checkpoint-2 (step 2)" in again
    assert [r["step"] for r in runs.read_rows(run_dir / runs.LOG)] == [1, 2, 3, 4]
    done = run(command(tmp_path / "two", "--no-eval", processes=2))  # a finished run is not trained further
    assert "finished training at step 4" in done
    assert [r["step"] for r in runs.read_rows(run_dir / runs.LOG)] == [1, 2, 3, 4]
