import json

import numpy as np
import pytest

from utils.logs import load_run_logs
from utils.study import STUDY_LOGS, claim_verdict, load_study_runs, penalty_evidence, study_comparison


@pytest.fixture(scope="module")
def comparison():
    return study_comparison(load_study_runs())


def pair(comparison, difference):
    return next(p for p in comparison["pairs"] if p["difference"] == difference)


def window(pair, steps):
    return next(w for w in pair["windows"] if w["steps"] == steps)["metrics"]


def test_study_curves_reproduce_the_studys_chart_levels(comparison):
    """Over the first 1,418 steps the study's charts show ~145 vs ~118 tokens and ~0.40 vs ~0.385 accuracy."""
    standard, cosine = comparison["runs"]["Exp2"], comparison["runs"]["Exp4"]
    assert standard["run"] == "grpo_1800" and cosine["run"] == "cot_limit_v1_penalty"
    assert standard["steps"] == cosine["steps"] == 1418
    assert standard["mean_completion_length"] == pytest.approx(145.24, abs=0.01)
    assert cosine["mean_completion_length"] == pytest.approx(118.0, abs=0.01)
    assert standard["mean_accuracy"] == pytest.approx(0.404, abs=0.001)
    assert cosine["mean_accuracy"] == pytest.approx(0.385, abs=0.001)


def test_penalty_is_identified_from_the_logs():
    evidence = penalty_evidence(load_study_runs())
    assert evidence.loc["cot_limit_v1_penalty", "cosine_reward_min"] >= 0  # never negative: no penalty
    assert evidence.loc["cot_limit_failed_penalty", "cosine_reward_min"] < -4  # Exp3: penalised
    assert evidence.loc["cot_limit_failed_penalty", "accuracy_logged"]


def test_exp3_saw_the_same_questions_as_exp2_and_exp4():
    """Same seed, same prompts: the first two steps are identical, which is what makes the comparison paired."""
    study = load_study_runs()
    first_steps = {
        run: study[run]["completion_length"].head(2).tolist()
        for run in ("grpo_1800", "cot_limit_failed_penalty", "cot_limit_v1_penalty", "cot_limit_v0_without_oneshot")
    }
    assert len({tuple(v) for v in first_steps.values()}) == 1


def test_paired_differences_match_an_independent_reanalysis(comparison):
    """A paired circular bootstrap over steps 401-1418 gives about -0.021 [-0.034, -0.008] for accuracy and about
    [-37.6, -29.6] tokens for length."""
    late = window(pair(comparison, "Exp4 - Exp2"), "401-1418")
    assert late["accuracy"]["difference"] == pytest.approx(-0.021, abs=0.001)
    assert late["accuracy"]["ci95"] == pytest.approx([-0.034, -0.008], abs=0.0015)
    assert late["completion_length"]["ci95"] == pytest.approx([-37.6, -29.6], abs=1.0)
    early, later = (
        window(pair(comparison, "Exp4 - Exp2"), "401-800"),
        window(pair(comparison, "Exp4 - Exp2"), "801-1418"),
    )
    assert early["accuracy"]["difference"] == pytest.approx(-0.04, abs=0.005) and early["accuracy"]["ci95"][1] < 0
    assert later["accuracy"]["ci95"][0] < 0 < later["accuracy"]["ci95"][1]  # not significant late in training


def test_intervals_are_steady_across_bootstrap_seeds():
    from utils.stats import paired_block_bootstrap
    from utils.study import steps_between, study_experiments

    runs = study_experiments(load_study_runs())
    a, b = (steps_between(runs[e], 401, 1418).set_index("step")["accuracy"] for e in ("Exp2", "Exp4"))
    ends = np.array(
        [paired_block_bootstrap({"accuracy": b - a}, seed=seed)["metrics"]["accuracy"]["ci95"] for seed in range(3)]
    )
    assert (ends.max(axis=0) - ends.min(axis=0) < 0.001).all()


def test_exp3_was_not_less_accurate(comparison):
    """The study said the penalty over-penalised and accuracy dropped; over steps 1-1100 its logs show the opposite."""
    means = pair(comparison, "Exp3 - Exp2")["means_steps_1_to_last"]
    assert means["Exp3"]["accuracy"] == pytest.approx(0.406, abs=0.002)
    assert means["Exp2"]["accuracy"] == pytest.approx(0.391, abs=0.002)
    assert claim_verdict(pair(comparison, "Exp3 - Exp2"), "accuracy", -1).startswith("contradicted")
    assert claim_verdict(pair(comparison, "Exp3 - Exp4"), "accuracy", -1).startswith("contradicted")
    assert claim_verdict(pair(comparison, "Exp4 - Exp2"), "completion_length", -1).startswith("supported in")


def test_load_run_logs_reads_a_kit_run_in_the_studys_columns(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    row = {
        "step": 1,
        "completions/mean_length": 7.0,
        "correct_frac_strict": 0.25,
        "rewards/correctness_reward_func/mean": 0.25,
        "rewards/correctness_reward_func/std": 0.1,
    }
    (run / "log.jsonl").write_text(json.dumps(row) + "\n")
    kit = load_run_logs(run)
    assert (
        kit.loc[0, "completion_length"] == 7.0 and kit.loc[0, "accuracy"] == 0.25 and "correctness_reward_func" in kit
    )

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no log.jsonl"):
        load_run_logs(tmp_path / "empty")


def test_study_csv_is_committed_small():
    assert STUDY_LOGS.exists() and STUDY_LOGS.stat().st_size < 2_000_000


def test_readme_and_study_comparison_are_generated_from_the_data():
    from utils.scripts.report import main

    assert main(["--check"]) == 0, (
        "README results or chart/study_comparison.json are stale: run python -m utils.scripts.report"
    )
