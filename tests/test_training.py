"""The training path for real: TRL's GRPOTrainer on the tiny random Qwen2, on CPU."""

import json

import pytest
import torch

from utils.evaluate import evaluate
from utils.experiments import make_config
from utils.model import load_model
from utils.rewards import build_reward_funcs
from utils.data import read_run_jsonl
from utils.train import train

pytestmark = pytest.mark.slow


def low_token_share(completion_ids, **kwargs):
    """A reward a random model can learn: the share of completion tokens in the lower half of the vocabulary.
    (Every study reward is 0 for a random model, so its advantages, and gradients, would be 0.)"""
    half = 151_665 // 2
    return [sum(t < half for t in ids) / max(len(ids), 1) for ids in completion_ids]


def tiny_config(tmp_path, **overrides):
    settings = dict(run_root=str(tmp_path), max_steps=4, probe_every=2, probe_size=2, eval_limit=4)
    settings.update(overrides)
    return make_config("exp2_oneshot", smoke=True, **settings)


def test_training_changes_lora_weights_and_logs_every_step(tmp_path):
    cfg = tiny_config(tmp_path)
    model, tokenizer, backend = load_model(cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    run_dir = train(cfg, model, tokenizer, build_reward_funcs(cfg.reward_set, tokenizer) + [low_token_share], backend)

    after = dict(model.named_parameters())
    lora = [n for n in before if "lora_B" in n]
    assert lora and all(not torch.equal(before[n], after[n]) for n in lora), "LoRA weights did not change"
    frozen = [n for n in before if "lora_" not in n]
    assert all(torch.equal(before[n], after[n]) for n in frozen), "base weights changed under LoRA"

    rows = read_run_jsonl(run_dir / "log.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for column in ("loss", "kl", "reward", "completion_length", "correct_frac_strict", "correct_frac_numeric", "rewards/correctness_reward_func/mean", "rewards/xmlcount_reward_func/mean"):
        assert all(column in r for r in rows), column
    assert [r["step"] for r in read_run_jsonl(run_dir / "probe.jsonl")] == [2, 4]
    assert json.loads((run_dir / "config.json").read_text())["reward_set"] == "standard"
    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["packages"]["trl"] and environment["backend"]["backend"] == "transformers+peft"
    assert [r["name"] for r in json.loads((run_dir / "rewards.json").read_text())][-2:] == ["correctness_reward_func", "low_token_share"]
    assert (run_dir / "adapter" / "adapter_config.json").exists()


class Disconnect(Exception):
    pass


def test_rerun_after_interruption_resumes_from_last_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=4, save_steps=2, probe_every=0)
    model, tokenizer, backend = load_model(cfg)
    calls = []

    def disconnects_during_step_3(completions, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Disconnect("runtime disconnected")
        return [0.0] * len(completions)

    with pytest.raises(Disconnect):
        train(cfg, model, tokenizer, build_reward_funcs(cfg.reward_set, tokenizer) + [disconnects_during_step_3], backend)
    assert [r["step"] for r in read_run_jsonl(cfg.run_dir / "log.jsonl")] == [1, 2]

    model, tokenizer, backend = load_model(cfg)  # a fresh session
    train(cfg, model, tokenizer, build_reward_funcs(cfg.reward_set, tokenizer), backend)
    assert [r["step"] for r in read_run_jsonl(cfg.run_dir / "log.jsonl")] == [1, 2, 3, 4]
    state = json.loads((cfg.run_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_rerun_with_a_different_config_is_refused(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=1, probe_every=0)
    model, tokenizer, backend = load_model(cfg)
    train(cfg, model, tokenizer, build_reward_funcs(cfg.reward_set, tokenizer), backend)
    changed = tiny_config(tmp_path, max_steps=1, probe_every=0, learning_rate=0.5)
    with pytest.raises(ValueError, match="different config .*learning_rate.*RUN_ROOT"):
        train(changed, model, tokenizer, build_reward_funcs(cfg.reward_set, tokenizer), backend)


def expected_low_token_share(model, tokenizer, prompts, temperature=0.9) -> float:
    """The policy's expected ``low_token_share`` for its next token on fixed prompts: exact, no sampling noise."""
    from utils.evaluate import chat_texts

    batch = tokenizer(chat_texts(tokenizer, prompts), return_tensors="pt", padding=True, padding_side="left")
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(**batch).logits[:, -1, :] / temperature, dim=-1)
    model.train()
    return probs[:, : 151_665 // 2].sum(-1).mean().item()


def test_grpo_raises_a_learnable_reward(tmp_path):
    """GRPO measurably raises a reward the random model can learn. Sampling uses the whole vocabulary
    (top_k=0): with the study's top-k 50 the reward would only see 50 tokens of the random model."""
    from utils.data import SAMPLE_DATA_DIR, build_dataset

    cfg = tiny_config(tmp_path, max_steps=12, learning_rate=1e-2, num_generations=8, prompts_per_step=1, max_completion_length=8, beta=0.0, top_k=0, probe_every=0, save_steps=100, warmup_ratio=0.0)
    model, tokenizer, backend = load_model(cfg)
    prompts = build_dataset("train", True, SAMPLE_DATA_DIR, limit=8)["prompt"]
    before = expected_low_token_share(model, tokenizer, prompts)
    train(cfg, model, tokenizer, [low_token_share], backend)
    after = expected_low_token_share(model, tokenizer, prompts)
    assert after > before + 0.08, f"expected reward did not rise: {before:.3f} -> {after:.3f}"


def test_evaluation_counts_tokens_and_truncation(tmp_path):
    cfg = tiny_config(tmp_path, eval_max_new_tokens=5, eval_limit=3)
    model, tokenizer, backend = load_model(cfg)
    summary = evaluate(model, tokenizer, cfg, tmp_path / "eval", backend)
    records = [json.loads(line) for line in (tmp_path / "eval" / "eval.jsonl").read_text().splitlines()]
    assert summary["n"] == len(records) == 3
    assert all(r["completion_tokens"] <= 5 for r in records)
    assert summary["truncated_share"] == sum(r["truncated"] for r in records) / 3
    assert 0 <= summary["accuracy_numeric_ci95"][0] <= summary["accuracy_numeric"] <= summary["accuracy_numeric_ci95"][1] <= 1
    assert summary["graders"] == {"strict": "utils.grading.is_correct_strict", "numeric": "utils.grading.is_correct"}


def test_grpo_config_reproduces_the_studys_logged_arguments(tmp_path):
    """The study's TRL 0.14 arguments (utils/assets/study_args.json), mapped onto today's TRL."""
    from utils.data import REPO_ROOT
    from utils.train import grpo_config

    study = json.loads((REPO_ROOT / "utils" / "assets" / "study_args.json").read_text())["args"]
    cfg = make_config("exp2_oneshot")
    args = grpo_config(cfg, tmp_path)
    for key in ("learning_rate", "adam_beta1", "adam_beta2", "weight_decay", "lr_scheduler_type", "max_grad_norm", "num_generations", "max_completion_length", "num_train_epochs", "beta", "temperature", "seed", "logging_steps"):
        assert getattr(args, key) == study[key] or str(getattr(args, key)) == f"SchedulerType.{study[key].upper()}", key
    assert args.warmup_steps == study["warmup_ratio"]  # transformers 5: a float below 1 is a ratio
    assert cfg.max_prompt_length == study["max_prompt_length"]
    # TRL 0.14 counted prompts per batch: 1 prompt x 4 accumulation steps x 4 generations = 16 completions per step.
    study_completions = study["per_device_train_batch_size"] * study["gradient_accumulation_steps"] * study["num_generations"]
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == study_completions
    assert args.top_k == 50 and args.loss_type == "grpo"
