import random

import numpy as np
import pytest

from utils import rewards as R
from utils.data import SAMPLE_DATA_DIR, build_dataset
from utils.reward_lab import (
    RewardCheckError,
    check_reward_funcs,
    length_curves,
    plot_reward_shares,
    reward_table,
)


@pytest.mark.parametrize("reward_set", sorted(R.REWARD_SETS))
def test_registry_reward_sets_pass_the_lab(reward_set, tokenizer):
    dataset = build_dataset("train", one_shot=True, data_dir=SAMPLE_DATA_DIR, limit=4)
    check_reward_funcs(R.build_rewards(reward_set, tokenizer), dataset)


def raises_on_empty(completions, **kwargs):
    return [1.0 / len(c[0]["content"]) for c in completions]


def wrong_count(completions, **kwargs):
    return [1.0]


def returns_strings(completions, **kwargs):
    return ["1.0" for _ in completions]


def needs_missing_column(completions, difficulty, **kwargs):
    return [0.0 for _ in completions]


def noisy(completions, **kwargs):
    return [random.random() for _ in completions]


@pytest.mark.parametrize(
    "func, message",
    [
        (raises_on_empty, r"'raises_on_empty' raised ZeroDivisionError.* on the completion ''"),
        (wrong_count, r"'wrong_count' returned 1 values for 11 completions"),
        (returns_strings, r"'returns_strings' returned '1.0' \(str\)"),
        (
            needs_missing_column,
            r"'needs_missing_column' expects the column\(s\) \['difficulty'\], which the dataset lacks",
        ),
        (noisy, r"'noisy' gave different values .* deterministic"),
    ],
)
@pytest.mark.bad_input
def test_lab_catches_broken_rewards_with_a_clear_message(func, message):
    with pytest.raises(RewardCheckError, match=message):
        check_reward_funcs([R.xmlcount_reward_func, func])


def test_none_is_an_accepted_value():
    check_reward_funcs([lambda completions, **kw: [None] * len(completions)])


def numpy_rewards(completions, **kwargs):
    kinds = [np.float32(0.5), np.float64(1.0), np.int64(1), True, None, 0]
    return [kinds[len(c[0]["content"]) % len(kinds)] for c in completions]


def returns_pairs(completions, **kwargs):
    return [[1.0, 2.0] for _ in completions]


@pytest.mark.bad_input
def test_lab_accepts_what_grpo_trainer_accepts():
    """TRL turns None into NaN and the rest into a float tensor: numpy numbers are fine, lists are not."""
    check_reward_funcs([numpy_rewards])
    with pytest.raises(RewardCheckError, match=r"'returns_pairs' returned \[1.0, 2.0\] \(list\)"):
        check_reward_funcs([returns_pairs])


def test_canned_table_has_the_studys_exact_values():
    table = reward_table(R.build_rewards("standard"))
    perfect = table.loc["perfect format, correct"]
    assert perfect.to_dict() == {
        "xmlcount_reward_func": 0.5,
        "soft_format_reward_func": 0.5,
        "strict_format_reward_func": 0.5,
        "int_reward_func": 0.5,
        "correctness_reward_func": 1.0,
        "total": 4.0,
    }  # correctness weighs 2.0
    assert table.loc["perfect format, wrong", "correctness_reward_func"] == 0.0
    assert table.loc["correct, loose format"].to_dict() == pytest.approx(
        {
            "xmlcount_reward_func": 0.0,
            "soft_format_reward_func": 0.5,
            "strict_format_reward_func": 0.0,
            "int_reward_func": 0.5,
            "correctness_reward_func": 1.0,
            "total": 3.0,
        }
    )
    trailing = len("I hope this helps! Let me know if you have more questions.")
    assert table.loc["correct, trailing text", "xmlcount_reward_func"] == pytest.approx(0.5 - 2 * trailing * 0.001)
    assert table.loc["answer written $18", "correctness_reward_func"] == 0.0  # the study's strict test
    assert table.loc["answer written 18.00", "int_reward_func"] == 0.0
    assert (table.loc["empty"] == 0).all()


