import doctest
import math
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils import rewards as R

PERFECT = "<reasoning>\nstep\n</reasoning>\n<answer>\n18\n</answer>\n"


def chat(text):
    return [{"role": "assistant", "content": text}]


def call(func, texts, answer=None):
    """Call a reward the way GRPOTrainer does, with both completion shapes, and check they agree."""
    kwargs = {"prompts": [[{"role": "user", "content": "q"}]] * len(texts), "answer": answer or ["18"] * len(texts)}
    as_strings = func(completions=texts, **kwargs)
    assert func(completions=[chat(t) for t in texts], **kwargs) == as_strings
    return as_strings


@pytest.mark.parametrize(
    "text, expected",
    [
        (PERFECT, 0.5),
        (PERFECT + "xyz", 0.5 - 3 * 0.001 - 3 * 0.001),  # 3 chars after "\n</answer>\n"; 4-1 after "\n</answer>"
        # No final newline: "\n</answer>\n" never occurs, so the study's rule charges the whole text (51 chars)
        # on the answer term, and -(0 - 1) * 0.001 on the last one.
        ("<reasoning>\nstep\n</reasoning>\n<answer>\n18\n</answer>", 0.5 - 51 * 0.001 + 0.001),
        ("<reasoning>step</reasoning><answer>18</answer>", 0.0),  # no newlines around tags
        (PERFECT + PERFECT, 0.0),  # every tag twice
        ("<reasoning>\nstep\n</reasoning>\n", 0.25),
        ("", 0.0),
    ],
)
def test_xmlcount_exact_values(text, expected):
    assert call(R.xmlcount_reward_func, [text]) == [pytest.approx(expected)]


@pytest.mark.parametrize(
    "text, soft, strict",
    [
        (PERFECT, 0.5, 0.5),
        (
            "<reasoning>\nline one\nline two\n</reasoning>\n<answer>\n18\n</answer>\n",
            0.5,
            0.5,
        ),  # multi-line needs DOTALL
        ("<reasoning>a</reasoning> <answer>18</answer>", 0.5, 0.0),  # loose format
        (PERFECT.rstrip("\n"), 0.5, 0.0),  # strict wants the final newline... or end of string before it
        (PERFECT + "extra", 0.5, 0.0),
        ("intro " + PERFECT, 0.0, 0.0),  # re.match anchors at the start
        ("18", 0.0, 0.0),
    ],
)
def test_format_rewards(text, soft, strict):
    assert call(R.soft_format_reward_func, [text]) == [soft]
    assert call(R.strict_format_reward_func, [text]) == [strict]


@pytest.mark.parametrize(
    "text, integer, correct",
    [
        (PERFECT, 0.5, 2.0),
        ("<answer>18.00</answer>", 0.0, 0.0),
        ("<answer>$18</answer>", 0.0, 0.0),
        ("<answer>-18</answer>", 0.0, 0.0),
        ("<answer>17</answer>", 0.5, 0.0),
        ("18", 0.5, 2.0),  # the study's extraction returns the whole text when there is no tag
        ("<answer>1</answer><answer>18</answer>", 0.5, 2.0),
    ],
)
def test_int_and_correctness(text, integer, correct):
    assert call(R.int_reward_func, [text]) == [integer]
    assert call(R.correctness_reward_func, [text]) == [
        correct / 2
    ]  # 0/1; the set's weight 2.0 makes it the study's 2.0


def test_numeric_correctness_is_the_opt_in_improvement():
    texts = ["<answer>18.00</answer>", "<answer>$18</answer>", "<answer>17</answer>"]
    assert call(R.numeric_correctness_reward_func, texts) == [1.0, 1.0, 0.0]
    assert call(R.correctness_reward_func, texts) == [0.0, 0.0, 0.0]


def test_cosine_length_values(tokenizer):
    reasoning = "<reasoning>\n" + "word " * 50 + "\n</reasoning>\n"
    length = len(tokenizer(reasoning)["input_ids"])
    right, wrong = reasoning + "<answer>\n18\n</answer>\n", reasoning + "<answer>\n17\n</answer>\n"
    expected = 5.0 * math.cos(length / 786 * math.pi / 2)
    penalty = R.make_cosine_length_reward(tokenizer, penalize_wrong=True)
    no_penalty = R.make_cosine_length_reward(tokenizer, penalize_wrong=False)
    assert call(penalty, [right, wrong]) == [pytest.approx(expected), pytest.approx(-expected)]
    assert call(no_penalty, [right, wrong]) == [pytest.approx(expected), 0.0]


def test_cosine_length_shape():
    assert R.cosine_length_score(0, True) == pytest.approx(5.0)
    assert R.cosine_length_score(786, True) == pytest.approx(0.0, abs=1e-12)
    assert R.cosine_length_score(5000, True) == pytest.approx(0.0, abs=1e-12)  # clipped at max_len
    assert R.cosine_length_score(0, False, penalize_wrong=True) == pytest.approx(-5.0)
    assert R.cosine_length_score(393, True) > R.cosine_length_score(600, True)  # shorter is better when right


