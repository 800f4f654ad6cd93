"""Bad input gets a clear message that names the parameter or file and says what to do, before any model loads."""

import json
import shutil

import pytest
import torch

from utils.data import SAMPLE_DATA_DIR
from utils.experiments import make_config
from utils.model import load_model


@pytest.mark.bad_input
def test_unknown_experiment():
    with pytest.raises(KeyError, match="Unknown experiment 'exp9'.*exp1_no_oneshot"):
        make_config("exp9")


@pytest.mark.bad_input
def test_unknown_config_field():
    with pytest.raises(TypeError, match="Unknown config fields \\['learning_rat'\\]"):
        make_config("exp2_oneshot", learning_rat=1e-5)


BAD_SETTINGS = [
    (dict(num_generations=1), "num_generations=1: use a whole number >= 2"),
    (dict(prompts_per_step=0), "prompts_per_step=0: use a whole number >= 1"),
    (dict(max_completion_length=0), "max_completion_length=0"),
    (dict(reward_set="fancy"), "reward_set='fancy': choose one of"),
    (dict(lora_rank=-1), "lora_rank=-1: use a whole number >= 0"),
    (dict(eval_batch_size=0), "eval_batch_size=0"),
    (dict(precision="fp8"), "precision='fp8': choose one of"),
    (dict(min_completion_length=900), "min_completion_length cannot exceed"),
    (dict(max_steps=-3), r"max_steps=-3: use -1 \(train num_train_epochs\) or a whole number >= 1"),
    (dict(max_steps=0), "max_steps=0"),
    (dict(max_steps=2.5), "max_steps=2.5"),
    (dict(eval_limit=-5), "eval_limit=-5: use a whole number >= 1 or None"),
    (dict(eval_limit=0), "eval_limit=0"),
    (dict(train_limit=-1), "train_limit=-1"),
    (dict(probe_every=-1), "probe_every=-1"),
    (dict(save_steps=0), "save_steps=0"),
    (dict(gpu_memory_utilization=1.5), "gpu_memory_utilization=1.5"),
    (dict(learning_rate=0), "learning_rate=0"),
    (dict(temperature=0), "temperature=0"),
    (dict(eval_max_new_tokens="786"), "eval_max_new_tokens='786'"),
    (dict(train_limit=2), r"train_limit=2: one optimizer step takes prompts_per_step=4 prompts"),
    (dict(trl_args={"output_dir": "elsewhere"}), r"trl_args\['output_dir'\]: set run_root .* instead"),
    (dict(trl_args={"learning_rate": 1e-3}), r"trl_args\['learning_rate'\]: set the config field learning_rate"),
    (dict(trl_args={"top_p": 0.9}), r"trl_args\['top_p'\]: fixed by the kit for every run \(to 1.0\)"),
]


@pytest.mark.bad_input
@pytest.mark.parametrize("overrides, message", BAD_SETTINGS)
def test_impossible_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config("exp2_oneshot", **overrides)


@pytest.mark.bad_input
def test_every_problem_is_reported_at_once():
    with pytest.raises(ValueError) as error:
        make_config("exp2_oneshot", max_steps=-3, eval_limit=-5)
    assert "max_steps=-3" in str(error.value) and "eval_limit=-5" in str(error.value)


@pytest.mark.bad_input
def test_missing_data_folder_is_named_when_the_config_is_made(tmp_path):
    with pytest.raises(FileNotFoundError, match="DATA_DIR .*nowhere/train.jsonl does not exist"):
        make_config("exp2_oneshot", data_dir=str(tmp_path / "nowhere"))


@pytest.mark.bad_input
def test_an_empty_training_file_is_found_when_the_config_is_made(tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA_DIR, data_dir)
    (data_dir / "train.jsonl").write_text("")
    with pytest.raises(ValueError, match="train.jsonl has no questions"):
        make_config("exp2_oneshot", data_dir=str(data_dir))


def corrupt_copy(tmp_path, split, line_number, text):
    data_dir = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA_DIR, data_dir)
    lines = (data_dir / f"{split}.jsonl").read_text().splitlines()
    lines[line_number - 1] = text
    (data_dir / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return data_dir


@pytest.mark.parametrize(
    "split, line, text, message",
    [
        ("train", 17, '{"question": "q", "answer": "cut mid-sen', r"train.jsonl, line 17: not valid JSON \(.*\)\.$"),
        ("test", 3, json.dumps({"question": "q"}), r"test.jsonl, line 3: expected the fields"),
        ("train", 40, json.dumps({"question": "q", "answer": "no final line"}), r"train.jsonl, line 40: the solution"),
    ],
)
@pytest.mark.bad_input
def test_bad_data_lines_are_found_when_the_config_is_made(tmp_path, split, line, text, message):
    """Every line of the files a run will read is checked before any model loads, and the message is whole."""
    with pytest.raises(ValueError, match=message):
        make_config("exp2_oneshot", data_dir=str(corrupt_copy(tmp_path, split, line, text)))


@pytest.mark.bad_input
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_real_model_without_gpu_says_what_to_do():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU.*T4.*SMOKE=True"):
        load_model(make_config("exp2_oneshot"))


@pytest.mark.bad_input
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_pipeline_without_gpu_says_what_to_do():
    from utils.pipeline import main

    with pytest.raises(SystemExit, match="need a CUDA GPU.*--smoke"):
        main(["--only", "02"])
    with pytest.raises(SystemExit, match="No notebook matches \\['99'\\]"):
        main(["--only", "99"])
