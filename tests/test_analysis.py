import json

import pytest

from utils.analysis import STUDY_LOGS, block_bootstrap_difference, compare_evals, load_run_logs, load_study_runs, penalty_evidence, summary_table


def test_study_curves_reproduce_the_studys_chart_levels():
    """Over the first 1,418 steps the study's charts show ~145 vs ~118 tokens and ~0.40 vs ~0.385 accuracy."""
    table = summary_table(load_study_runs(), max_step=1418)
    standard, cosine = table.loc["grpo_1800"], table.loc["cot_limit_v1_penalty"]
    assert standard.mean_length == pytest.approx(145, abs=1.5) and cosine.mean_length == pytest.approx(118, abs=1.5)
    assert standard.mean_accuracy == pytest.approx(0.40, abs=0.01) and cosine.mean_accuracy == pytest.approx(0.385, abs=0.01)


def test_penalty_is_identified_from_the_logs():
    evidence = penalty_evidence(load_study_runs())
    assert evidence.loc["cot_limit_v1_penalty", "cosine_reward_min"] >= 0  # never negative: no penalty
    assert evidence.loc["cot_limit_v0_without_oneshot", "cosine_reward_min"] < -4


def test_load_run_logs_reads_tensorboard_trainer_state_and_kit_runs(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(tmp_path / "tb")
    for step, (correct, length) in enumerate([(0.5, 100), (1.0, 90), (2.0, 80)], start=1):
        writer.add_scalar("train/rewards/correctness_reward_func", correct, step)
        writer.add_scalar("train/completion_length", length, step)
    writer.close()
    tb = load_run_logs(tmp_path / "tb")
    assert tb["step"].tolist() == [1, 2, 3] and tb["accuracy"].tolist() == [0.25, 0.5, 1.0]

    state = {"log_history": [{"step": 1, "completion_length": 50, "rewards/accuracy_func": 0.5}, {"step": 1, "train_runtime": 3}]}
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    assert load_run_logs(tmp_path / "trainer_state.json")[["step", "completion_length", "accuracy"]].values.tolist() == [[1, 50, 0.5]]

    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text(json.dumps({"step": 1, "completions/mean_length": 7.0, "correct_frac_strict": 0.25, "rewards/correctness_reward_func/mean": 0.5, "rewards/correctness_reward_func/std": 0.1}) + "\n")
    kit = load_run_logs(run)
    assert kit.loc[0, "completion_length"] == 7.0 and kit.loc[0, "accuracy"] == 0.25 and "correctness_reward_func" in kit

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no log.jsonl"):
        load_run_logs(tmp_path / "empty")


def test_study_csv_is_committed_small():
    assert STUDY_LOGS.exists() and STUDY_LOGS.stat().st_size < 2_000_000


def test_compare_evals_pairs_questions(tmp_path):
    def write(name, verdicts, tokens):
        folder = tmp_path / name
        folder.mkdir()
        folder.joinpath("eval.jsonl").write_text("".join(json.dumps({"index": i, "correct_numeric": v, "correct_strict": v, "completion_tokens": t}) + "\n" for i, (v, t) in enumerate(zip(verdicts, tokens))))
        return folder

    a = write("a", [True] * 12 + [False] * 8, [100] * 20)
    b = write("b", [True] * 2 + [False] * 18, [80] * 20)
    result = compare_evals(a, b)
    assert result["n"] == 20 and result["accuracy_difference"] == pytest.approx(0.5)
    assert (result["only_a_correct"], result["only_b_correct"]) == (10, 0) and result["mcnemar_p_value"] < 0.01
    assert result["length_difference"]["difference"] == 20


def test_block_bootstrap_difference_sign():
    result = block_bootstrap_difference([10.0] * 300, [12.0] * 300)
    assert result["difference"] == -2.0 and result["ci95_high"] < 0


def test_readme_results_are_generated_from_the_data():
    from utils.report import main

    assert main(["--check"]) == 0, "README results are stale: run python -m utils.report"
