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
    from utils.bench import materialize_random_model
    from utils.evaluate import evaluate
    from utils.experiments import make_config
    from utils.model import load_model
    from utils.rewards import build_rewards
    from utils.train import train

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
    run_dir = train(cfg, model, tokenizer, build_rewards(cfg.reward_set, tokenizer), backend)
    after = dict(model.named_parameters())
    assert before and any(not torch.equal(before[n], after[n]) for n in before), "LoRA weights did not change"
    assert [r["step"] for r in runs.read_rows(run_dir / runs.LOG)] == [1, 2]
    ran = runs.read_json(run_dir / runs.ENVIRONMENT)["trainer"]
    assert ran["optim"] == "adamw_torch" and "Unsloth" in ran["trainer_class"]
    if precision == "fp16":
        assert ran["mixed_precision"] == "fp16"
    assert evaluate(cfg, model, tokenizer, run_dir, backend)["n"] == cfg.eval_limit
