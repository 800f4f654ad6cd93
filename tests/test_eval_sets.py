"""The evaluation sets: GSM8K's test split and three out-of-distribution sets, bundled so they load offline."""

import pytest

from utils import runs
from utils.data import EVAL_SETS, OOD_SETS, SAMPLE_DATA_DIR, build_eval_dataset, eval_set, load_ood
from utils.grading import parse_value


@pytest.mark.parametrize("name, size", [("svamp", 1000), ("asdiv", 2096), ("mawps", 600)])
def test_each_ood_set_loads_offline_with_its_exact_size_and_numeric_golds(name, size):
    dataset = eval_set(name).load(None)
    assert len(dataset) == size == EVAL_SETS[name].size
    assert all(isinstance(q, str) and q for q in dataset["question"])
    assert all(parse_value(gold) is not None for gold in dataset["answer"])
    assert EVAL_SETS[name].headline_grader == "numeric"


def test_float_targets_become_the_answers_a_model_writes():
    golds = load_ood("svamp.jsonl")["answer"]
    assert golds[0] == "51" and all("." not in g for g in golds)  # SVAMP stores 51.0


def test_gsm8k_test_is_the_in_distribution_set():
    assert EVAL_SETS["gsm8k"].size == 1319 and EVAL_SETS["gsm8k"].headline_grader == "strict"
    assert len(build_eval_dataset("gsm8k", True, SAMPLE_DATA_DIR)) == 48
    assert OOD_SETS == ["svamp", "asdiv", "mawps"]


@pytest.mark.bad_input
def test_an_unknown_set_lists_the_available_ones():
    with pytest.raises(
        KeyError, match=r"Unknown evaluation set 'gsm8k_hard'; choose one of \['gsm8k', 'svamp', 'asdiv'"
    ):
        eval_set("gsm8k_hard")


@pytest.mark.bad_input
def test_a_corrupt_ood_line_names_the_file_and_line(tmp_path, monkeypatch):
    import utils.data as data

    (tmp_path / "svamp.jsonl").write_text('{"input": "q", "target": 3}\n{"input": "q", "target": "three"}\n')
    monkeypatch.setattr(data, "OOD_DATA_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"svamp.jsonl, line 2: expected the answer as a number in 'target'"):
        load_ood("svamp.jsonl")


@pytest.mark.slow
def test_evaluate_writes_per_set_files_and_records_the_set(tmp_path):
    from utils.evaluate import evaluate_all
    from utils.experiments import make_config
    from utils.model import load_model
    from utils.train import evaluate_baseline

    cfg = make_config(
        "exp2_oneshot",
        smoke=True,
        run_root=str(tmp_path),
        eval_limit=3,
        ood_eval_limit=2,
        eval_max_new_tokens=4,
        overrides=dict(sampled_eval_limit=0, harness_eval_limit=0),
    )
    model, tokenizer, backend = load_model(cfg)
    summaries = evaluate_all(cfg, model, tokenizer, tmp_path / "run", backend)
    assert list(summaries) == ["gsm8k", "svamp", "asdiv", "mawps"]
    assert [s["n"] for s in summaries.values()] == [3, 2, 2, 2]
    for name, summary in summaries.items():
        records, summary_file = runs.eval_files(name)
        assert runs.read_json(tmp_path / "run" / summary_file)["eval_set"] == name
        assert len(runs.read_rows(tmp_path / "run" / records)) == summary["n"]
    baseline = evaluate_baseline(cfg, model, tokenizer, backend)
    assert set(baseline) == set(summaries)
    skip_ood = make_config(
        "exp2_oneshot",
        smoke=True,
        run_root=str(tmp_path / "b"),
        ood_eval_limit=0,
        sampled_eval_limit=0,
        harness_eval_limit=0,
    )
    assert list(evaluate_baseline(skip_ood, model, tokenizer, backend)) == ["gsm8k"]


@pytest.mark.fault
@pytest.mark.slow
def test_the_baseline_is_reused_only_for_what_produced_it(tmp_path, capsys):
    """Another token limit, another data copy or more questions is another baseline; the same settings reuse it."""
    import shutil

    from utils.experiments import baseline_dir, make_config
    from utils.model import load_model
    from utils.train import evaluate_baseline

    settings = dict(smoke=True, run_root=str(tmp_path), eval_limit=2, ood_eval_limit=0, eval_max_new_tokens=4)
    settings.update(sampled_eval_limit=0, harness_eval_limit=0)  # the greedy baseline's identity is the point here
    cfg = make_config("exp2_oneshot", **settings)
    model, tokenizer, backend = load_model(cfg)
    first = evaluate_baseline(cfg, model, tokenizer, backend)["gsm8k"]
    assert evaluate_baseline(cfg, model, tokenizer, backend)["gsm8k"] == first
    assert "already evaluated" in capsys.readouterr().out

    longer = make_config("exp2_oneshot", **{**settings, "eval_max_new_tokens": 6})
    assert evaluate_baseline(longer, model, tokenizer, backend)["gsm8k"]["max_new_tokens"] == 6
    data = tmp_path / "edited"
    shutil.copytree(SAMPLE_DATA_DIR, data)
    rows = (data / "test.jsonl").read_text().splitlines()
    (data / "test.jsonl").write_text("\n".join([rows[1], rows[0], *rows[2:]]) + "\n")  # other questions first
    other_data = make_config("exp2_oneshot", **{**settings, "data_dir": str(data)})
    summary = evaluate_baseline(other_data, model, tokenizer, backend)["gsm8k"]
    assert summary["identity"]["questions_sha256"] != first["identity"]["questions_sha256"]
    assert "already evaluated" not in capsys.readouterr().out
    saved = runs.read_json(baseline_dir(cfg) / runs.EVAL_SUMMARY)
    assert saved["identity"] == summary["identity"]  # the files say what produced them