def test_table_scores_user_completions_and_custom_rewards():
    def shorter_is_better(completions, **kwargs):
        return [-len(c[0]["content"]) / 100 for c in completions]

    completions = ["<answer>\n18\n</answer>", {"completion": "17", "answer": "17", "label": "mine"}]
    table = reward_table([(R.correctness_reward_func, 2.0), shorter_is_better], completions)
    assert list(table.columns) == ["correctness_reward_func", "shorter_is_better", "total"]
    assert table.loc["mine", "correctness_reward_func"] == 1.0 and table.loc["#0", "correctness_reward_func"] == 1.0
    assert table.loc["mine", "total"] == pytest.approx(2.0 - 0.02)


def test_length_curves_show_the_penalty(tokenizer):
    [(penalty, _)] = R.build_rewards("cosine_penalty", tokenizer)[4:5]
    [(no_penalty, _)] = R.build_rewards("cosine_no_penalty", tokenizer)[4:5]
    no_penalty.__name__ = "cosine_without_penalty"  # two rewards need two names
    curves = length_curves([penalty, no_penalty], lengths=[0, 400, 800])
    wrong = curves[curves.answer == "wrong"].groupby("reward")["value"].apply(list).to_dict()
    assert wrong["cosine_length_reward_func"][0] < -4.9  # penalty: wrong answers start near -5 ...
    assert wrong["cosine_without_penalty"] == [0.0, 0.0, 0.0]
    right = curves[(curves.answer == "correct") & (curves.reasoning_tokens == 800)]["value"]
    assert (right.abs() < 0.2).all()  # ... and correct answers decay to ~0 at max_len


def test_reward_shares_flag_a_reward_that_never_fires():
    table = reward_table([R.correctness_reward_func, lambda completions, **kw: [0.0] * len(completions)])
    assert "<lambda>" in plot_reward_shares(table).get_title()


@pytest.mark.bad_input
def test_the_lab_passes_what_training_passes_so_valid_rewards_pass():
    """Rewards that read another dataset column or the trainer's state are valid: the lab must not reject them."""
    from utils.experiments import make_config
    from utils.reward_lab import training_rows

    def longer_than_the_reference(completions, solution, **kwargs):
        return [float(len(c[0]["content"]) > len(s)) for c, s in zip(completions, solution)]

    def anneals(completions, trainer_state, **kwargs):
        return [1.0 - trainer_state.global_step / trainer_state.max_steps] * len(completions)

    check_reward_funcs([longer_than_the_reference, anneals], training_rows(make_config("exp2_oneshot", smoke=True)))


@pytest.mark.bad_input
def test_a_reward_returning_a_dict_is_refused():
    def scores_by_index(completions, **kwargs):
        return {i: 0.0 for i in range(len(completions))}

    with pytest.raises(RewardCheckError, match=r"'scores_by_index' returned a dict .*Expected: a list with one float"):
        check_reward_funcs([scores_by_index])


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "rewards, error, message",
    [
        ([(2.0, R.correctness_reward_func)], TypeError, r"is written \(weight, function\): write it as "),
        ([(R.correctness_reward_func, None)], TypeError, r"correctness_reward_func has the weight None: give it a "),
        ([(R.int_reward_func, "2")], TypeError, r"int_reward_func has the weight '2'"),
        ([R.int_reward_func, (R.int_reward_func, 2.0)], ValueError, r"Two rewards are named int_reward_func: .*own"),
        ([lambda completions, **kw: [0.0], lambda completions, **kw: [1.0]], ValueError, r"named <lambda>"),
    ],
)
def test_a_reward_cell_mistake_names_the_reward(rewards, error, message):
    with pytest.raises(error, match=message):
        check_reward_funcs(rewards)
