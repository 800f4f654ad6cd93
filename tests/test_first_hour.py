"""Notebook 02 run as a Colab or Kaggle user runs it, under papermill with stand-ins for Colab's and Kaggle's modules:
Run all after a restart with the kit already cloned, a secret that is missing or present, a push set up wrong, and a
session whose time budget ends mid-training; then every file the run wrote is searched for the token."""

import json
import os
import shutil

import nbformat
import papermill
import pytest
from test_session import MARKER, STANDINS, on

from utils import REPO_ROOT, runs
from utils.experiments import make_config

FAST = dict(SMOKE=True, SAMPLED_EVAL_LIMIT=0, HARNESS_EVAL_LIMIT=0, OVERRIDES={"live_every": 0, "probe_every": 0})


@pytest.fixture
def colab(tmp_path, monkeypatch):
    """A fresh Colab machine after Runtime > Restart session: /content with the kit cloned earlier in ``kit/``, a git
    that would refuse to clone again, Colab's modules (stand-ins), and the user's secrets."""
    content = tmp_path / "content"
    content.mkdir()
    (content / "kit").symlink_to(REPO_ROOT)
    standins = tmp_path / "standins"
    shutil.copytree(STANDINS, standins)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    git = bin_dir / "git"
    refuse = "fatal: destination path 'kit' already exists and is not an empty directory."
    git.write_text(f"#!/bin/sh\n[ \"$1\" = clone ] || exec {shutil.which('git')} \"$@\"\n"
                   f"echo $@ >> {tmp_path}/git-clone\necho \"{refuse}\" >&2\nexit 128\n")  # fmt: skip
    git.chmod(0o755)
    on(monkeypatch, "colab")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(standins))
    return tmp_path


def run_notebook(where, **parameters):
    """Notebook 02 executed from ``where/content``; returns (executed notebook, error or None)."""
    out = where / f"executed-{len(list(where.glob('executed-*')))}.ipynb"
    error = None
    try:
        papermill.execute_notebook(
            str(REPO_ROOT / "notebooks" / "02_exp2_oneshot.ipynb"), str(out), parameters=parameters,
            cwd=str(where / "content"), kernel_name="python3", progress_bar=False,
        )  # fmt: skip
    except papermill.PapermillExecutionError as raised:
        error = raised
    return nbformat.read(out, as_version=4), error


def printed(notebook) -> str:
    return "\n".join(o.get("text", "") + str(o.get("data", {})) + o.get("evalue", "")
                     for c in notebook.cells for o in c.get("outputs", []))  # fmt: skip


def cell_with(notebook, text):
    return next(c for c in notebook.cells if c.cell_type == "code" and text in c.source)


@pytest.mark.slow
@pytest.mark.fault
def test_run_all_twice_on_colab_stops_on_the_budget_evaluates_and_resumes_without_writing_the_token(colab):
    (colab / "standins" / "secrets.json").write_text(json.dumps({"colab": {"HF_TOKEN": MARKER}}))
    run_root = colab / "drive-runs"
    first, error = run_notebook(colab, **FAST, RUN_ROOT=str(run_root), TIME_BUDGET=0.0001)
    assert error is None, error
    assert not (colab / "git-clone").exists()  # the kit was found in kit/: no clone attempted
    shown = printed(first)
    assert "HF_TOKEN: read from Colab's secrets" in shown
    assert "stopping at step 1 of 4 with a checkpoint" in shown
    status = "".join(o.get("text", "") for o in cell_with(first, "training_status").outputs)
    assert "Stopped on the time budget at step 1 of 4" in status and "Run all again" in status
    cfg = make_config("exp2_oneshot", smoke=True, run_root=str(run_root), **FAST["OVERRIDES"])
    assert runs.budget_stop(cfg.run_dir)["step"] == 1 and (cfg.run_dir / runs.EVAL_SUMMARY).is_file()

    second, error = run_notebook(colab, **FAST, RUN_ROOT=str(run_root), TIME_BUDGET=None)  # Run all again
    assert error is None, error
    assert "Resuming from" in printed(second) and "checkpoint-1" in printed(second)
    assert runs.training_status(cfg.run_dir).startswith("Finished: 4 of 4 steps")
    assert [row["step"] for row in runs.read_rows(cfg.run_dir / runs.LOG)] == [1, 2, 3, 4]

    written = [p for p in colab.rglob("*") if p.is_file() and "standins" not in p.parts]
    assert len(written) > 20  # the executed notebooks, config, environment, logs, evaluations, checkpoints
    assert not [p for p in written if MARKER.encode() in p.read_bytes()]


@pytest.mark.slow
@pytest.mark.bad_input
def test_a_push_without_a_token_on_kaggle_stops_in_the_config_cell_before_any_model(colab, monkeypatch):
    on(monkeypatch, "kaggle")
    first, error = run_notebook(colab, **FAST, RUN_ROOT=str(colab / "runs"), HUB_REPO_ID="you/qwen-grpo")
    assert error is not None and "HF_TOKEN was not found: add it in Kaggle's Add-ons > Secrets" in error.evalue
    assert "HF_TOKEN: not found. HUB_REPO_ID='you/qwen-grpo' needs it" in printed(first)
    assert "Loaded:" not in printed(first) and not list((colab / "runs").iterdir())  # probed for writing, then empty
    second, error = run_notebook(colab, **FAST, RUN_ROOT=str(colab / "runs"), HUB_REPO_ID="qwen grpo")
    assert error is not None and "use 'namespace/name'" in error.evalue
    connect = cell_with(second, "connect(")
    assert any(o.get("output_type") == "error" for o in connect.outputs)  # the first cell after the parameters


@pytest.mark.slow
def test_cell_one_clones_when_the_kit_is_absent_and_shows_gits_reason(colab):
    (colab / "content" / "kit").unlink()
    executed, error = run_notebook(colab, **FAST)
    assert error is not None and (colab / "git-clone").exists()
    assert "git says: fatal: destination path 'kit' already exists" in error.evalue
