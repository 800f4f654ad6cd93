"""The training path for real: TRL's GRPOTrainer on the tiny random Qwen2, on CPU."""

import dataclasses
import json
import math
import os
import socket
import sys

import pytest
import torch
from faults import DISCONNECT, Disconnect, fault_rewards
from weights import assert_same_weights, saved_weights, weight_files, weights_in_memory

from utils import runs
from utils.callbacks import TrainingDiverged
from utils.evaluate import evaluate
from utils.experiments import make_config
from utils.model import load_model
from utils.rewards import build_rewards
from utils.scripts.lora_lr import expected_low_token_share, low_token_share
from utils.trainer import train

pytestmark = pytest.mark.slow


def tiny_config(tmp_path, **overrides):
    settings = dict(run_root=str(tmp_path), max_steps=4, probe_every=2, probe_size=2, eval_limit=4)
    settings.update(overrides)
    return make_config("exp2_oneshot", smoke=True, **settings)


def test_training_changes_lora_weights_and_logs_every_step(tmp_path):
    cfg = tiny_config(tmp_path)
    model, tokenizer, backend = load_model(cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rewards = build_rewards(cfg.reward_set, tokenizer) + [(low_token_share, 0.5)]
    run_dir = train(cfg, model, tokenizer, rewards, backend)

    after = dict(model.named_parameters())
    lora = [n for n in before if "lora_B" in n]
    assert lora and all(not torch.equal(before[n], after[n]) for n in lora), "LoRA weights did not change"
    frozen = [n for n in before if "lora_" not in n]
    assert all(torch.equal(before[n], after[n]) for n in frozen), "base weights changed under LoRA"

    rows = runs.read_rows(run_dir / runs.LOG)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for column in (
        "loss",
        "kl",
        "reward",
        "completion_length",
        "correct_frac_strict",
        "correct_frac_numeric",
        "rewards/correctness_reward_func/mean",
        "rewards/xmlcount_reward_func/mean",
    ):
        assert all(column in r for r in rows), column
    assert [r["step"] for r in runs.read_rows(run_dir / runs.PROBE)] == [2, 4]
    assert json.loads((run_dir / runs.CONFIG).read_text())["reward_set"] == "standard"
    environment = json.loads((run_dir / runs.ENVIRONMENT).read_text())
    assert environment["packages"]["trl"] and environment["backend"]["name"] == "transformers+peft"
    assert environment["trainer"]["optimizer"].endswith("AdamW") and environment["trainer"]["optim"] == "adamw_torch"
    recorded = [(r["name"], r["weight"]) for r in json.loads((run_dir / runs.REWARDS).read_text())]
    assert recorded[-2:] == [("correctness_reward_func", 2.0), ("low_token_share", 0.5)]
    assert (run_dir / runs.ADAPTER / "adapter_config.json").exists()


def test_total_reward_is_the_weighted_sum_with_graders_at_zero(tmp_path):
    """TRL's logged reward is sum(weight x mean): the batch graders add nothing, correctness counts twice."""
    cfg = tiny_config(tmp_path, max_steps=3, probe_every=0)
    model, tokenizer, backend = load_model(cfg)
    rewards = build_rewards(cfg.reward_set, tokenizer) + [(low_token_share, 0.5)]
    run_dir = train(cfg, model, tokenizer, rewards, backend)
    for row in runs.read_rows(run_dir / runs.LOG):
        weighted = sum(w * row[f"rewards/{f.__name__}/mean"] for f, w in rewards)
        assert row["reward"] == pytest.approx(weighted, abs=1e-5)
        assert row["rewards/batch_correct_strict/mean"] == row["correct_frac_strict"]  # logged, weight 0
        assert row["rewards/low_token_share/mean"] > 0.0  # so a grader weight of 1 would not go unnoticed


def final_weights_folder(run_dir, cfg):
    return run_dir / (runs.ADAPTER if cfg.lora_rank else runs.FULL_MODEL)


FINE_TUNING = {"lora": {}, "full": {"lora_rank": 0}}


@pytest.fixture(scope="module")
def uninterrupted(request, tmp_path_factory):
    """A 4-step run saved every 2 steps, never interrupted, evaluated at the end: what every fault must end as."""
    cfg = tiny_config(
        tmp_path_factory.mktemp(request.param), save_steps=2, probe_every=0, **FINE_TUNING[request.param]
    )
    model, tokenizer, backend = load_model(cfg)
    train(cfg, model, tokenizer, fault_rewards(tokenizer), backend)
    evaluate(cfg, model, tokenizer, cfg.run_dir, backend, progress=False)
    return request.param, cfg


def copy_run(cfg, tmp_path):
    """The run folder copied elsewhere (as from Drive to a local disk): run_root changes, nothing else."""
    import shutil

    copied = dataclasses.replace(cfg, run_root=str(tmp_path / "copied"))
    shutil.copytree(cfg.run_dir, copied.run_dir)
    return copied


@pytest.mark.fault
@pytest.mark.parametrize("uninterrupted", list(FINE_TUNING), indirect=True)
def test_a_disconnected_run_resumes_to_the_weights_of_an_uninterrupted_one(uninterrupted, tmp_path, monkeypatch):
    _, reference = uninterrupted
    cfg = dataclasses.replace(reference, run_root=str(tmp_path))
    model, tokenizer, backend = load_model(cfg)
    monkeypatch.setitem(DISCONNECT, "at_step", 3)
    with pytest.raises(Disconnect):
        train(cfg, model, tokenizer, fault_rewards(tokenizer), backend)
    assert [r["step"] for r in runs.read_rows(cfg.run_dir / runs.LOG)] == [1, 2]

    monkeypatch.setitem(DISCONNECT, "at_step", None)
    model, tokenizer, backend = load_model(cfg)  # a fresh session, the same rewards
    train(cfg, model, tokenizer, fault_rewards(tokenizer), backend)
    expected = saved_weights(final_weights_folder(reference.run_dir, reference))
    assert_same_weights(expected, weights_in_memory(model))
    assert_same_weights(expected, saved_weights(final_weights_folder(cfg.run_dir, cfg)))
    assert [r["step"] for r in runs.read_rows(cfg.run_dir / runs.LOG)] == [1, 2, 3, 4]
    reference_rows = runs.read_rows(reference.run_dir / runs.LOG)
    assert [r["loss"] for r in runs.read_rows(cfg.run_dir / runs.LOG)] == [r["loss"] for r in reference_rows]
    assert not (cfg.run_dir / runs.CHECKPOINTS / "checkpoint-4" / "ref").exists()  # the reference is the base model


@pytest.mark.fault
@pytest.mark.parametrize("uninterrupted", list(FINE_TUNING), indirect=True)
def test_rerunning_a_finished_run_evaluates_and_keeps_its_trained_weights(uninterrupted, tmp_path, capsys):
    """A rerun after a disconnect during the final evaluation, of a folder copied elsewhere, with the lock of the
    crashed session still in it and the step log's last line cut short."""
    _, reference = uninterrupted
    cfg = copy_run(reference, tmp_path)
    final = final_weights_folder(cfg.run_dir, cfg)
    saved_bytes = weight_files(final)
    (cfg.run_dir / runs.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid()}))
    with (cfg.run_dir / runs.LOG).open("a") as log:
        log.write('{"step": 5, "loss": 0.1')

    model, tokenizer, backend = load_model(cfg)
    train(cfg, model, tokenizer, fault_rewards(tokenizer), backend)
    out = capsys.readouterr().out
    assert "finished training at step 4" in out and "Taking over" in out and "dropped its last line" in out
    assert_same_weights(saved_weights(final), weights_in_memory(model))
    assert weight_files(final) == saved_bytes  # byte for byte
    assert [r["step"] for r in runs.read_rows(cfg.run_dir / runs.LOG)] == [1, 2, 3, 4]
    assert not (cfg.run_dir / runs.LOCK).exists()
    evaluate(cfg, model, tokenizer, tmp_path / "again", backend, progress=False)
    completions = [r["completion"] for r in runs.read_rows(reference.run_dir / runs.EVAL)]
    assert [r["completion"] for r in runs.read_rows(tmp_path / "again" / runs.EVAL)] == completions


