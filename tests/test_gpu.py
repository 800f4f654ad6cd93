"""The Unsloth path, on a CUDA GPU with Unsloth installed (skipped elsewhere). conftest imports Unsloth first."""

import importlib.util

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available() or importlib.util.find_spec("unsloth") is None,
        reason="needs a CUDA GPU and Unsloth",
    ),
]


@pytest.mark.parametrize("precision", ["auto", "fp16"])  # fp16: the T4 path, with its gradient scaler
def test_unsloth_lora_trains_and_evaluates(tmp_path, precision):
    import sys

    from utils import runs
    from utils.evaluate import evaluate
    from utils.experiments import make_config
    from utils.model import load_model
    from utils.model_cache import materialize_random_model
    from utils.rewards import build_rewards
    from utils.trainer import train

    assert "unsloth" in sys.modules  # imported by conftest, before transformers
    model_path = materialize_random_model("random-full", tmp_path / "model")
    cfg = make_config(
        "exp2_oneshot",
        smoke=True,
        model_name=model_path,
        run_root=str(tmp_path),
        max_steps=2,
        probe_every=0,
        fast_inference=False,
        precision=precision,
        learning_rate=1e-3,
    )
    model, tokenizer, backend = load_model(cfg)
    assert backend.name == "unsloth"
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    run_dir = train(cfg, model, tokenizer, build_rewards(cfg.reward_set, tokenizer, **cfg.reward_settings), backend)
    after = dict(model.named_parameters())
    assert before and any(not torch.equal(before[n], after[n]) for n in before), "LoRA weights did not change"
    assert [r["step"] for r in runs.read_rows(run_dir / runs.LOG)] == [1, 2]
    ran = runs.read_json(run_dir / runs.ENVIRONMENT)["trainer"]
    assert ran["optim"] == "adamw_torch" and "Unsloth" in ran["trainer_class"]
    if precision == "fp16":
        assert ran["mixed_precision"] == "fp16"
    assert evaluate(cfg, model, tokenizer, run_dir, backend)["n"] == cfg.eval_limit


class Disconnect(Exception):
    pass


def test_unsloth_resume_restores_the_saved_adapter_and_a_finished_rerun_keeps_it(tmp_path):
    """The same promise as on CPU (tests/test_training.py), checked where CUDA is exact: the weights in memory when a
    resumed run takes its first step equal its checkpoint's, bit for bit, and rerunning a finished run rewrites
    nothing. (Steps after the resume are not compared bit for bit: CUDA kernels may sum in another order, and one
    sampled token that differs makes the rest of the run differ.)"""
    from weights import assert_same_weights, saved_weights, weight_files, weights_in_memory

    from utils import runs
    from utils.experiments import make_config
    from utils.model import load_model
    from utils.model_cache import materialize_random_model
    from utils.rewards import build_rewards
    from utils.trainer import train

    cfg = make_config(
        "exp2_oneshot",
        smoke=True,
        model_name=materialize_random_model("random-full", tmp_path / "model"),
        run_root=str(tmp_path),
        max_steps=4,
        save_steps=2,
        probe_every=0,
        fast_inference=False,
        learning_rate=1e-3,
    )
    session = {"disconnected": False, "model": None, "at_resume": None}

    def disconnects_once_in_step_3(completions, trainer_state=None, **kwargs):
        """Zero reward; the first time step 3 is scored it disconnects, the second it records the model's weights."""
        if trainer_state.global_step + 1 == 3:
            if not session["disconnected"]:
                session["disconnected"] = True
                raise Disconnect("runtime disconnected")
            if session["at_resume"] is None:
                session["at_resume"] = weights_in_memory(session["model"])
        return [0.0] * len(completions)

    rewards = build_rewards(cfg.reward_set) + [(disconnects_once_in_step_3, 0.0)]
    model, tokenizer, backend = load_model(cfg)
    assert backend.name == "unsloth"
    with pytest.raises(Disconnect):
        train(cfg, model, tokenizer, rewards, backend)
    checkpoint = cfg.run_dir / runs.CHECKPOINTS / "checkpoint-2"
    assert not (checkpoint / "ref").exists()  # the reference is the base model, as on the transformers path

    model, tokenizer, backend = load_model(cfg)  # a fresh session
    session["model"] = model
    train(cfg, model, tokenizer, rewards, backend)
    assert_same_weights(saved_weights(checkpoint), session["at_resume"])
    assert [r["step"] for r in runs.read_rows(cfg.run_dir / runs.LOG)] == [1, 2, 3, 4]

    adapter = cfg.run_dir / runs.ADAPTER
    saved = weight_files(adapter)
    model, tokenizer, backend = load_model(cfg)
    train(cfg, model, tokenizer, rewards, backend)  # finished: reloads its weights, trains nothing
    assert weight_files(adapter) == saved
    assert_same_weights(saved_weights(adapter), weights_in_memory(model))
