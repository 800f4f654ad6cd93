import json

import numpy as np
import pytest

from utils.analysis import compare_evals
from utils.logs import load_run_logs
from utils.study import STUDY_LOGS, claim_verdict, load_study_runs, penalty_evidence, study_comparison, summary_table


@pytest.fixture(scope="module")
def comparison():
    return study_comparison(load_study_runs())


def pair(comparison, difference):
    return next(p for p in comparison["pairs"] if p["difference"] == difference)


def window(pair, steps):
    return next(w for w in pair["windows"] if w["steps"] == steps)["metrics"]


def test_study_curves_reproduce_the_studys_chart_levels():
    """Over the first 1,418 steps the study's charts show ~145 vs ~118 tokens and ~0.40 vs ~0.385 accuracy."""
    table = summary_table(load_study_runs(), max_step=1418)
    standard, cosine = table.loc["grpo_1800"], table.loc["cot_limit_v1_penalty"]
    assert standard.mean_length == pytest.approx(145.24, abs=0.01) and cosine.mean_length == pytest.approx(
        118.0, abs=0.01
    )
    assert standard.mean_accuracy == pytest.approx(0.404, abs=0.001)
    assert cosine.mean_accuracy == pytest.approx(0.385, abs=0.001)


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
    from utils.analysis import between
    from utils.stats import paired_block_bootstrap
    from utils.study import study_experiments

    runs = study_experiments(load_study_runs())
    a, b = (between(runs[e], 401, 1418).set_index("step")["accuracy"] for e in ("Exp2", "Exp4"))
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


def test_load_run_logs_reads_tensorboard_trainer_state_and_kit_runs(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(tmp_path / "tb")
    for step, (correct, length) in enumerate([(0.5, 100), (1.0, 90), (2.0, 80)], start=1):
        writer.add_scalar("train/rewards/correctness_reward_func", correct, step)
        writer.add_scalar("train/completion_length", length, step)
    writer.close()
    tb = load_run_logs(tmp_path / "tb")
    assert tb["step"].tolist() == [1, 2, 3] and tb["accuracy"].tolist() == [0.25, 0.5, 1.0]  # the study's 2.0 scale

    state = {
        "log_history": [
            {"step": 1, "completion_length": 50, "rewards/accuracy_func": 0.5},
            {"step": 1, "train_runtime": 3},
        ]
    }
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    rows = load_run_logs(tmp_path / "trainer_state.json")[["step", "completion_length", "accuracy"]]
    assert rows.values.tolist() == [[1, 50, 0.5]]

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


def test_compare_evals_pairs_questions(tmp_path):
    def write(name, verdicts, tokens):
        folder = tmp_path / name
        folder.mkdir()
        rows = [
            {"index": i, "correct_numeric": v, "correct_strict": v, "completion_tokens": t}
            for i, (v, t) in enumerate(zip(verdicts, tokens))
        ]
        folder.joinpath("eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return folder

    a = write("a", [True] * 12 + [False] * 8, [100] * 20)
    b = write("b", [True] * 2 + [False] * 18, [80] * 20)
    result = compare_evals(a, b)  # B - A, like every difference the kit reports
    assert result["n"] == 20 and result["accuracy_difference"] == pytest.approx(-0.5)
    assert (result["only_a_correct"], result["only_b_correct"]) == (10, 0) and result["mcnemar_p_value"] < 0.01
    assert result["length_difference"]["difference"] == -20


def test_readme_and_study_comparison_are_generated_from_the_data():
    from utils.report import main

    assert main(["--check"]) == 0, (
        "README results or chart/study_comparison.json are stale: run python -m utils.report"
    )