def dead_pid() -> int:
    import subprocess

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.fault
@pytest.mark.parametrize("uninterrupted", ["lora"], indirect=True)
def test_a_half_written_checkpoint_is_skipped_and_nothing_is_lost(uninterrupted, tmp_path, capsys):
    """The session died while saving checkpoint-4: resume from checkpoint-2, end with the same weights."""
    _, reference = uninterrupted
    cfg = copy_run(reference, tmp_path)
    newest = cfg.run_dir / runs.CHECKPOINTS / "checkpoint-4"
    (newest / "optimizer.pt").unlink()
    (newest / "scheduler.pt").unlink()

    model, tokenizer, backend = load_model(cfg)
    train(cfg, model, tokenizer, fault_rewards(tokenizer), backend)
    out = capsys.readouterr().out
    assert "Skipping checkpoint-4: incomplete (missing optimizer.pt, scheduler.pt" in out
    assert "Resuming from" in out and "checkpoint-2 (step 2)" in out
    assert [r["step"] for r in runs.read_rows(cfg.run_dir / runs.LOG)] == [1, 2, 3, 4]
    assert (newest / "optimizer.pt").is_file()  # saved again, whole
    assert_same_weights(saved_weights(final_weights_folder(reference.run_dir, reference)), weights_in_memory(model))


