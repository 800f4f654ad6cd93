"""A saved evaluation is reused only for exactly what it evaluated (questions, prompt, token limit, weights), so a
rerun skips finished work and never reports another setting's numbers. Checked on what was evaluated, not on names."""

import dataclasses

import pytest
import torch

from utils import runs
from utils.analysis import read_eval
from utils.evaluate import evaluate_all
from utils.experiments import baseline_dir, make_config
from utils.model import load_model
from utils.train import evaluate_baseline


@pytest.fixture
def tiny(tmp_path):
    cfg = make_config("exp2_oneshot", smoke=True, run_root=str(tmp_path), eval_limit=4, ood_eval_limit=0,
                      sampled_eval_limit=0, harness_eval_limit=0, eval_max_new_tokens=6)  # fmt: skip
    return cfg, *load_model(cfg)


def stamp(folder):
    return (folder / runs.EVAL_SUMMARY).stat().st_mtime_ns


@pytest.mark.fault
def test_a_baseline_is_reused_for_its_settings_and_evaluated_again_for_others(tiny):
    cfg, model, tokenizer, loaded = tiny
    evaluate_baseline(cfg, model, tokenizer, loaded)
    folder = baseline_dir(cfg)
    before = stamp(folder)
    evaluate_baseline(cfg, model, tokenizer, loaded)
    assert stamp(folder) == before  # the same evaluation: reused
    for changed in (dict(eval_max_new_tokens=9), dict(eval_limit=3)):
        other = dataclasses.replace(cfg, **changed)
        assert baseline_dir(other) == folder  # the same folder: only its contents say what was evaluated
        evaluate_baseline(other, model, tokenizer, loaded)
        records = read_eval(folder)
        assert len(records) == other.eval_limit
        assert records["completion_tokens"].max() == other.eval_max_new_tokens  # random weights run to the limit
        assert runs.read_json(folder / runs.EVAL_SUMMARY)["identity"]["max_new_tokens"] == other.eval_max_new_tokens


@pytest.mark.fault
def test_a_trained_evaluation_is_reused_only_for_the_adapter_it_scored(tiny, tmp_path):
    cfg, model, tokenizer, loaded = tiny
    adapter, out = tmp_path / "adapter", tmp_path / "trained"
    model.save_pretrained(adapter)
    evaluate_all(cfg, model, tokenizer, out, loaded, adapter)
    before = stamp(out)
    evaluate_all(cfg, model, tokenizer, out, loaded, adapter)
    assert stamp(out) == before
    with torch.no_grad():  # more training: other weights in the adapter folder
        next(p for name, p in model.named_parameters() if "lora_B" in name).add_(0.5)
    model.save_pretrained(adapter)
    evaluate_all(cfg, model, tokenizer, out, loaded, adapter)
    assert stamp(out) != before
