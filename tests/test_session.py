"""The first hour on Colab and Kaggle: secrets read from where the user keeps them and never written, the push checked
before any model loads, the install's one line and its restart, and a session's time budget."""

import json
import shutil
import sys

import pytest

from utils import REPO_ROOT, runs
from utils.experiments import make_config
from utils.preflight import check_push
from utils.session import connect, find_secret, load_secret, time_budget

STANDINS = REPO_ROOT / "tests" / "standins"
MARKER = "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0123"


def on(monkeypatch, where: str) -> None:
    """Make the kit believe it runs on ``where`` (colab, kaggle or local)."""
    for variable in ("COLAB_RELEASE_TAG", "COLAB_GPU", "KAGGLE_KERNEL_RUN_TYPE", "HF_TOKEN", "WANDB_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    if where == "colab":
        monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-test")
    elif where == "kaggle":
        monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")


@pytest.fixture
def standins(tmp_path, monkeypatch):
    """Colab's and Kaggle's modules as stand-ins, importable here and in kernels started from here; returns the
    folder, where ``secrets.json`` holds each runtime's secrets."""
    folder = tmp_path / "standins"
    shutil.copytree(STANDINS, folder)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", f"{folder}:{REPO_ROOT}")
    for name in [m for m in sys.modules if m.startswith(("google.colab", "kaggle_secrets"))]:
        monkeypatch.delitem(sys.modules, name)
    return folder


def secrets(folder, **by_runtime) -> None:
    (folder / "secrets.json").write_text(json.dumps(by_runtime))


@pytest.mark.parametrize("where, source", [("colab", "Colab's secrets"), ("kaggle", "Kaggle's secrets")])
def test_a_secret_is_read_from_the_runtimes_secrets_and_its_value_never_printed(
    standins, monkeypatch, capsys, where, source
):
    on(monkeypatch, where)
    secrets(standins, **{where: {"HF_TOKEN": MARKER}})
    assert load_secret("HF_TOKEN") == source
    out = capsys.readouterr().out
    assert f"HF_TOKEN: read from {source}" in out and MARKER not in out
    import os

    assert os.environ["HF_TOKEN"] == MARKER  # where huggingface_hub reads it, in this process only


@pytest.mark.parametrize("where, how", [
    ("colab", "Colab's Secrets (the key icon in the left sidebar)"),
    ("kaggle", "Kaggle's Add-ons > Secrets"),
    ("local", "export HF_TOKEN="),
])  # fmt: skip
def test_a_missing_secret_says_how_to_add_one(standins, monkeypatch, capsys, where, how):
    on(monkeypatch, where)
    secrets(standins)
    assert load_secret("HF_TOKEN", "HUB_REPO_ID='you/model'") is None
    out = capsys.readouterr().out
    assert "HF_TOKEN: not found. HUB_REPO_ID='you/model' needs it:" in out and how in out


def test_the_environment_is_the_last_place_looked(standins, monkeypatch):
    on(monkeypatch, "colab")
    secrets(standins, colab={"HF_TOKEN": MARKER})
    monkeypatch.setenv("HF_TOKEN", "hf_fromtheenvironment0000000000")
    assert find_secret("HF_TOKEN") == (MARKER, "Colab's secrets")
    secrets(standins)
    assert find_secret("HF_TOKEN") == ("hf_fromtheenvironment0000000000", "the environment")


@pytest.mark.bad_input
@pytest.mark.parametrize("overrides", [
    {"trl_args": {"hub_token": MARKER}},
    {"trl_args": {"model_init_kwargs": {"token": MARKER}}},
    {"trl_args": {"hub_model_id": "you/model", "push_to_hub_token": MARKER}},
    {"extra": {"note": MARKER}},  # a value shaped like a Hugging Face token, under any name
    {"extra": {"wandb_api_key": "0123456789abcdef0123456789abcdef01234567"}},
])  # fmt: skip
def test_a_secret_in_the_settings_is_refused_without_repeating_it(tmp_path, overrides):
    with pytest.raises(ValueError, match=r"holds a secret, .* HF_TOKEN and WANDB_API_KEY from Colab's") as error:
        make_config("exp2_oneshot", smoke=True, run_root=str(tmp_path), overrides=overrides)
    assert MARKER not in str(error.value) and "0123456789abcdef" not in str(error.value)
    assert not list(tmp_path.iterdir())  # nothing written


def test_settings_named_like_tokens_but_not_secrets_pass():
    cfg = make_config("exp2_oneshot", eval_max_new_tokens=100, trl_args={"mask_truncated_completions": True})
    assert cfg.eval_max_new_tokens == 100


@pytest.mark.bad_input
def test_the_push_is_checked_before_any_model(monkeypatch, capsys):
    on(monkeypatch, "colab")
    with pytest.raises(ValueError, match=r"HUB_REPO_ID='my model': use 'namespace/name'"):
        check_push("my model")
    with pytest.raises(ValueError, match=r"HF_TOKEN was not found: add it in Colab's Secrets"):
        check_push("you/model")
    monkeypatch.setenv("HF_TOKEN", MARKER)
    monkeypatch.setattr("utils.preflight.hub_reachable", lambda: False)
    check_push("you/model")  # offline: said, not refused
    assert "write access to you/model is not checked" in capsys.readouterr().out
    monkeypatch.setattr("utils.preflight.hub_reachable", lambda: True)
    import huggingface_hub

    who = {"name": "you", "orgs": [{"name": "lab"}], "auth": {"accessToken": {"role": "write"}}}
    monkeypatch.setattr(huggingface_hub.HfApi, "whoami", lambda self, token=None: who)
    check_push("lab/model")
    with pytest.raises(ValueError, match=r"HF_TOKEN belongs to 'you', who cannot write to 'someone'"):
        check_push("someone/model")
    who["auth"]["accessToken"]["role"] = "read"
    with pytest.raises(ValueError, match=r"HF_TOKEN is a read token"):
        check_push("you/model")

    def refused(self, token=None):
        raise OSError(f"401 Unauthorized for {token}")

    monkeypatch.setattr(huggingface_hub.HfApi, "whoami", refused)
    with pytest.raises(ValueError, match=r"the hub refused HF_TOKEN \(OSError\)") as error:
        check_push("you/model")
    assert MARKER not in str(error.value)


def test_the_time_budget_counts_from_the_vm_on_colab_and_is_off_elsewhere(monkeypatch):
    import time

    on(monkeypatch, "local")
    assert time_budget("auto") is None and time_budget(None) is None
    assert time_budget(2).hours == 2 and time_budget(2).counted_from == "this notebook's first cell"
    on(monkeypatch, "colab")
    budget = time_budget("auto")
    uptime = float(open("/proc/uptime").read().split()[0])
    assert budget.hours == 12 and budget.counted_from == "the VM's start (its uptime)"
    assert abs(budget.started - (time.time() - uptime)) < 5
    for bad in (0, -1, "12", True):
        with pytest.raises(ValueError, match=r"TIME_BUDGET=.*: use a number of hours > 0, 'auto'"):
            time_budget(bad)


@pytest.mark.bad_input
def test_connect_refuses_a_malformed_push_target_before_anything_else(standins, monkeypatch):
    on(monkeypatch, "colab")
    with pytest.raises(ValueError, match="HUB_REPO_ID='not a repo'"):
        connect(hub_repo_id="not a repo", smoke=True)
    assert not (standins / "mounts.txt").exists()  # nothing asked of the user before the refusal


def test_connect_mounts_drive_and_reads_wandb_only_when_reporting_there(standins, monkeypatch, capsys):
    on(monkeypatch, "colab")
    secrets(standins, colab={"WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567"})
    session = connect(overrides={"report_to": "wandb"}, hours=3)
    assert session.run_root == "/content/drive/MyDrive/grpo-math-kit/runs"
    assert (standins / "mounts.txt").read_text() == "/content/drive\n"
    out = capsys.readouterr().out
    assert "WANDB_API_KEY: read from Colab's secrets" in out and "time budget: 3 h counted from the VM's start" in out
    connect(overrides={}, hours=None, keep_runs_on_drive=False)
    assert "WANDB_API_KEY" not in capsys.readouterr().out


def test_the_install_prints_one_line_and_stops_when_it_replaced_an_imported_package(monkeypatch, capsys):
    from utils import runtime

    versions = iter([{"numpy": "1.0", "tokenizers": "0.22.2"}, {"numpy": "2.0", "tokenizers": "0.23.3", "new": "1"}])
    monkeypatch.setattr(runtime, "distribution_versions", lambda: next(versions))
    with pytest.raises(RuntimeError, match=r"replaced numpy(, tokenizers)?, which this session had already imported\. "
                                           r"Runtime > Restart session, then Run all: the rerun skips the install"):
        runtime.install_requirements("colab", command=[sys.executable, "-c", "pass"])
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "installed 1 packages and replaced 2 in" in out and "numpy 1.0 -> 2.0" in out
    versions = iter([{"kit-never-imported": "1.0"}, {"kit-never-imported": "2.0"}])  # nothing to restart for
    changes = runtime.install_requirements("colab", command=[sys.executable, "-c", "pass"])
    assert changes == {"kit-never-imported": ("1.0", "2.0")}


def test_a_failed_install_shows_pips_reason(monkeypatch):
    from utils import runtime

    failing = [sys.executable, "-c", "import sys; sys.stderr.write('No matching distribution found for unsloth'); "
               "sys.exit(1)"]  # fmt: skip
    with pytest.raises(RuntimeError, match="No matching distribution found for unsloth"):
        runtime.install_requirements("kaggle", command=failing)


@pytest.mark.slow
@pytest.mark.fault
def test_a_run_stopped_on_the_time_budget_keeps_a_checkpoint_is_evaluated_and_resumes(tmp_path, capsys):
    from utils.model import load_tokenizer
    from utils.rewards import build_rewards
    from utils.session import TimeBudget
    from utils.train import train_and_evaluate

    cfg = make_config("exp2_oneshot", smoke=True, run_root=str(tmp_path), probe_every=0, live_every=0,
                      sampled_eval_limit=0, harness_eval_limit=0, ood_eval_limit=0)  # fmt: skip
    rewards = build_rewards(cfg.reward_set, load_tokenizer(cfg.model_name))
    spent = TimeBudget(hours=0.001, started=0.0, counted_from="the VM's start (its uptime)")  # long past its end
    run_dir = train_and_evaluate(cfg, rewards, budget=spent)
    stop = runs.budget_stop(run_dir)
    assert stop["step"] == 1 and stop["max_steps"] == cfg.max_steps
    assert runs.last_complete_checkpoint(run_dir / runs.CHECKPOINTS).name == "checkpoint-1"
    assert (run_dir / runs.EVAL_SUMMARY).is_file()  # the evaluation ran on the stopped model
    assert "Stopped on the time budget at step 1 of 4" in runs.training_status(run_dir)
    assert "stopping at step 1 of 4 with a checkpoint" in capsys.readouterr().out
    first_eval = runs.read_json(run_dir / runs.EVAL_SUMMARY)["identity"]["adapter"]
    train_and_evaluate(cfg, rewards)  # Run all again: resumes and goes on to the end
    assert runs.budget_stop(run_dir) is None
    assert [row["step"] for row in runs.read_rows(run_dir / runs.LOG)] == [1, 2, 3, 4]
    assert runs.training_status(run_dir).startswith("Finished: 4 of 4 steps")
    assert runs.read_json(run_dir / runs.EVAL_SUMMARY)["identity"]["adapter"] != first_eval  # evaluated again


def test_modules_a_notebook_imports_before_the_install_need_nothing_installed():
    import subprocess

    code = "import sys, utils.session; print(sorted({'torch', 'transformers', 'pandas'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