def test_reward_sets_registry(tokenizer):
    def named(reward_set):
        return [(f.__name__, w) for f, w in R.build_rewards(reward_set, tokenizer)]

    fmt = [
        (name, 1.0)
        for name in ("xmlcount_reward_func", "soft_format_reward_func", "strict_format_reward_func", "int_reward_func")
    ]
    assert named("standard") == fmt + [("correctness_reward_func", 2.0)]
    cosine = fmt + [("cosine_length_reward_func", 1.0), ("correctness_reward_func", 1.0)]
    assert named("cosine_penalty") == named("cosine_no_penalty") == cosine
    assert named("standard_numeric") == fmt + [("numeric_correctness_reward_func", 2.0)]
    with pytest.raises(KeyError, match="Unknown reward set"):
        R.build_rewards("nope")
    with pytest.raises(ValueError, match="tokenizer"):
        R.build_rewards("cosine_penalty")


def test_weighted_total_is_the_studys_reward():
    """The study paid 2.0 per correct answer in the standard set and 1.0 beside the cosine reward."""
    perfect, wrong = PERFECT, PERFECT.replace("18", "17")
    funcs, weights = R.split_rewards(R.build_rewards("standard"))
    totals = [sum(w * f(completions=[t], answer=["18"])[0] for f, w in zip(funcs, weights)) for t in (perfect, wrong)]
    assert totals == [4.0, 2.0]


def test_split_rewards_gives_bare_functions_weight_one():
    funcs, weights = R.split_rewards([(R.int_reward_func, 2.0), R.xmlcount_reward_func])
    assert funcs == [R.int_reward_func, R.xmlcount_reward_func] and weights == [2.0, 1.0]


def test_docstring_examples_run():
    """Every built-in reward shows one good and one bad example call, and they hold."""
    result = doctest.testmod(R)
    assert result.failed == 0 and result.attempted >= 12


@pytest.mark.fault
def test_a_reward_that_raises_warns_once_and_scores_the_rest():
    calls = []

    @R.never_raises
    def picky(completions, answer, **kwargs):
        calls.append(len(completions))
        return [1.0 / int(a) for a in answer]

    with pytest.warns(RuntimeWarning, match="picky raised ZeroDivisionError"):
        assert picky(completions=["a", "b", "c"], answer=["2", "0", "4"]) == [0.5, 0.0, 0.25]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second failure is silent
        assert picky(completions=["a"], answer=["0"]) == [0.0]


MALFORMED = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(["<answer>", "</answer>", "<reasoning>", "</reasoning>", "\n", "18", " ", "é", "$"]),
        max_size=40,
    ).map("".join),
    st.none(),
    st.integers(),
    st.lists(
        st.dictionaries(st.sampled_from(["role", "content"]), st.one_of(st.text(max_size=50), st.none())), max_size=3
    ),
)
RANGES = {
    "xmlcount_reward_func": (-math.inf, 0.5),
    "soft_format_reward_func": (0.0, 0.5),
    "strict_format_reward_func": (0.0, 0.5),
    "int_reward_func": (0.0, 0.5),
    "correctness_reward_func": (0.0, 1.0),
    "numeric_correctness_reward_func": (0.0, 1.0),
    "cosine_length_reward_func": (-5.0, 5.0),
}


@settings(max_examples=150, deadline=None)
@given(
    completions=st.lists(MALFORMED, min_size=1, max_size=4),
    answer=st.one_of(st.text(max_size=5), st.none(), st.integers()),
)
@pytest.mark.fault
def test_no_reward_ever_raises_and_each_stays_in_range(tokenizer, completions, answer):
    funcs = {f.__name__: f for s in R.REWARD_SETS for f, _ in R.build_rewards(s, tokenizer)}
    for name, func in funcs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a built-in reward never even needs its guard
            values = func(completions=completions, answer=[answer] * len(completions), prompts=None)
        low, high = RANGES[name]
        assert len(values) == len(completions)
        assert all(isinstance(v, float) and low - 1e-9 <= v <= high + 1e-9 for v in values), (name, values)


def test_huge_completion_is_scored(tokenizer):
    huge = PERFECT + "x" * 200_000
    assert call(R.xmlcount_reward_func, [huge])[0] < -100
    assert call(R.strict_format_reward_func, [huge]) == [0.0]


def test_an_experiment_counts_reasoning_tokens_with_its_own_models_tokenizer(tokenizer):
    """Exp4 on SmolLM2 scores length in SmolLM2's tokens, not Qwen's: the same text has another length in each."""
    from utils.experiments import make_config
    from utils.model import load_tokenizer
    from utils.train import experiment_rewards

    text = "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. <answer>"
    smollm2 = load_tokenizer("smollm2-135m")
    assert R.reasoning_length(text, smollm2) != R.reasoning_length(text, tokenizer)
    cfg = make_config("exp4_cosine_no_penalty", model_name="smollm2-135m")
    [cosine] = [f for f, _ in experiment_rewards(cfg) if R.reward_name(f) == "cosine_length_reward_func"]
    strict = "<reasoning>\n" + text.split("<answer>")[0] + "\n</reasoning>\n<answer>\n10\n</answer>\n"
    expected = R.cosine_length_score(R.reasoning_length(strict, smollm2), True, cfg.cosine_max_length)
    assert cosine([[{"role": "assistant", "content": strict}]], answer=["10"]) == [pytest.approx(expected)]
