"""Reward functions with TRL's signature, and the one registry of reward sets.

Every function takes ``completions`` as ``GRPOTrainer`` passes them (strings, or chat messages
``[{"role": "assistant", "content": ...}]``) plus dataset columns as keywords, and returns one float per
completion. Malformed input scores 0.0 instead of raising: one bad sample must not kill a training run.

The defaults reproduce the study exactly; ``numeric_correctness_reward_func`` and the ``standard_numeric``
set are this kit's opt-in improvement (``18.00`` and ``$18`` count as 18).
"""

import math
import re

from utils.grading import extract_xml_answer, is_correct, is_correct_strict

SOFT_FORMAT_RE = re.compile(r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>", re.DOTALL)
STRICT_FORMAT_RE = re.compile(r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n$", re.DOTALL)


def completion_text(completion) -> str:
    """The text of one completion in either shape TRL uses; anything else is the empty string."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        return "".join(m.get("content") or "" for m in completion if isinstance(m, dict) and isinstance(m.get("content"), str))
    return ""


def _score_each(score, completions, *columns) -> list[float]:
    """Apply ``score(text, *column_values)`` to each completion; a failure scores 0.0."""
    rewards = []
    for i, completion in enumerate(completions):
        try:
            values = [column[i] for column in columns]
            rewards.append(float(score(completion_text(completion), *values)))
        except Exception:
            rewards.append(0.0)
    return rewards


def count_xml(text: str) -> float:
    """0.125 per tag line present exactly once, minus 0.001 per character of trailing text (the study's rule)."""
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


def xmlcount_reward_func(completions, **kwargs) -> list[float]:
    return _score_each(count_xml, completions)


def soft_format_reward_func(completions, **kwargs) -> list[float]:
    return _score_each(lambda text: 0.5 if SOFT_FORMAT_RE.match(text) else 0.0, completions)


def strict_format_reward_func(completions, **kwargs) -> list[float]:
    return _score_each(lambda text: 0.5 if STRICT_FORMAT_RE.match(text) else 0.0, completions)


def int_reward_func(completions, **kwargs) -> list[float]:
    return _score_each(lambda text: 0.5 if extract_xml_answer(text).isdigit() else 0.0, completions)


def correctness_reward_func(completions, answer, **kwargs) -> list[float]:
    """2.0 when the ``<answer>`` text equals the gold string (the study's strict test)."""
    return _score_each(lambda text, gold: 2.0 if is_correct_strict(text, gold) else 0.0, completions, answer)


def accuracy_reward_func(completions, answer, **kwargs) -> list[float]:
    """The same strict test worth 1.0, as the study's cosine experiments used it."""
    return _score_each(lambda text, gold: 1.0 if is_correct_strict(text, gold) else 0.0, completions, answer)


def numeric_correctness_reward_func(completions, answer, **kwargs) -> list[float]:
    """Improved (opt-in): 2.0 when the answer is numerically equal to the gold (``18.00``, ``$18`` count)."""
    return _score_each(lambda text, gold: 2.0 if is_correct(text, gold) else 0.0, completions, answer)


def reasoning_length(text: str, tokenizer) -> int:
    """Tokens before the first ``<answer>`` (the whole text when there is none), tokenizer defaults."""
    return len(tokenizer(text.split("<answer>")[0])["input_ids"])


def cosine_length_score(length: int, correct: bool, max_len: int = 786, scale: float = 5.0, penalize_wrong: bool = True) -> float:
    """Correct: ``scale*cos(x)``, shorter is better; wrong: ``-scale*cos(x)`` with the penalty, else 0.
    ``x = clip(length/max_len, 0, 1) * pi/2``."""
    x = min(max(length / max_len, 0.0), 1.0) * math.pi / 2
    if correct:
        return scale * math.cos(x)
    return -scale * math.cos(x) if penalize_wrong else 0.0


def make_cosine_length_reward(tokenizer, max_len: int = 786, scale: float = 5.0, penalize_wrong: bool = True):
    """The study's cosine length reward, bound to a tokenizer. Correctness is the study's strict test."""

    def cosine_length_reward_func(completions, answer, **kwargs) -> list[float]:
        def score(text, gold):
            return cosine_length_score(reasoning_length(text, tokenizer), is_correct_strict(text, gold), max_len, scale, penalize_wrong)

        return _score_each(score, completions, answer)

    return cosine_length_reward_func


FORMAT_REWARDS = [xmlcount_reward_func, soft_format_reward_func, strict_format_reward_func, int_reward_func]

# The one registry of reward sets: name -> builder(tokenizer) -> list of reward functions.
REWARD_SETS = {
    "standard": lambda tokenizer: FORMAT_REWARDS + [correctness_reward_func],
    "cosine_penalty": lambda tokenizer: FORMAT_REWARDS
    + [make_cosine_length_reward(tokenizer, penalize_wrong=True), accuracy_reward_func],
    "cosine_no_penalty": lambda tokenizer: FORMAT_REWARDS
    + [make_cosine_length_reward(tokenizer, penalize_wrong=False), accuracy_reward_func],
    "standard_numeric": lambda tokenizer: FORMAT_REWARDS + [numeric_correctness_reward_func],  # improved, opt-in
}

# Rewards that pay a fixed amount per correct completion: their mean / value = share of correct completions.
# Includes the name the study's logs use for its accuracy reward.
CORRECTNESS_REWARD_VALUES = {
    "correctness_reward_func": 2.0,
    "numeric_correctness_reward_func": 2.0,
    "accuracy_reward_func": 1.0,
    "accuracy_func": 1.0,
}


def build_reward_funcs(reward_set: str, tokenizer=None) -> list:
    """The reward functions of a named set; the cosine sets need the tokenizer to count tokens."""
    if reward_set not in REWARD_SETS:
        raise KeyError(f"Unknown reward set {reward_set!r}; choose one of {sorted(REWARD_SETS)}.")
    if reward_set.startswith("cosine") and tokenizer is None:
        raise ValueError(f"Reward set {reward_set!r} counts reasoning tokens: pass the tokenizer.")
    return list(REWARD_SETS[reward_set](tokenizer))
