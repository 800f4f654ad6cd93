"""Reward lab: see what a reward set does, in seconds and without a GPU, before training with it.

- ``check_reward_funcs`` calls each function the way ``GRPOTrainer`` does and raises ``RewardCheckError``
  naming the function, the input and what was expected when one raises, returns the wrong number or type of
  values, needs a column the dataset lacks, or is not deterministic.
- ``reward_table`` scores a canned, labelled set of completions (or yours): one row per completion, one
  column per reward, and the weighted total TRL would use.

Rewards are given as the registry gives them, ``(function, weight)`` pairs, or as bare functions (weight 1.0).
- ``plot_length_rewards`` and ``plot_reward_shares`` show length dependence and which reward dominates.
"""

import inspect
import math

import pandas as pd

from utils.data import build_dataset
from utils.prompts import XML_COT_FORMAT, build_prompt
from utils.rewards import make_cosine_length_reward, reasoning_length, reward_name, split_rewards

JANET = (
    "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends "
    "every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. How much in "
    "dollars does she make every day at the farmers' market?"
)
NATALIA = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips "
    "did Natalia sell altogether in April and May?"
)
JANET_STEPS = "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day at the farmer’s market."


# (label, question, gold, completion): the cases that matter when judging a reward.
CANNED = [
    ("perfect format, correct", JANET, "18", XML_COT_FORMAT.format(reasoning=JANET_STEPS, answer="18")),
    (
        "perfect format, wrong",
        JANET,
        "18",
        XML_COT_FORMAT.format(reasoning="Janet sells 16 - 3 = 13 eggs.\nShe makes 13 * 2 = $26.", answer="26"),
    ),
    ("correct, loose format", JANET, "18", f"<reasoning>{JANET_STEPS}</reasoning> <answer>18</answer>"),
    ("correct, no tags", JANET, "18", JANET_STEPS + "\nThe answer is 18."),
    (
        "correct, trailing text",
        JANET,
        "18",
        XML_COT_FORMAT.format(reasoning=JANET_STEPS, answer="18")
        + "I hope this helps! Let me know if you have more questions.",
    ),
    (
        "truncated mid-reasoning",
        JANET,
        "18",
        "<reasoning>\nJanet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2",
    ),
    ("correct, very short reasoning", NATALIA, "72", XML_COT_FORMAT.format(reasoning="48 + 24 = 72", answer="72")),
    (
        "correct, very long reasoning",
        NATALIA,
        "72",
        XML_COT_FORMAT.format(
            reasoning=" ".join(["In April she sold 48 clips, and in May half of 48, which is 24."] * 40), answer="72"
        ),
    ),
    ("answer written $18", JANET, "18", XML_COT_FORMAT.format(reasoning=JANET_STEPS, answer="$18")),
    ("answer written 18.00", JANET, "18", XML_COT_FORMAT.format(reasoning=JANET_STEPS, answer="18.00")),
    ("empty", JANET, "18", ""),
]
# Inputs that must never break a reward, each checked alone.
EDGE_INPUTS = [
    "",
    " ",
    "<answer>",
    "</answer></reasoning><reasoning><answer>",
    "é∑😀 " * 50,
    "x" * 100_000,
    "<answer>\n\n</answer>",
    "1" * 500,
]


class RewardCheckError(Exception):
    """A reward function breaks TRL's contract; the message names the function, the input and the expectation."""


def canned_completions() -> list[dict]:
    return [{"label": label, "question": q, "answer": gold, "completion": text} for label, q, gold, text in CANNED]


def training_rows(cfg, n: int = 8):
    """The first ``n`` rows of the experiment's training data, so the lab passes the columns training will pass."""
    return build_dataset("train", cfg.one_shot, cfg.data_dir, limit=n)


def _trainer_kwargs(items: list[dict], one_shot: bool, dataset=None) -> dict:
    """Keyword arguments as GRPOTrainer passes them: prompts, chat completions, completion ids, the dataset's
    columns (taken from its rows, with the canned gold answers), the trainer's state, and its logging hooks."""
    from transformers import TrainerState

    n = len(items)
    kwargs = {
        "prompts": [build_prompt(it["question"], one_shot) for it in items],
        "completions": [[{"role": "assistant", "content": it["completion"]}] for it in items],
        "completion_ids": [[ord(c) % 1000 for c in it["completion"][:64]] for it in items],
        "trainer_state": TrainerState(global_step=0, max_steps=1866),
        "log_extra": lambda *a, **k: None,
        "log_metric": lambda *a, **k: None,
    }
    if dataset is not None:
        rows = [dataset[i % len(dataset)] for i in range(n)]
        for column in dataset.column_names:
            if column not in ("prompt", "completion"):
                kwargs[column] = [row[column] for row in rows]
    else:
        kwargs["question"] = [it["question"] for it in items]
    kwargs["answer"] = [it["answer"] for it in items]
    return kwargs


