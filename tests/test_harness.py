"""GSM8K through lm-evaluation-harness: the real lm_eval code path on the tiny model, offline, with provenance."""

import pandas as pd
import pytest

from utils import runs
from utils.experiments import make_config
from utils.harness import comparable_table, cross_check, gsm8k_source, harness_reading


def test_the_cross_check_finds_where_the_graders_part():
    """Same completions, two graders: lm-eval's exact match after its flexible extraction, and the kit's value."""
    samples = pd.DataFrame(
        [
            dict(
                protocol="gsm8k 5-shot",
                filter="flexible-extract",
                gold="18",
                completion="So 18.",
                extracted="18.",
                correct=True,
            ),
            dict(
                protocol="gsm8k 5-shot",
                filter="flexible-extract",
                gold="18",
                completion="It is 18.00 dollars.",
                extracted="18.00",
                correct=False,
            ),  # lm-eval: "18.00" != "18"; the kit: the same value
            dict(
                protocol="gsm8k 5-shot",
                filter="strict-match",
                gold="18",
                completion="x",
                extracted="[invalid]",
                correct=False,
            ),  # another filter: not compared
        ]
    )
    check = cross_check(samples)
    assert (check["completions"], check["disagreements"]) == (2, 1) and check["rate"] == 0.5
    assert check["examples"][0]["lm_eval_extracted"] == "18.00" and check["examples"][0]["kit_numeric"] is True


@pytest.mark.bad_input
def test_offline_without_a_local_copy_says_what_to_do(monkeypatch, tmp_path):
    import utils.data as data

    monkeypatch.setattr(data, "LOCAL_COPY_DIR", tmp_path / "absent")
    monkeypatch.delenv("GSM8K_DIR", raising=False)
    with pytest.raises(RuntimeError, match="cannot be reached.*run notebook 00.*HARNESS_EVAL_LIMIT = 0"):
        gsm8k_source(make_config("exp2_oneshot"))


@pytest.mark.slow
def test_the_tiny_model_goes_through_lm_eval_offline_and_the_report_reads_it(tmp_path):
    from utils.harness import RESULTS, SAMPLES, harness_evaluate
    from utils.model import load_model

    cfg = make_config("exp2_oneshot", smoke=True, run_root=str(tmp_path), harness_eval_limit=3)
    model, tokenizer, backend = load_model(cfg)
    report = harness_evaluate(cfg, model, tokenizer, cfg.run_dir, backend)
    saved = runs.read_json(cfg.run_dir / RESULTS)
    assert saved["lm_eval_version"] == report["lm_eval_version"] and saved["lm_eval_version"].startswith("0.4")
    for protocol, summary in saved["protocols"].items():
        assert summary["task_version"] == 3.0 and summary["shots"] in (5, 8)  # lm-eval's own tasks, unchanged
        assert [f["name"] for f in summary["filter_definitions"]] == ["strict-match", "flexible-extract"]
        assert all(f["n"] == 3 and len(f["ci95"]) == 2 for f in summary["filters"].values())
        assert summary["data"].startswith("local copy")  # offline: the kit's GSM8K sample, not the hub
    assert len(runs.read_rows(cfg.run_dir / SAMPLES)) == 2 * 2 * 3  # protocols x filters x questions
    assert "lm-evaluation-harness 0.4" in harness_reading(saved)
    cfg.save(cfg.run_dir / runs.CONFIG)  # a trained run's folder, for the report
    runs.write_rows(cfg.run_dir / runs.LOG, [{"step": 1}])
    runs.write_json(cfg.run_dir / runs.EVAL_SUMMARY, {"accuracy_strict": 0.0, "accuracy_numeric": 0.25})
    table = comparable_table(tmp_path)
    row = table.loc["exp2_oneshot__smoke"]
    assert row["questions"] == 3 and row["kit prompt, numeric grader"] == 0.25
    assert "gsm8k 5-shot: flexible-extract" in table.columns


@pytest.mark.slow
@pytest.mark.bad_input
@pytest.mark.parametrize("folder", ["My Drive: v2", "data #2", "it's \"quoted\"", "données ünï"])
def test_the_harness_reads_data_and_writes_runs_under_any_folder_name_a_user_can_make(tmp_path, folder):
    import shutil

    from utils.data import SAMPLE_DATA_DIR
    from utils.harness import RESULTS, harness_evaluate
    from utils.model import load_model

    data_dir = tmp_path / folder / "gsm8k"
    shutil.copytree(SAMPLE_DATA_DIR, data_dir)
    cfg = make_config("exp2_oneshot", smoke=True, run_root=str(tmp_path / folder / "runs"), harness_eval_limit=2,
                      data_dir=str(data_dir), eval_max_new_tokens=8)  # fmt: skip
    model, tokenizer, backend = load_model(cfg)
    harness_evaluate(cfg, model, tokenizer, cfg.run_dir, backend)
    saved = runs.read_json(cfg.run_dir / RESULTS)
    assert all(f["n"] == 2 for s in saved["protocols"].values() for f in s["filters"].values())
