"""Late failures moved to the config cell, and a model cache that heals itself: each a mistake or an accident a user
meets, with a message naming the field or file, and nothing lost or left behind."""

import dataclasses
import errno

import pytest

from utils.experiments import TRL_CHOICES, make_config
from utils.model_cache import MANIFEST, cache_damage, materialize_random_model


@pytest.fixture
def built(tmp_path):
    """The tiny random model built into a cache folder; returns (folder, its weights' bytes)."""
    import utils.model_cache as cache

    folder = tmp_path / "cache" / "tiny-seed0"
    materialize_random_model("tiny", folder)
    cache._verified.discard(folder)  # a later session: the folder is checked again
    return folder, (folder / "model.safetensors").read_bytes()


@pytest.mark.fault
@pytest.mark.parametrize("damage, named", [
    (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:1000]), "bytes, not"),
    (lambda f: (f / "model.safetensors").write_bytes(b""), "model.safetensors has 0 bytes"),
    (lambda f: (f / "config.json").unlink(), "config.json missing"),
    (lambda f: (f / MANIFEST).unlink(), f"no {MANIFEST}"),
    (lambda f: (f / "config.json").write_text((f / "config.json").read_text().replace("4", "5")),
     "config.json does not match its checksum"),
])  # fmt: skip
def test_a_damaged_model_cache_is_named_and_rebuilt_from_its_source(built, capsys, damage, named):
    import utils.model_cache as cache

    folder, weights = built
    damage(folder)
    assert named in cache_damage(folder)
    assert materialize_random_model("tiny", folder) == str(folder)
    out = capsys.readouterr().out
    assert f"The model cache {folder} is damaged" in out and named in out and out.count("\n") == 1
    assert cache_damage(folder) is None and (folder / "model.safetensors").read_bytes() == weights  # same seed
    cache._verified.discard(folder)
    materialize_random_model("tiny", folder)
    assert "damaged" not in capsys.readouterr().out  # healed: no rebuild the next time


@pytest.mark.fault
def test_a_disk_that_fills_while_the_cache_is_built_leaves_no_partial_folder(tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        materialize_random_model("tiny", tmp_path / "cache" / "tiny-seed0")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


@pytest.mark.bad_input
def test_a_run_root_that_cannot_take_files_is_refused_in_the_config_cell(tmp_path):
    a_file = tmp_path / "hostname"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match=rf"run_root='{a_file}/runs': run folders cannot be written there \(Not a "
                                         r"directory.*RUN_ROOT in the notebook"):  # fmt: skip
        make_config("exp2_oneshot", smoke=True, run_root=str(a_file / "runs"))
    cfg = make_config("exp2_oneshot", smoke=True, run_root=str(tmp_path / "new" / "runs"))
    assert (tmp_path / "new" / "runs").is_dir() and not list((tmp_path / "new" / "runs").iterdir())  # probe removed
    assert cfg.run_root == str(tmp_path / "new" / "runs")


@pytest.mark.bad_input
@pytest.mark.parametrize("trl_args, message", [
    ({"scale_rewards": "yes"}, r"\['scale_rewards'\]='yes': TRL accepts 'group', 'batch', 'none', True, False"),
    ({"vllm_mode": "colocated"}, r"trl_args\['vllm_mode'\]='colocated': .* \(did you mean 'colocate'\?\)"),
    ({"importance_sampling_level": "sentence"}, r"TRL accepts 'token', 'sequence'"),
])  # fmt: skip
def test_a_trl_argument_outside_its_choices_is_refused_in_the_config_cell(trl_args, message):
    with pytest.raises(ValueError, match=message):
        make_config("exp2_oneshot", trl_args=trl_args)
    for accepted in ("batch", False):
        assert make_config("exp2_oneshot", trl_args={"scale_rewards": accepted}).trl_args["scale_rewards"] == accepted


def test_every_listed_choice_is_one_the_installed_trl_documents():
    from trl import GRPOConfig

    help_texts = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(GRPOConfig)}
    for name, choices in TRL_CHOICES.items():
        assert name in help_texts, name
        for choice in choices:
            assert (f"{choice}" if isinstance(choice, bool) else choice) in help_texts[name], (name, choice)


@pytest.mark.bad_input
@pytest.mark.parametrize("settings, message", [
    (dict(report_to="wandb"), r"report_to='wandb' needs wandb: pip install wandb, or report_to='none'"),
    (dict(report_to="trackio"), r"report_to='trackio' needs trackio: pip install trackio"),
    (dict(trl_args={"use_vllm": True}), r"trl_args\['use_vllm'\]=True needs vLLM: pip install -r requirements-vl"),
])  # fmt: skip
def test_an_integration_without_its_package_is_refused_with_the_install_line(monkeypatch, settings, message):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("wandb", "trackio", "vllm") else real(name, *a))  # fmt: skip
    with pytest.raises(ValueError, match=message):
        make_config("exp2_oneshot", **settings)
