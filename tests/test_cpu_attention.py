"""The kit's CPU attention (``utils.cpu_attention``) leaves the key-value heads grouped and changes no number: a padded
batch's logits and greedy tokens are those of transformers' SDPA bit for bit, and with gradients it is transformers'
own path, so training is untouched."""

import pytest
import torch

from utils.cpu_attention import GROUPED_SDPA
from utils.data import SAMPLE_DATA_DIR, build_eval_dataset
from utils.experiments import make_config
from utils.generation import generate_completions
from utils.model import load_model


@pytest.fixture(scope="module", params=["fp32", "bf16"])
def loaded(request):
    cfg = make_config("exp2_oneshot", smoke=True, precision=request.param, data_dir=str(SAMPLE_DATA_DIR))
    model, tokenizer, record = load_model(cfg)
    assert record.attention == GROUPED_SDPA
    inner = model.get_base_model()
    assert inner.config.num_attention_heads > inner.config.num_key_value_heads  # grouped-query, as Qwen2.5
    with torch.no_grad():  # a trained-looking adapter, so its LoRA path carries numbers too
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(std=0.02, generator=torch.Generator().manual_seed(len(name)))
    return model.eval(), tokenizer


def padded_batch(tokenizer):
    texts = ["Tom has 3 apples and buys 4 more.", "Two numbers: 5 and 6. Add them up, then multiply by a hundred."]
    return tokenizer(texts, return_tensors="pt", padding=True, padding_side="left")


def test_logits_are_transformers_sdpa_bit_for_bit(loaded):
    model, tokenizer = loaded
    batch = padded_batch(tokenizer)
    assert not batch["attention_mask"].all()  # padded: the case transformers copies the key-value heads in
    logits = {}
    with torch.no_grad():
        for attention in ("sdpa", GROUPED_SDPA):
            model.set_attn_implementation(attention)
            logits[attention] = model(**batch).logits
    assert torch.equal(logits["sdpa"], logits[GROUPED_SDPA])


def test_greedy_tokens_are_the_same(loaded):
    model, tokenizer = loaded
    prompts = list(build_eval_dataset("gsm8k", True, str(SAMPLE_DATA_DIR), 4)["prompt"])
    texts = {}
    for attention in ("sdpa", GROUPED_SDPA):
        model.set_attn_implementation(attention)
        texts[attention] = generate_completions(model, tokenizer, prompts, 24, 4, progress=False)
    assert texts["sdpa"] == texts[GROUPED_SDPA]


def test_with_gradients_it_is_transformers_path(loaded, monkeypatch):
    from utils import cpu_attention

    model, tokenizer = loaded
    model.set_attn_implementation(GROUPED_SDPA)
    seen = []
    original = cpu_attention.sdpa_attention_forward
    monkeypatch.setattr(cpu_attention, "sdpa_attention_forward", lambda *a, **k: seen.append(1) or original(*a, **k))
    model(**padded_batch(tokenizer)).logits.float().sum().backward()
    assert len(seen) == model.get_base_model().config.num_hidden_layers
    model.zero_grad()
