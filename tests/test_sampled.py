"""Sampled evaluation: pass@k and majority vote against brute force, length vs correctness against synthetic ground
truth, intervals against a direct resampling loop, and a resumed evaluation that draws what an uninterrupted one
would."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from utils.sampled import (
    length_effects,
    majority_at_k,
    majority_correct,
    paired_pass_at_k,
    pass_at_k,
)


@pytest.mark.parametrize("n", [1, 3, 5, 8])
def test_pass_at_k_equals_counting_every_subset(n):
    for c in range(n + 1):
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_majority_vote_and_its_tie_rule():
    right = {"18": True, "17": False, "16": False}
    assert majority_correct(["18", "18", "17"], right) == 1.0
    assert majority_correct(["17", "17", "18"], right) == 0.0
    assert majority_correct(["18", "17"], right) == 0.5  # a tie: the share of tied answers that are right
    assert majority_correct(["18", "17", "16"], right) == pytest.approx(1 / 3)
    assert majority_correct([None, "18", None], right) == 1.0  # samples without a number abstain
    assert majority_correct([None, None], right) == 0.0
    rng = np.random.default_rng(0)
    answers = ["18", "17", "17", "18"]
    assert majority_at_k(answers, right, 1, rng) == 0.5  # the mean over the four single samples
    # pairs: {18,17} four times (0.5 each), {18,18} once (1), {17,17} once (0) -> 3 / 6
    assert majority_at_k(answers, right, 2, rng) == pytest.approx(0.5)
    assert majority_at_k(answers, right, 4, rng) == 0.5


def test_samples_without_a_number_abstain_in_the_records_too():
    from utils.sampled import per_question

    rows = [("18", True), (None, False), (None, False), ("17", False), ("18", True), (None, False)]
    records = pd.DataFrame(
        [
            {"index": i // 3, "gold": "18", "answer": a, "correct_numeric": c, "correct_strict": c}
            for i, (a, c) in enumerate(rows)
        ]
    )
    questions = per_question(records, samples=3)
    assert list(questions["maj@3"]) == [1.0, 0.5]  # 18 the only number; then 17 and 18 tie
    assert list(questions["c_numeric"]) == [1, 1]
    assert questions["pass@1_numeric"].tolist() == pytest.approx([1 / 3, 1 / 3])


def synthetic(rng, questions=300, samples=8, within_effect=0.0, truncated_share=0.0, limit=400):
    """Samples where difficulty drives both: harder questions get longer reasoning and fewer right answers. Within a
    question, length is independent of correctness unless ``within_effect`` (tokens added to right answers)."""
    rows = []
    for index in range(questions):
        difficulty = rng.random()
        for sample in range(samples):
            correct = rng.random() < 1 - difficulty
            length = 50 + 200 * difficulty + rng.normal(0, 20) + within_effect * correct
            truncated = rng.random() < truncated_share
            if truncated:  # cut at the token limit: long and wrong by construction
                correct, length = False, limit
            rows.append(
                {
                    "index": index,
                    "sample": sample,
                    "gold": "1",
                    "reasoning_tokens": int(max(1, length)),
                    "truncated": truncated,
                    "correct_numeric": correct,
                    "correct_strict": correct,
                    "answer": "1" if correct else "2",
                }
            )
    return pd.DataFrame(rows)


def test_difficulty_alone_fools_the_naive_correlation_but_not_the_within_question_measures():
    effects = length_effects(synthetic(np.random.default_rng(0)))
    within, fit = effects["within_question_difference"], effects["conditional_logit"]
    assert within["ci95"][0] < 0 < within["ci95"][1] and within["wilcoxon_p"] > 0.05
    assert fit["ci95"][0] < 1 < fit["ci95"][1]
    naive = effects["across_questions_correlation"]
    assert naive["r"] < -0.8 and naive["ci95"][1] < 0  # clearly non-zero: it measures difficulty


def test_a_real_within_question_effect_is_found_with_its_sign():
    longer_is_right = length_effects(synthetic(np.random.default_rng(1), within_effect=30))
    assert longer_is_right["within_question_difference"]["ci95"][0] > 20
    assert longer_is_right["conditional_logit"]["ci95"][0] > 1
    shorter_is_right = length_effects(synthetic(np.random.default_rng(2), within_effect=-30))
    assert shorter_is_right["within_question_difference"]["ci95"][1] < -20
    assert shorter_is_right["conditional_logit"]["ci95"][1] < 1


def test_truncated_samples_manufacture_an_effect_that_leaving_them_out_removes():
    records = synthetic(np.random.default_rng(3), truncated_share=0.15)
    with_cut = length_effects(records)
    assert with_cut["within_question_difference"]["ci95"][1] < 0  # long-and-wrong by construction: "longer is wrong"
    without = length_effects(records[~records["truncated"]])
    assert without["within_question_difference"]["ci95"][0] < 0 < without["within_question_difference"]["ci95"][1]


def test_trained_minus_untrained_pass_at_k_is_paired_and_signed():
    rng = np.random.default_rng(4)
    untrained = synthetic(rng, questions=100, samples=4)
    trained = untrained.copy()
    trained["correct_numeric"] = True  # every sample right after training
    trained["answer"] = "1"
    paired = paired_pass_at_k(trained, untrained, samples=4)
    gain = 1 - untrained.groupby("index")["correct_numeric"].mean().mean()
    assert paired["questions"] == 100 and paired["pass@1"]["mean"] == pytest.approx(gain) and gain > 0
    assert paired["pass@4"]["mean"] <= paired["pass@1"]["mean"]  # pass@4 had less to gain
    assert paired["maj@4"]["ci95"][0] > 0


@pytest.mark.slow
@pytest.mark.fault
def test_an_interrupted_sampled_evaluation_resumes_to_the_same_samples(tmp_path, monkeypatch):
    from utils import runs
    from utils.experiments import make_config
    from utils.model import load_model
    from utils.sampled import sampled_evaluate

    cfg = make_config("exp2_oneshot", smoke=True, run_root=str(tmp_path), sampled_eval_limit=6, eval_batch_size=8)
    model, tokenizer, backend = load_model(cfg)
    whole = sampled_evaluate(cfg, model, tokenizer, tmp_path / "whole", backend, progress=False)
    real_append, written = runs.append_row, []

    def disconnect_after_ten_rows(path, row):
        if len(written) == 10:
            raise KeyboardInterrupt("runtime disconnected")
        written.append(row)
        real_append(path, row)

    monkeypatch.setattr(runs, "append_row", disconnect_after_ten_rows)
    with pytest.raises(KeyboardInterrupt):
        sampled_evaluate(cfg, model, tokenizer, tmp_path / "cut", backend, progress=False)
    monkeypatch.setattr(runs, "append_row", real_append)
    again = sampled_evaluate(cfg, model, tokenizer, tmp_path / "cut", backend, progress=False)
    files = runs.sampled_files("gsm8k")[0]

    def samples(folder):
        return sorted((r["index"], r["sample"], r["completion"]) for r in runs.read_rows(folder / files))

    assert samples(tmp_path / "cut") == samples(tmp_path / "whole") and len(samples(tmp_path / "whole")) == 6 * 4

    def metrics(summary):  # as JSON text: a NaN (no right samples here) equals itself there
        return json.dumps({k: v for k, v in summary.items() if k != "seconds"}, sort_keys=True)

    assert metrics(again) == metrics(whole)
