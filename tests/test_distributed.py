"""The command line, on one process and on two under torchrun (gloo on CPU): the same run as the notebook's."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from weights import weight_files

from utils import REPO_ROOT, runs
from utils.train import parse_overrides


@pytest.mark.bad_input
def test_set_reads_each_value_as_its_fields_type():
    overrides = parse_overrides(["max_steps=200", "precision=fp16", 'trl_args={"epsilon": 0.3}', "eval_limit=null"])
    assert overrides == {"max_steps": 200, "precision": "fp16", "trl_args": {"epsilon": 0.3}, "eval_limit": None}
    flags = parse_overrides(["one_shot=False", "gradient_checkpointing=false", "load_in_4bit=0", "learning_rate=1e-5"])
    assert flags == {"one_shot": False, "gradient_checkpointing": False, "load_in_4bit": False, "learning_rate": 1e-5}
    assert parse_overrides(["ood_eval_limit=null"]) == {"ood_eval_limit": None}  # None: every question
    assert parse_overrides(["data_dir=~/gsm8k"]) == {"data_dir": "~/gsm8k"}  # expanded when the config is made


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "pair, message",
    [
        ("max_step=3", r"unknown config field 'max_step' \(did you mean 'max_steps'\?\); see --help"),
        ("max_steps", "KEY=VALUE"),
        ("one_shot=maybe", r"--set one_shot=maybe: use True or False"),
        ("max_steps=ten", r"--set max_steps=ten: use a whole number"),
        ("max_steps=null", r"--set max_steps=null: use a whole number"),  # None is not allowed here
        ("trl_args=epsilon=0.3", r"--set trl_args=epsilon=0.3: use a dict \(a JSON object on the command line\)"),
    ],
)
def test_set_refuses_a_value_its_field_cannot_take(pair, message):
    with pytest.raises(SystemExit, match=message):
        parse_overrides([pair])


@pytest.mark.bad_input
def test_help_lists_every_config_field_with_its_default(capsys):
    from utils.train import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "one_shot (from the experiment): add the study's one-shot example" in out
    assert "learning_rate (default None): None: the study's 5e-6 for full fine-tuning, 10x that for LoRA" in out
    assert "ood_eval_limit (default 300)" in out


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


def run_folder(run_root, *settings):
    """Where ``command(run_root, *settings)`` trains: the run folder its config names."""
    from utils.experiments import make_config

    pairs = [settings[i + 1] for i, part in enumerate(settings) if part == "--set"]
    return make_config("exp2_oneshot", smoke=True, overrides=parse_overrides([f"run_root={run_root}", *pairs])).run_dir


def run(cmd, expect_success=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert (done.returncode == 0) == expect_success, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + (done.stderr if not expect_success else "")


@pytest.mark.fault
@pytest.mark.slow
def test_two_processes_train_the_same_steps_once_and_resume_to_the_same_weights(tmp_path):
    run(command(tmp_path / "one", "--no-eval"))
    single = runs.read_rows(run_folder(tmp_path / "one") / runs.LOG)

    out = run(command(tmp_path / "two", processes=2))
    run_dir = run_folder(tmp_path / "two")
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
        "completions_per_step": 8,
    }
    assert [r["step"] for r in runs.read_rows(run_dir / runs.PROBE)] == [2, 4]
    assert out.count("Trained (") == 1  # the main process reports; the other does not repeat it
    summary = runs.read_json(run_dir / runs.EVAL_SUMMARY)  # sharded over both processes, gathered, written once
    assert summary["n"] == 8 and [r["index"] for r in runs.read_rows(run_dir / runs.EVAL)] == list(range(8))
    assert json.loads((run_dir / runs.CONFIG).read_text())["name"] == "exp2_oneshot"
    uninterrupted = weight_files(run_dir / runs.ADAPTER)

    shutil.rmtree(run_dir / runs.CHECKPOINTS / "checkpoint-4")  # as if the session ended after step 3
    again = run(command(tmp_path / "two", "--no-eval", processes=2))
    assert "Resuming from" in again and "checkpoint-2 (step 2)" in again
    assert [r["step"] for r in runs.read_rows(run_dir / runs.LOG)] == [1, 2, 3, 4]
    assert weight_files(run_dir / runs.ADAPTER) == uninterrupted  # bit for bit, as on one process
    done = run(command(tmp_path / "two", "--no-eval", processes=2))  # a finished run is not trained further
    assert "finished training at step 4" in done
    assert [r["step"] for r in runs.read_rows(run_dir / runs.LOG)] == [1, 2, 3, 4]
    assert weight_files(run_dir / runs.ADAPTER) == uninterrupted


@pytest.mark.fault
@pytest.mark.slow
def test_full_fine_tuning_on_two_processes_resumes_to_the_same_weights(tmp_path):
    full = ("--no-eval", "--set", "lora_rank=0", "--set", "probe_every=0")
    run(command(tmp_path, *full, processes=2))
    run_dir = run_folder(tmp_path, *full)
    uninterrupted = weight_files(run_dir / runs.FULL_MODEL)
    shutil.rmtree(run_dir / runs.CHECKPOINTS / "checkpoint-4")
    assert "checkpoint-2 (step 2)" in run(command(tmp_path, *full, processes=2))
    assert weight_files(run_dir / runs.FULL_MODEL) == uninterrupted


@pytest.mark.fault
@pytest.mark.slow
def test_a_run_folder_in_use_stops_every_process_with_the_reason(tmp_path):
    """Both processes of a second torchrun stop with the message; neither waits forever at a barrier."""
    lock = runs.TrainingLock(run_folder(tmp_path))
    lock.acquire()  # a notebook training into the same folder, alive on this machine
    out = run(command(tmp_path, "--no-eval", processes=2), expect_success=False)
    assert out.count("is being trained by another process") >= 2 and "delete" in out
    assert lock.path.exists() and not (run_folder(tmp_path) / runs.CONFIG).exists()
    lock.release()


@pytest.mark.slow
def test_one_seed_per_device_trains_separate_runs_at_once_with_one_baseline(tmp_path):
    """Two CPU processes stand in for two GPUs. The model is saved to a folder, so both seeds start from the same
    untrained weights, as with Qwen: the baseline is evaluated once and reused."""
    from utils.experiments import baseline_dir, make_config
    from utils.model_cache import materialize_random_model

    model = materialize_random_model("tiny", tmp_path / "model")
    settings = ("--set", f"model_name={model}", "--set", "allow_cpu=true")
    settings += ("--set", "sampled_eval_limit=0", "--set", "harness_eval_limit=0")  # the launcher is the point
    out = run(command(tmp_path, *settings, "--seeds", "42", "43", "--devices", "cpu", "cpu"))
    assert "Evaluating the untrained baseline once" in out and out.count("done (exit 0)") == 2
    folders = {seed: run_folder(tmp_path, *settings, "--set", f"seed={seed}") for seed in (42, 43)}
    assert folders[42] != folders[43] and all(f.name.endswith(f"__seed{s}") for s, f in folders.items())
    for seed, folder in folders.items():
        assert runs.read_json(folder / runs.CONFIG)["seed"] == seed
        assert [r["step"] for r in runs.read_rows(folder / runs.LOG)] == [1, 2, 3, 4]
        assert runs.read_json(folder / runs.EVAL_SUMMARY)["n"] == 8
        assert "Untrained baseline" not in (folder / "console.log").read_text()  # evaluated once, before the seeds
    cfg = make_config("exp2_oneshot", smoke=True, model_name=model, allow_cpu=True, run_root=str(tmp_path))
    assert [p.name for p in tmp_path.glob("baseline__*")] == [baseline_dir(cfg).name]
    assert runs.read_json(baseline_dir(cfg) / runs.EVAL_SUMMARY)["n"] == 8
    adapter = weight_files(folders[43] / runs.ADAPTER)
    again = run(command(tmp_path, *settings, "--seeds", "43", "--no-eval"))  # one seed, rerun: reloads, trains nothing
    assert "finished training at step 4" in again and weight_files(folders[43] / runs.ADAPTER) == adapter