TRAINER_KWARGS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")


def _missing_columns(func, kwargs: dict) -> list[str]:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in parameters
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in kwargs
    ]


def _call(func, kwargs: dict, what: str) -> list:
    name = reward_name(func)
    try:
        values = func(**kwargs)
    except Exception as error:
        raise RewardCheckError(
            f"Reward function {name!r} raised {type(error).__name__}: {error} on {what}. Expected: one float "
            "(or None) per completion, never an exception."
        ) from error
    n = len(kwargs["completions"])
    not_a_sequence = not hasattr(values, "__len__") or isinstance(values, (str, bytes, dict, set))
    if not_a_sequence or len(values) != n:
        got = f"{len(values)} values" if not not_a_sequence else f"a {type(values).__name__} {repr(values)[:80]}"
        raise RewardCheckError(
            f"Reward function {name!r} returned {got} for {n} completions on {what}. Expected: a list with one float "
            "(or None) per completion."
        )
    for value, completion in zip(values, kwargs["completions"]):
        if not _trl_accepts(value):
            text = completion[0]["content"]
            raise RewardCheckError(
                f"Reward function {name!r} returned {value!r} ({type(value).__name__}) for the completion "
                f"{text[:120]!r}. Expected: a number (Python or numpy) or None."
            )
    return [None if v is None else float(v) for v in values]  # numpy and 0-d tensor values included


def _trl_accepts(value) -> bool:
    """What GRPOTrainer does with a reward value: None becomes NaN, the rest goes through ``torch.tensor``."""
    import torch

    if value is None:
        return True
    if isinstance(value, (str, bytes)):
        return False
    try:
        return torch.tensor([value], dtype=torch.float32).shape == (1,)
    except (TypeError, ValueError, RuntimeError):
        return False


def _completion_label(text: str) -> str:
    return f"the completion {text[:60]!r}{'...' if len(text) > 60 else ''}"


def _same(a: list, b: list) -> bool:
    def same(x, y):
        return (x is None and y is None) or (
            x is not None and y is not None and (x == y or math.isnan(x) and math.isnan(y))
        )

    return all(same(x, y) for x, y in zip(a, b))


def check_reward_funcs(rewards, dataset=None, one_shot: bool = True) -> None:
    """Check reward functions against TRL's contract; raises ``RewardCheckError`` on the first problem."""
    funcs, _ = split_rewards(rewards)
    items = canned_completions()
    kwargs = _trainer_kwargs(items, one_shot, dataset)
    for func in funcs:
        name = reward_name(func)
        missing = _missing_columns(func, kwargs)
        if missing:
            columns = sorted(k for k in kwargs if k not in TRAINER_KWARGS)
            raise RewardCheckError(
                f"Reward function {name!r} expects the column(s) {missing}, which the dataset lacks (it has "
                f"{columns})."
                " Expected: parameters named after dataset columns, and **kwargs for the rest."
            )
        try:
            first = _call(func, kwargs, "the canned completions")
        except RewardCheckError:
            for item in items + [dict(items[0], completion=text) for text in EDGE_INPUTS]:  # name the breaking input
                _call(func, _trainer_kwargs([item], one_shot, dataset), _completion_label(item["completion"]))
            raise
        if not _same(first, _call(func, kwargs, "the canned completions (second call)")):
            raise RewardCheckError(
                f"Reward function {name!r} gave different values for the same completions on two calls. Expected: a "
                "deterministic reward (seed any randomness)."
            )
        for text in EDGE_INPUTS:
            edge = dict(items[0], completion=text)
            _call(func, _trainer_kwargs([edge], one_shot, dataset), _completion_label(text))


def reward_table(rewards, completions=None, answer: str = "18", one_shot: bool = True) -> pd.DataFrame:
    """Score completions with each reward: one row per completion, one column per reward, and ``total``, the
    weighted sum TRL trains on (the weights are in ``table.attrs["weights"]``).

    ``completions``: None for the canned set; or strings (graded against ``answer``); or dicts with ``completion`` and
    ``answer`` (optionally ``label`` and ``question``).
    """
    funcs, weights = split_rewards(rewards)
    if completions is None:
        items = canned_completions()
    else:
        items = [c if isinstance(c, dict) else {"completion": c, "answer": answer} for c in completions]
        items = [
            {
                "label": it.get("label", f"#{i}"),
                "question": it.get("question", JANET),
                "answer": str(it["answer"]),
                "completion": it["completion"],
            }
            for i, it in enumerate(items)
        ]
    kwargs = _trainer_kwargs(items, one_shot)
    values = {
        reward_name(f): [float("nan") if v is None else v for v in _call(f, kwargs, "the table's completions")]
        for f in funcs
    }
    table = pd.DataFrame(values, index=[it["label"] for it in items])
    table.index.name = "completion"
    table.attrs["weights"] = dict(zip(table.columns, weights))
    table["total"] = sum(table[name].fillna(0.0) * weight for name, weight in table.attrs["weights"].items())
    return table