@pytest.mark.fault
@pytest.mark.parametrize("uninterrupted", ["lora"], indirect=True)
def test_a_run_whose_checkpoints_are_gone_is_not_restarted_over_its_logs(uninterrupted, tmp_path):
    import shutil

    _, reference = uninterrupted
    cfg = copy_run(reference, tmp_path)
    shutil.rmtree(cfg.run_dir / runs.CHECKPOINTS)
    log = (cfg.run_dir / runs.LOG).read_bytes()
    model, tokenizer, backend = load_model(cfg)
    with pytest.raises(ValueError, match=r"logged 4 steps, but .*checkpoints has no complete checkpoint.*steps 1-4"):
        train(cfg, model, tokenizer, fault_rewards(tokenizer), backend)
    assert (cfg.run_dir / runs.LOG).read_bytes() == log


@pytest.mark.fault
@pytest.mark.parametrize("uninterrupted", ["lora"], indirect=True)
def test_a_run_trained_differently_is_never_resumed_and_nothing_changes(uninterrupted, tmp_path):
    _, reference = uninterrupted
    cfg = copy_run(reference, tmp_path)
    files = {p: p.read_bytes() for p in cfg.run_dir.rglob("*") if p.is_file()}
    model, tokenizer, backend = load_model(cfg)
    before = weights_in_memory(model)
    rewards = fault_rewards(tokenizer)
    other_rate = dataclasses.replace(cfg, learning_rate=0.5)
    assert other_rate.run_dir != cfg.run_dir  # another setting is another run, in its own folder ...
    with pytest.raises(ValueError, match="trained differently .*learning_rate.*RUN_ROOT"):  # ... unless pointed here
        train(dataclasses.replace(other_rate, run_name=cfg.run_dir.name), model, tokenizer, rewards, backend)
    with pytest.raises(ValueError, match=r"reward correctness_reward_func changed \(weight\).*new run"):
        train(
            cfg, model, tokenizer, [(f, 1.0 if f.__name__.startswith("correct") else w) for f, w in rewards], backend
        )

    def correctness_reward_func(completions, **kwargs):  # same name, other source
        return [0.0] * len(completions)

    other = [(correctness_reward_func, w) if f.__name__ == "correctness_reward_func" else (f, w) for f, w in rewards]
    with pytest.raises(ValueError, match=r"reward correctness_reward_func changed \(source\)"):
        train(cfg, model, tokenizer, other, backend)
    with pytest.raises(ValueError, match="reward expected_low_token_share added"):
        train(cfg, model, tokenizer, rewards + [expected_low_token_share], backend)
    assert {p: p.read_bytes() for p in cfg.run_dir.rglob("*") if p.is_file()} == files
    assert_same_weights(before, weights_in_memory(model))


@pytest.mark.fault
@pytest.mark.parametrize("uninterrupted", ["lora"], indirect=True)
def test_an_empty_config_file_is_named(uninterrupted, tmp_path):
    _, reference = uninterrupted
    cfg = copy_run(reference, tmp_path)
    (cfg.run_dir / runs.CONFIG).write_text("")
    with pytest.raises(ValueError, match=r"config.json is empty .*restore it .*new run"):
        train(cfg, None, None, [], None)


@pytest.mark.fault
def test_a_run_folder_in_use_is_refused_and_left_alone(tmp_path):
    cfg = tiny_config(tmp_path)
    lock = runs.TrainingLock(cfg.run_dir)
    lock.acquire()  # another notebook, alive, on this machine
    with pytest.raises(runs.RunLocked, match=rf"being trained by another process \(pid {os.getpid()}.*delete .*lock"):
        train(cfg, None, None, [], None)
    assert lock.path.exists() and not (cfg.run_dir / runs.CONFIG).exists()
    lock.release()


