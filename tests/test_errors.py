"""Bad input gets a clear message that says what to do."""

import pytest
import torch

from utils.experiments import make_config
from utils.model import load_model


def test_unknown_experiment():
    with pytest.raises(KeyError, match="Unknown experiment 'exp9'.*exp1_no_oneshot"):
        make_config("exp9")


def test_unknown_config_field():
    with pytest.raises(TypeError, match="Unknown config fields \\['learning_rat'\\]"):
        make_config("exp2_oneshot", learning_rat=1e-5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_generations=1), "num_generations must be at least 2"),
        (dict(prompts_per_step=0), "prompts_per_step must be at least 1"),
        (dict(max_completion_length=0), "max_completion_length"),
        (dict(reward_set="fancy"), "reward_set 'fancy' is not one of"),
        (dict(lora_rank=-1), "lora_rank"),
        (dict(eval_batch_size=0), "eval_batch_size must be at least 1"),
        (dict(precision="fp8"), "precision 'fp8' is not one of"),
        (dict(min_completion_length=900), "min_completion_length cannot exceed"),
    ],
)
def test_impossible_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config("exp2_oneshot", **overrides)


def test_missing_data_folder_is_named(tmp_path):
    from utils.data import build_dataset

    with pytest.raises(FileNotFoundError, match="nowhere/train.jsonl does not exist"):
        build_dataset("train", True, data_dir=tmp_path / "nowhere")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_real_model_without_gpu_says_what_to_do():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU.*T4.*SMOKE=True"):
        load_model(make_config("exp2_oneshot"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_pipeline_without_gpu_says_what_to_do():
    from utils.pipeline import main

    with pytest.raises(SystemExit, match="need a CUDA GPU.*--smoke"):
        main(["--only", "02"])
    with pytest.raises(SystemExit, match="No notebook matches \\['99'\\]"):
        main(["--only", "99"])
