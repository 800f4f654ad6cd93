"""Reward functions with TRL's signature, and the one registry of reward sets.

Each reward takes ``completions`` as ``GRPOTrainer`` passes them (chat messages ``[{"role": "assistant",
"content": ...}]``, or plain strings) plus dataset columns as keywords (``answer`` is the gold), and returns one float
per completion. A reward set is a list of ``(function, weight)`` pairs. The weights go to TRL as
``GRPOConfig.reward_weights``: the total reward is the weighted sum, exactly the study's, and each logged
``rewards/<name>/mean`` is the function's own value (for ``correctness_reward_func``: the share of correct
completions).

The defaults reproduce the study exactly; ``numeric_correctness_reward_func`` and the ``standard_numeric`` set are this
kit's opt-in improvement (``18.00`` and ``$18`` count as 18).
"""

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from utils.grading import (
    SOFT_FORMAT_RE,
    STRICT_FORMAT_END_OF_TURN_RE,
    STRICT_FORMAT_RE,
    extract_xml_answer,
    is_correct,
    is_correct_strict,
)

STUDY_COMPLETION_TOKENS = 786  # the study's max_completion_length, and its cosine reward's token budget


def completion_text(completion) -> str:
    """The text of one completion in either shape TRL uses; anything else is the empty string."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        contents = (m.get("content") for m in completion if isinstance(m, dict))
        return "".join(c for c in contents if isinstance(c, str))
    return ""


def completion_texts(completions) -> list[str]:
    return [completion_text(c) for c in completions]


def reward_name(func) -> str:
    """The name TRL logs a reward under (``rewards/<name>/mean``)."""
    return getattr(func, "__name__", type(func).__name__)


def never_raises(func):
    """Keep one malformed completion from killing a run: when ``func`` raises, warn once with the exception, then
    score the completions one by one, 0.0 for each it still fails on."""
    warned = False

    @functools.wraps(func)
    def guarded(completions, **kwargs):
        nonlocal warned
        try:
            return func(completions, **kwargs)
        except Exception as error:
            if not warned:
                warned = True
                warnings.warn(
                    f"Reward {func.__name__} raised {type(error).__name__}: {error}. The completions it fails on "
                    "score 0.0 (this warning is shown once).",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return [_score_alone(func, completions, kwargs, i) for i in range(len(completions))]

    return guarded


def _score_alone(func, completions, kwargs, i) -> float:
    columns = {k: v[i : i + 1] if isinstance(v, list) and len(v) == len(completions) else v for k, v in kwargs.items()}
    try:
        return float(func(completions[i : i + 1], **columns)[0])
    except Exception:
        return 0.0


def count_xml(text: str) -> float:
    """0.125 per tag line present exactly once, minus 0.001 per character of trailing text (the study's rule, with its
    quirk: without a final ``\\n</answer>\\n`` the whole text counts as trailing on the answer term)."""
    count = 0.0
    if text.count("<reasoning>\n") == 1:
        count += 0.125
    if text.count("\n</reasoning>\n") == 1:
        count += 0.125
    if text.count("\n<answer>\n") == 1:
        count += 0.125
        count -= len(text.split("\n</answer>\n")[-1]) * 0.001
    if text.count("\n</answer>") == 1:
        count += 0.125
        count -= (len(text.split("\n</answer>")[-1]) - 1) * 0.001
    return count


@never_raises
def xmlcount_reward_func(completions, **kwargs) -> list[float]:
    """Up to 0.5 for each XML tag on its own line exactly once, less 0.001 per character after the answer.

    >>> xmlcount_reward_func(["<reasoning>\\n9 * 2 = 18\\n</reasoning>\\n<answer>\\n18\\n</answer>\\n"])
    [0.5]
    >>> xmlcount_reward_func(["The answer is 18."])
    [0.0]
    """
    return [count_xml(text) for text in completion_texts(completions)]


@never_raises
def soft_format_reward_func(completions, **kwargs) -> list[float]:
    """0.5 when the completion starts with ``<reasoning>...</reasoning>`` followed by ``<answer>...</answer>``.

    >>> soft_format_reward_func(["<reasoning>9 * 2 = 18</reasoning> <answer>18</answer>"])
    [0.5]
    >>> soft_format_reward_func(["So the answer is <answer>18</answer>"])
    [0.0]
    """
    return [0.5 if SOFT_FORMAT_RE.match(text) else 0.0 for text in completion_texts(completions)]


@never_raises
def strict_format_reward_func(completions, **kwargs) -> list[float]:
    """0.5 when the completion is exactly ``<reasoning>\\n...\\n</reasoning>\\n<answer>\\n...\\n</answer>\\n``.

    >>> strict_format_reward_func(["<reasoning>\\n9 * 2 = 18\\n</reasoning>\\n<answer>\\n18\\n</answer>\\n"])
    [0.5]
    >>> strict_format_reward_func(["<reasoning>9 * 2 = 18</reasoning> <answer>18</answer>"])
    [0.0]
    """
    return [0.5 if STRICT_FORMAT_RE.match(text) else 0.0 for text in completion_texts(completions)]


@never_raises
def strict_format_end_of_turn_reward_func(completions, **kwargs) -> list[float]:
    """A named variant of the strict format (not in the study's sets): 0.5 also when the turn ends right after
    ``</answer>``. Instruct models end their turn there, the decoded completion then lacks the final newline the
    study's regex demands, and a reward that never fires teaches nothing.

    >>> strict_format_end_of_turn_reward_func(["<reasoning>\\n9 * 2 = 18\\n</reasoning>\\n<answer>\\n18\\n</answer>"])
    [0.5]
    >>> strict_format_reward_func(["<reasoning>\\n9 * 2 = 18\\n</reasoning>\\n<answer>\\n18\\n</answer>"])
    [0.0]
    """
    return [0.5 if STRICT_FORMAT_END_OF_TURN_RE.match(text) else 0.0 for text in completion_texts(completions)]


@never_raises
def int_reward_func(completions, **kwargs) -> list[float]:
    """0.5 when the answer is written as digits only (the study's extraction: the whole text if there is no tag).

    >>> int_reward_func(["<answer>\\n18\\n</answer>"])
    [0.5]
    >>> int_reward_func(["<answer>\\n$18.00\\n</answer>"])
    [0.0]
    """
    return [0.5 if extract_xml_answer(text).isdigit() else 0.0 for text in completion_texts(completions)]


@never_raises
def correctness_reward_func(completions, answer, **kwargs) -> list[float]:
    """1.0 when the ``<answer>`` text equals the gold string (the study's strict test), else 0.0.

    >>> correctness_reward_func(["<answer>\\n18\\n</answer>"], answer=["18"])
    [1.0]
    >>> correctness_reward_func(["<answer>\\n18.00\\n</answer>"], answer=["18"])
    [0.0]
    """
    return [1.0 if is_correct_strict(text, gold) else 0.0 for text, gold in zip(completion_texts(completions), answer)]


@never_raises
def numeric_correctness_reward_func(completions, answer, **kwargs) -> list[float]:
    """Improved (opt-in): 1.0 when the answer has the gold's value (``18.00``, ``$18`` count), else 0.0.

    >>> numeric_correctness_reward_func(["<answer>\\n$18.00\\n</answer>"], answer=["18"])
    [1.0]
    >>> numeric_correctness_reward_func(["<answer>\\n17\\n</answer>"], answer=["18"])
    [0.0]
    """
    return [1.0 if is_correct(text, gold) else 0.0 for text, gold in zip(completion_texts(completions), answer)]


def reasoning_length(text: str, tokenizer) -> int:
    """Tokens before the first ``<answer>`` (the whole text when there is none), tokenizer defaults."""
    return len(tokenizer(text.split("<answer>")[0])["input_ids"])


def cosine_length_score(
    length: int, correct: bool, max_len: int = STUDY_COMPLETION_TOKENS, scale: float = 5.0, penalize_wrong=True
) -> float:
    """Correct: ``scale*cos(x)``, shorter is better; wrong: ``-scale*cos(x)`` with the penalty, else 0.
    ``x = clip(length/max_len, 0, 1) * pi/2``."""
    x = min(max(length / max_len, 0.0), 1.0) * math.pi / 2
    if correct:
        return scale * math.cos(x)
    return -scale * math.cos(x) if penalize_wrong else 0.0


def make_cosine_length_reward(
    tokenizer, max_len: int = STUDY_COMPLETION_TOKENS, scale: float = 5.0, penalize_wrong: bool = True
):
    """The study's cosine length reward, bound to a tokenizer. Correctness is the study's strict test."""

    @never_raises
    def cosine_length_reward_func(completions, answer, **kwargs) -> list[float]:
        """Up to 5.0 for a correct answer, more for shorter reasoning; wrong answers get 0 or, with the penalty,
        down to -5.0 for the shortest."""
        return [
            cosine_length_score(
                reasoning_length(text, tokenizer), is_correct_strict(text, gold), max_len, scale, penalize_wrong
            )
            for text, gold in zip(completion_texts(completions), answer)
        ]

    return cosine_length_reward_func


FORMAT_REWARDS = [
    (xmlcount_reward_func, 1.0),
    (soft_format_reward_func, 1.0),
    (strict_format_reward_func, 1.0),
    (int_reward_func, 1.0),
]


@dataclass(frozen=True)
class RewardSet:
    """The study's four format rewards, optionally its cosine length reward, then a correctness reward."""

    correctness: Callable
    correctness_weight: float  # the study paid 2.0 in the standard sets, 1.0 beside the cosine reward
    cosine_penalty: bool | None = None  # the cosine reward penalising wrong answers (Exp3) or not (Exp4); None: none


# The one registry of reward sets. Their hyper-parameters are config fields (cosine_max_length, cosine_scale,
# correctness_weight) that build_rewards reads; the defaults are the study's.
REWARD_SETS = {
    "standard": RewardSet(correctness_reward_func, 2.0),
    "cosine_penalty": RewardSet(correctness_reward_func, 1.0, cosine_penalty=True),
    "cosine_no_penalty": RewardSet(correctness_reward_func, 1.0, cosine_penalty=False),
    "standard_numeric": RewardSet(numeric_correctness_reward_func, 2.0),  # opt-in: 18.00 and $18 count as 18
}


def build_rewards(
    reward_set: str,
    tokenizer=None,
    cosine_max_length: int = STUDY_COMPLETION_TOKENS,
    cosine_scale: float = 5.0,
    correctness_weight: float | None = None,
) -> list[tuple]:
    """The ``(function, weight)`` pairs of a named set, with its hyper-parameters (an experiment's are
    ``cfg.reward_settings``); the cosine sets need the tokenizer to count tokens. ``correctness_weight`` None: the
    set's own."""
    if reward_set not in REWARD_SETS:
        raise KeyError(f"Unknown reward set {reward_set!r}; choose one of {sorted(REWARD_SETS)}.")
    chosen = REWARD_SETS[reward_set]
    rewards = list(FORMAT_REWARDS)
    if chosen.cosine_penalty is not None:
        if tokenizer is None:
            raise ValueError(f"Reward set {reward_set!r} counts reasoning tokens: pass the tokenizer.")
        cosine = make_cosine_length_reward(tokenizer, cosine_max_length, cosine_scale, chosen.cosine_penalty)
        rewards.append((cosine, 1.0))
    weight = chosen.correctness_weight if correctness_weight is None else correctness_weight
    return rewards + [(chosen.correctness, weight)]


def split_rewards(rewards) -> tuple[list, list[float]]:
    """``(functions, weights)`` from ``(function, weight)`` pairs; a bare function has TRL's default weight 1.0. A
    pair the wrong way round, a weight that is not a number, or two rewards of one name (TRL logs, and the kit
    records, a reward by its name) is an error naming the reward."""
    funcs, weights = [], []
    for reward in rewards:
        func, weight = reward if isinstance(reward, tuple) and len(reward) == 2 else (reward, 1.0)
        if not callable(func) and callable(weight):
            raise TypeError(
                f"Reward ({func!r}, {reward_name(weight)}) is written (weight, function): write it as "
                f"({reward_name(weight)}, {func!r})."
            )
        if not callable(func):
            raise TypeError(f"Reward {reward!r} is not a function: give (function, weight) pairs or functions.")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise TypeError(f"Reward {reward_name(func)} has the weight {weight!r}: give it a finite number.")
        funcs.append(func)
        weights.append(float(weight))
    names = [reward_name(f) for f in funcs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(
            f"Two rewards are named {', '.join(twice)}: TRL logs a reward, and a run records it, by its name, so "
            "each needs its own (a def with another name, or set func.__name__)."
        )
    return funcs, weights