@pytest.mark.fault
def test_non_finite_rewards_stop_training_and_keep_the_last_good_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=4, save_steps=1, probe_every=0)
    model, tokenizer, backend = load_model(cfg)
    calls = []

    def explodes_at_step_2(completions, **kwargs):
        calls.append(1)
        return [math.inf if len(calls) > 1 else 0.0] * len(completions)  # one call per step

    rewards = build_rewards(cfg.reward_set, tokenizer) + [(low_token_share, 1.0), explodes_at_step_2]
    with pytest.raises(TrainingDiverged, match=r"Step 2: reward explodes_at_step_2 returned NaN or inf.*checkpoint-1"):
        train(cfg, model, tokenizer, rewards, backend)
    assert [r["step"] for r in runs.read_rows(cfg.run_dir / runs.LOG)] == [1]
    assert not (cfg.run_dir / runs.CHECKPOINTS / "checkpoint-2").exists()
    kept = saved_weights(cfg.run_dir / runs.CHECKPOINTS / "checkpoint-1")
    assert all(torch.isfinite(t).all() for t in kept.values())

    def always_nan(completions, **kwargs):
        return [math.nan] * len(completions)

    fresh = tiny_config(tmp_path / "nan", max_steps=2, probe_every=0)
    model, tokenizer, backend = load_model(fresh)
    with pytest.raises(TrainingDiverged, match=r"Step 1: reward always_nan returned NaN or infinity"):
        train(fresh, model, tokenizer, build_rewards(cfg.reward_set, tokenizer) + [always_nan], backend)


@pytest.mark.bad_input
def test_a_reward_that_abstains_on_a_whole_batch_is_not_divergence(tmp_path):
    """TRL lets a reward return None for completions it does not judge; its logged mean is then NaN."""
    cfg = tiny_config(tmp_path, max_steps=2, probe_every=0)
    model, tokenizer, backend = load_model(cfg)

    def abstains(completions, **kwargs):
        return [None] * len(completions)

    train(cfg, model, tokenizer, build_rewards(cfg.reward_set, tokenizer) + [abstains], backend)
    assert [r["step"] for r in runs.read_rows(cfg.run_dir / runs.LOG)] == [1, 2]


@pytest.mark.bad_input
def test_a_run_that_could_not_take_one_step_is_an_error(tmp_path):
    cfg = tiny_config(tmp_path, max_prompt_length=16)  # every prompt is longer
    with pytest.raises(
        ValueError, match=r"Only 0 training prompts are left .*max_prompt_length=16.*prompts_per_step=2"
    ):
        train(cfg, None, load_model(cfg)[1], [], None)
    assert not cfg.run_dir.exists()


@pytest.mark.fault
def test_out_of_memory_names_the_settings_to_lower(tmp_path, monkeypatch):
    from trl import GRPOTrainer

    cfg = tiny_config(tmp_path, max_steps=1, probe_every=0)
    model, tokenizer, backend = load_model(cfg)
    before = weights_in_memory(model)

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(GRPOTrainer, "train", out_of_memory)
    with pytest.raises(RuntimeError, match=r"during training. Lower one of: max_completion_length \(now 24\)"):
        train(cfg, model, tokenizer, build_rewards(cfg.reward_set, tokenizer), backend)
    assert_same_weights(before, weights_in_memory(model))
    assert not (cfg.run_dir / runs.ADAPTER).exists() and not (cfg.run_dir / runs.LOCK).exists()
    monkeypatch.setattr(model, "generate", out_of_memory)
    with pytest.raises(RuntimeError, match=r"during evaluation. Lower one of: eval_batch_size \(now 8\)"):
        evaluate(cfg, model, tokenizer, loaded=backend, progress=False)


def test_grpo_raises_a_learnable_reward(tmp_path):
    """GRPO measurably raises a reward the random model can learn. Sampling uses the whole vocabulary (top_k=0): with
    the study's top-k 50 the reward would only see 50 tokens of the random model. The run is deterministic on a CPU;
    at these settings seed 42 rises by 0.105 (seeds 1-4 by 0.047-0.118), a run whose weights do not learn by 0."""
    from utils.data import SAMPLE_DATA_DIR, build_dataset

    cfg = tiny_config(
        tmp_path,
        max_steps=12,
        learning_rate=2e-2,  # alpha 32 at rank 64 scales LoRA's update by 0.5: twice the rate, the same steps
        num_generations=8,
        prompts_per_step=1,
        max_completion_length=8,
        beta=0.0,
        top_k=0,
        probe_every=0,
        save_steps=100,
        warmup_ratio=0.0,
    )
    model, tokenizer, backend = load_model(cfg)
    prompts = build_dataset("train", True, SAMPLE_DATA_DIR, limit=8)["prompt"]
    before = expected_low_token_share(model, tokenizer, prompts, temperature=0.9)
    train(cfg, model, tokenizer, [low_token_share], backend)
    after = expected_low_token_share(model, tokenizer, prompts, temperature=0.9)
    assert after > before + 0.05, f"expected reward did not rise: {before:.3f} -> {after:.3f}"
