"""The Unsloth path, on a CUDA GPU with Unsloth installed (skipped elsewhere)."""

import importlib.util

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("unsloth") is None, reason="needs a CUDA GPU and Unsloth")]


def test_unsloth_lora_trains_and_evaluates(tmp_path):
    import unsloth  # noqa: F401

    from utils.bench import _materialize
    from utils.data import read_run_jsonl
    from utils.evaluate import evaluate
    from utils.experiments import make_config
    from utils.model import load_model
    from utils.rewards import build_reward_funcs
    from utils.train import train

    cfg = make_config("exp2_oneshot", smoke=True, model_name=_materialize("random-full", tmp_path / "model"), run_root=str(tmp_path), max_steps=2, probe_every=0, fast_inference=False)
    model, tokenizer, backend = load_model(cfg)
    assert backend["backend"] == "unsloth"
    run_dir = train(cfg, model, tokenizer, build_reward_funcs(cfg.reward_set, tokenizer), backend)
    assert [r["step"] for r in read_run_jsonl(run_dir / "log.jsonl")] == [1, 2]
    assert evaluate(model, tokenizer, cfg, run_dir, backend)["n"] == cfg.eval_limit