def style_reward_table(table: pd.DataFrame):
    """Colour each column so a glance shows where each reward fires (green high, red low); weights in the header."""
    weights = table.attrs.get("weights", {})
    shown = table.rename(columns={name: f"{name} (x{w:g})" for name, w in weights.items()})
    return shown.style.format("{:.3f}").background_gradient(cmap="RdYlGn", axis=0)


def length_curves(rewards, tokenizer=None, lengths=range(0, 1001, 25)) -> pd.DataFrame:
    """Each reward's value against reasoning length, for a correct and a wrong answer (gold 18), on completions whose
    reasoning repeats " step" ``lengths`` times: counted in the tokenizer's tokens when one is given (" step" is one
    token for Qwen2.5 and SmolLM2), else in repeats."""
    funcs, _ = split_rewards(rewards)
    rows = []
    for correct, answer in ((True, "18"), (False, "17")):
        texts = [XML_COT_FORMAT.format(reasoning=" step" * n, answer=answer) for n in lengths]
        kwargs = _trainer_kwargs([{"question": JANET, "answer": "18", "completion": t} for t in texts], one_shot=True)
        tokens = [reasoning_length(t, tokenizer) if tokenizer else n for t, n in zip(texts, lengths)]
        for func in funcs:
            for n, value in zip(tokens, _call(func, kwargs, "synthetic completions of growing length")):
                verdict = "correct" if correct else "wrong"
                rows.append({"reward": reward_name(func), "reasoning_tokens": n, "answer": verdict, "value": value})
    return pd.DataFrame(rows, columns=["reward", "reasoning_tokens", "answer", "value"])


def plot_length_rewards(rewards, tokenizer=None):
    """Length-dependent rewards against reasoning length, correct vs wrong; the study's cosine reward with and without
    the penalty is drawn alongside for reference when a tokenizer is given."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    curves = length_curves(rewards, tokenizer)
    varying = curves.groupby("reward")["value"].nunique()
    curves = curves[curves["reward"].isin(varying[varying > 2].index)]
    if tokenizer is not None:
        penalty = make_cosine_length_reward(tokenizer, penalize_wrong=True)
        no_penalty = make_cosine_length_reward(tokenizer, penalize_wrong=False)
        penalty.__name__, no_penalty.__name__ = "study: cosine with penalty", "study: cosine without penalty"
        curves = pd.concat([curves, length_curves([penalty, no_penalty], tokenizer)])
    if curves.empty:
        print("No reward in this set depends on reasoning length.")
        return None
    names = list(dict.fromkeys(curves["reward"]))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        sns.lineplot(
            data=curves[curves["reward"] == name],
            x="reasoning_tokens",
            y="value",
            hue="answer",
            ax=ax,
            palette={"correct": "tab:green", "wrong": "tab:red"},
        )
        ax.set(title=name, xlabel="reasoning tokens", ylabel="reward")
        ax.axhline(0, color="grey", lw=0.5)
    fig.tight_layout()
    return fig


def plot_reward_shares(table: pd.DataFrame, ax=None):
    """Share of the total absolute (weighted) reward each function contributes on the scored completions."""
    import matplotlib.pyplot as plt

    weights = table.attrs.get("weights", {})
    contributions = table.drop(columns="total").apply(lambda column: column * weights.get(column.name, 1.0))
    shares = contributions.abs().sum()
    shares = shares / shares.sum() if shares.sum() else shares
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.45 * len(shares) + 1))
    shares.sort_values().plot.barh(ax=ax, color="tab:blue")
    ax.set(xlabel="share of total |weighted reward| on the canned completions", ylabel="")
    for i, value in enumerate(shares.sort_values()):
        ax.text(value, i, f" {value:.0%}", va="center")
    never = [name for name in contributions.columns if (contributions[name] == 0).all()]
    if never:
        ax.set_title(f"never fires here: {', '.join(never)}", fontsize=9, color="tab:red")
    return ax


def run_lab(rewards, dataset=None, tokenizer=None, one_shot: bool = True):
    """The notebook cell: check the functions (stops the notebook with the message on failure), then show the coloured
    table and the two plots."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    check_reward_funcs(rewards, dataset, one_shot)
    print(f"All {len(rewards)} reward functions pass TRL's contract checks.")
    table = reward_table(rewards, one_shot=one_shot)
    display(style_reward_table(table))
    plot_length_rewards(rewards, tokenizer)
    plot_reward_shares(table)
    plt.show()
    return table
