"""The CPU study on the study's architecture, run end to end with the tiny model in its place: every part is written,
a rerun reuses every evaluation and trains nothing more, and the page renders what was measured. Checks with a known
answer: the strict-format variant and the windows the training curves are compared over."""

import json

import pytest

from utils import runs
from utils.scripts import qwen_study


def test_the_end_of_turn_variant_accepts_exactly_the_missing_final_newline():
    study = "<reasoning>\n9 * 2 = 18\n</reasoning>\n<answer>\n18\n</answer>\n"
    records = qwen_study.pd.DataFrame({"completion": [study, study[:-1], study[:-1] + " more", "18"],
                                       "format_strict": [True, False, False, False]})  # fmt: skip
    assert qwen_study.strict_variants(records) == {"n": 4, "study": 0.25, "end_of_turn": 0.5}


def test_the_reading_calls_a_change_a_change_only_past_chance():
    block = {"n": 200, "completion_tokens": {"a": 180.0, "b": 120.4, "truncated": [0.31, 0.05],
                                             "difference": {"mean": -59.6, "ci95": [-70.2, -49.0]}}}  # fmt: skip
    block["correct_numeric"] = {"a": 0.17, "b": 0.19, "mcnemar_p": 0.52}
    block["format_soft"] = {"a": 0.115, "b": 0.6, "mcnemar_p": 1e-9}
    assert qwen_study.change(block, "correct_numeric", "a", "b") == (
        "accuracy (numeric grader) 17% -> 19% (p = 0.52, not distinguishable from chance)")
    assert qwen_study.change(block, "format_soft", "a", "b") == "soft format rose from 12% to 60% (p = 1e-09)"
    assert qwen_study.change(block, "format_soft", "b", "a") == "soft format fell from 60% to 12% (p = 1e-09)"
    assert qwen_study.length_change(block, "a", "b") == (
        "completions got shorter, 180 -> 120 tokens (-60 [-70, -49]), cut at the limit 31% -> 5%")
    block["completion_tokens"]["difference"]["ci95"] = [-3.0, 2.0]
    assert "(-60 [-3, +2], not distinguishable from chance)" in qwen_study.length_change(block, "a", "b")


def test_the_gist_says_each_direction_once_where_all_agree_and_by_set_where_they_do_not():
    def block(strict_b, strict_p, low, high):
        return {"format_soft": {"a": 0.5, "b": 0.9, "mcnemar_p": 1e-6},
                "correct_strict": {"a": 0.3, "b": strict_b, "mcnemar_p": strict_p},
                "correct_numeric": {"a": 0.3, "b": 0.3, "mcnemar_p": 1.0},
                "completion_tokens": {"difference": {"ci95": [low, high]}}}  # fmt: skip

    blocks = {("exp2", "gsm8k"): block(0.1, 1e-4, -9, -2), ("exp4", "gsm8k"): block(0.25, 0.3, -9, -2),
              ("exp2", "mawps"): block(0.1, 1e-4, 1, 3), ("exp4", "mawps"): block(0.1, 1e-3, 1, 3)}  # fmt: skip
    assert qwen_study.directions(blocks, "a", "b") == (
        "soft format rose; completion length fell on GSM8K and rose on MultiArith; accuracy under the study's strict "
        "grader fell on GSM8K (exp2), MultiArith and did not change beyond chance on GSM8K (exp4); accuracy under the "
        "numeric grader did not change beyond chance")


