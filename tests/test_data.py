import json

import pytest

from utils.data import SAMPLE_DATA_DIR, build_dataset, load_gsm8k


def test_local_gsm8k_has_question_gold_and_solution():
    ds = load_gsm8k("train", SAMPLE_DATA_DIR)
    assert set(ds.column_names) == {"question", "answer", "solution"}
    assert ds[0]["answer"] == "72" and ds[0]["solution"].endswith("#### 72")


def test_gsm8k_dir_environment_variable(monkeypatch):
    monkeypatch.setenv("GSM8K_DIR", str(SAMPLE_DATA_DIR))
    assert len(load_gsm8k("test")) == 48


def test_build_dataset_adds_chat_prompt(tokenizer):
    ds = build_dataset("test", one_shot=True, data_dir=SAMPLE_DATA_DIR, limit=5)
    assert len(ds) == 5 and len(ds[0]["prompt"]) == 4 and ds[0]["prompt"][-1]["content"] == ds[0]["question"]
    assert (
        len(build_dataset("test", one_shot=False, data_dir=SAMPLE_DATA_DIR, tokenizer=tokenizer, max_prompt_tokens=60))
        < 48
    )


@pytest.mark.bad_input
def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="DATA_DIR .*nowhere/train.jsonl does not exist.*set it to None"):
        load_gsm8k("train", tmp_path / "nowhere")


@pytest.mark.bad_input
def test_malformed_file_names_file_and_line(tmp_path):
    good = json.dumps({"question": "q", "answer": "a\n#### 1"})
    (tmp_path / "train.jsonl").write_text(good + "\n" + good + "\n{not json\n")
    with pytest.raises(ValueError, match=r"train.jsonl, line 3"):
        load_gsm8k("train", tmp_path)
    (tmp_path / "test.jsonl").write_text(good + "\n" + json.dumps({"question": "q"}) + "\n")
    with pytest.raises(ValueError, match=r"test.jsonl, line 2: expected the fields \['question', 'answer'\]"):
        load_gsm8k("test", tmp_path)


@pytest.mark.bad_input
def test_solution_without_final_answer_is_reported(tmp_path):
    good = json.dumps({"question": "q", "answer": "a\n#### 1"})
    (tmp_path / "test.jsonl").write_text(good + "\n\n" + json.dumps({"question": "q", "answer": "no marker"}) + "\n")
    with pytest.raises(ValueError, match="test.jsonl, line 3: the solution has no '#### <answer>' line"):
        load_gsm8k("test", tmp_path)


@pytest.mark.bad_input
def test_unknown_split():
    with pytest.raises(ValueError, match="Unknown split"):
        load_gsm8k("validation", SAMPLE_DATA_DIR)


@pytest.mark.fault
def test_hub_failure_falls_back_to_a_local_copy(monkeypatch, capsys):
    import utils.data as data

    monkeypatch.delenv("GSM8K_DIR", raising=False)
    monkeypatch.setattr(data, "LOCAL_COPY_DIR", SAMPLE_DATA_DIR)
    assert len(data.load_gsm8k("test")) == 48  # the hub is offline in tests
    assert "using the local copy" in capsys.readouterr().out

    monkeypatch.setattr(data, "LOCAL_COPY_DIR", SAMPLE_DATA_DIR / "nowhere")
    with pytest.raises(RuntimeError, match="found no local copy.*Internet on.*DATA_DIR") as error:
        data.load_gsm8k("test")
    assert "shared" not in str(error.value)  # never points users at the developers' folders


def test_long_prompts_are_counted_with_the_models_own_tokenizer(tokenizer):
    """SmolLM2 spends more tokens on the same prompts than Qwen2.5: a limit that fits every prompt for one drops some
    for the other, whose own chat template and tokenizer decide."""
    from utils.model import load_tokenizer

    smollm2 = load_tokenizer("smollm2-135m")
    questions = build_dataset("test", one_shot=False, data_dir=SAMPLE_DATA_DIR)["prompt"]

    def tokens(tok, messages):
        return len(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)[
            "input_ids"])  # fmt: skip

    limit = max(tokens(tokenizer, messages) for messages in questions)
    expected = sum(tokens(smollm2, messages) <= limit for messages in questions)
    assert 0 < expected < len(questions)  # the limit sits between the two tokenizers' counts
    kept = {name: build_dataset("test", False, SAMPLE_DATA_DIR, None, tok, limit) for name, tok in
            [("qwen", tokenizer), ("smollm2", smollm2)]}  # fmt: skip
    assert (len(kept["qwen"]), len(kept["smollm2"])) == (len(questions), expected)