def test_the_strict_format_reward_is_explained_only_when_the_variant_shows_why():
    held = {"gsm8k": {"n": 200, "study": 0.0, "end_of_turn": 0.42},
            "mawps": {"n": 200, "study": 0.0, "end_of_turn": 0.6}}
    result = {"experiments": {"exp2_oneshot": {"strict_format_in_training": {"share": 0.0},
                                               "strict_format_held_out": held}}}  # fmt: skip
    [line] = qwen_study.strict_format_reading(result)
    assert "paid on 0% of exp2_oneshot's training" in line and "up to 60% of" in line and "regex on 0%" in line
    result["experiments"]["exp2_oneshot"]["strict_format_in_training"]["share"] = 0.04
    [line] = qwen_study.strict_format_reading(result)
    assert "paid on 4% of exp2_oneshot's training" in line
    held["mawps"]["end_of_turn"] = held["gsm8k"]["end_of_turn"] = 0.0
    assert qwen_study.strict_format_reading(result) == []  # no evidence of the reason: nothing claimed


def test_the_kits_steps_are_compared_in_equal_windows_of_at_least_ten_steps():
    assert qwen_study.kit_windows(40) == [(1, 10), (11, 20), (21, 30), (31, 40), (1, 40)]
    assert qwen_study.kit_windows(12) == [(1, 12)] and qwen_study.kit_windows(9) == []


@pytest.mark.slow
@pytest.mark.fault
def test_the_study_runs_end_to_end_and_a_rerun_reuses_everything(tmp_path, monkeypatch):
    from utils.data import SAMPLE_DATA_DIR

    tiny = dict(model_name="tiny", max_steps=10, eval_limit=4, ood_eval_limit=4, eval_max_new_tokens=8,
                max_completion_length=8, save_steps=5, eval_batch_size=4, learning_rate=1e-3)  # fmt: skip
    monkeypatch.setattr(qwen_study, "QWEN_SETTINGS", {**qwen_study.QWEN_SETTINGS, **tiny})
    out = tmp_path / "chart" / "cpu_qwen.json"
    out.parent.mkdir()
    first = qwen_study.run_study(str(SAMPLE_DATA_DIR), None, str(tmp_path / "runs"), out)
    assert set(first["experiments"]) == {"exp2_oneshot", "exp4_cosine_no_penalty"}
    assert all(e["steps"] == 10 for e in first["experiments"].values())
    assert first["prompts_untrained"]["n"] == 4 and set(first["exp4_vs_exp2"]) == {"gsm8k", "mawps"}
    assert [w["steps"] for w in first["exp4_vs_exp2_training"]] == ["1-10"]
    assert len(first["seconds_by_part"]) == 6 and all(v > 0 for v in first["seconds_by_part"].values())
    summaries = sorted((tmp_path / "runs").rglob("*summary.json"))
    stamps = [p.stat().st_mtime_ns for p in summaries]
    second = qwen_study.run_study(str(SAMPLE_DATA_DIR), None, str(tmp_path / "runs"), out)
    assert [p.stat().st_mtime_ns for p in summaries] == stamps  # every evaluation reused
    strip = lambda r: json.dumps({k: v for k, v in r.items() if k != "provenance"}, sort_keys=True)  # noqa: E731
    assert strip(second) == strip(first)
    for name in ("exp2_oneshot", "exp4_cosine_no_penalty"):  # nothing trained twice
        run_dir = next((tmp_path / "runs").glob(f"{name}__*"))
        assert [row["step"] for row in runs.read_rows(run_dir / runs.LOG)] == list(range(1, 11))
    page = qwen_study.markdown(out)
    assert "**In words**" in page
    assert "- exp4_cosine_no_penalty after 10 GRPO steps against untrained, MultiArith (n = 4): " in page
    assert "**Exp4 vs Exp2, trained, on gsm8k**, n = 4 GSM8K test questions" in page
    from utils.scripts import report  # the front page says the same words once the study is published

    monkeypatch.setattr(qwen_study, "RESULT", out)
    headline = report.headline_markdown(report.study_comparison(report.load_study_runs()))
    assert "**The study's architecture on a CPU**: " in headline
    assert all(line in headline for line in qwen_study.gist(second))
    assert all((out.parent / f"cpu_qwen_{metric}.png").is_file() for metric in ("completion_length", "accuracy"))
