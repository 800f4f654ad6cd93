"""Answer extraction and grading, declared by name so every reported accuracy says which grader made it.

Two graders (``GRADERS``), both reported by evaluation:
- ``strict``: the study's rule. The text inside the last ``<answer>`` block must equal the gold string exactly
  ("18.00" and "$18" are wrong when the gold is "18").
- ``numeric``: parse numbers and compare values exactly. Uses the ``<answer>`` block when there is one, else the
  last number in the text (lm-evaluation-harness's "flexible" rule).

The format patterns of the study's format rewards live here too, so rewards and evaluation share one parser.
"""

import math
import re
from fractions import Fraction

# The study's format rewards: the soft one allows any whitespace, the strict one wants the exact layout.
SOFT_FORMAT_RE = re.compile(r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>", re.DOTALL)
STRICT_FORMAT_RE = re.compile(r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n$", re.DOTALL)
# A named variant of the strict check that also accepts the end of the turn right after </answer>: instruct models
# end their turn there, and the decoded completion then has no newline after the tag, so the study's regex never fires.
STRICT_FORMAT_END_OF_TURN_RE = re.compile(r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n?$", re.DOTALL)

# A number as people write it: optional sign, thousands separators, decimals, or a simple fraction.
NUMBER_PATTERN = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*-?\d+(?:\.\d+)?)?|-?\.\d+"
NUMBER_RE = re.compile(NUMBER_PATTERN)
_FULL_NUMBER_RE = re.compile(rf"^(?:{NUMBER_PATTERN})$")
# Decoration that may surround a final answer: markdown emphasis, LaTeX boxes, currency, units.
_DECORATION_RE = re.compile(r"\*\*|__|\\boxed\{|\\\(|\\\)|\\\[|\\\]|[{}$€£`]")
_TRAILING_WORDS_RE = re.compile(r"(?:\s*%|\s+[A-Za-z][A-Za-z .']*)$")


def extract_xml_answer(text: str) -> str:
    """The study's rule: the text after the last ``<answer>``, before the next ``</answer>``, stripped.

    Like the study, a text without ``<answer>`` yields the whole text stripped.
    """
    answer = text.split("<answer>")[-1]
    answer = answer.split("</answer>")[0]
    return answer.strip()


def extract_hash_answer(solution: str) -> str | None:
    """The gold answer of a GSM8K solution: the text after ``####``, with commas and ``$`` removed and a Unicode minus
    (U+2212, which no model's ``-5`` would equal) written as ``-``."""
    if "####" not in solution:
        return None
    return solution.split("####")[-1].strip().replace(",", "").replace("$", "").replace("\u2212", "-")


def _to_fraction(token: str) -> Fraction | None:
    """The exact value of a number token (``1,008``, ``-2.50``, ``3/4``); floats would make 10^7+1 equal 10^7."""
    token = re.sub(r"\s+", "", token).replace(",", "").rstrip(".")
    try:
        if "/" in token:
            numerator, denominator = token.split("/")
            return Fraction(numerator) / Fraction(denominator)
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def parse_value(text: str) -> Fraction | None:
    """The exact value of a final answer written as a single number: ``18``, ``18.``, ``18.00``, ``$18``,
    ``1,008``, ``-5``, ``3/4``, ``18 dollars``, ``**18**``. ``None`` when the text is not one number."""
    if not isinstance(text, str):
        return None
    cleaned = _DECORATION_RE.sub("", text).strip().rstrip(".").strip()
    cleaned = _TRAILING_WORDS_RE.sub("", cleaned).strip().rstrip(".")
    return _to_fraction(cleaned) if _FULL_NUMBER_RE.match(cleaned) else None


def _last_value(text: str) -> Fraction | None:
    for token in reversed(NUMBER_RE.findall(text or "")):
        value = _to_fraction(token)
        if value is not None:
            return value
    return None


def _answer_value(text: str) -> Fraction | None:
    if not isinstance(text, str):
        return None
    if "<answer>" in text:
        block = extract_xml_answer(text)
        value = parse_value(block)
        return value if value is not None else _last_value(block)
    return _last_value(text)


def numeric_answer(text: str) -> str | None:
    """The exact value a completion answers with, as text (``18``, ``3/4``), the key majority voting counts by."""
    value = _answer_value(text)
    return str(value) if value is not None else None


def _decimal_places(value: Fraction) -> int | None:
    """Digits after the point in the value's exact decimal form; ``None`` when it never ends (1/3)."""
    denominator, twos, fives = value.denominator, 0, 0
    while denominator % 2 == 0:
        denominator, twos = denominator // 2, twos + 1
    while denominator % 5 == 0:
        denominator, fives = denominator // 5, fives + 1
    return max(twos, fives) if denominator == 1 else None


def same_value(a: Fraction, b: Fraction) -> bool:
    """Exact equality, except that a never-ending fraction (``1/3``) matches a decimal rounded at the decimal's own
    precision (``0.33``). Two decimals are never rounded, so 12345679 never equals 12345678, nor 2.49 equal 2.5."""
    if a == b:
        return True
    for decimal, other in ((a, b), (b, a)):
        places = _decimal_places(decimal)
        if places is not None and _decimal_places(other) is None:
            return round(other, places) == decimal
    return False


def _gold_value(gold) -> Fraction | None:
    if isinstance(gold, bool):
        return None
    if isinstance(gold, int):
        return Fraction(gold)
    if isinstance(gold, float):
        return Fraction(repr(gold)) if math.isfinite(gold) else None  # 51.0 -> 51, 0.1 -> 1/10 (not its binary value)
    return parse_value(str(gold))


def is_correct_strict(completion: str, gold: str) -> bool:
    """The study's grader: exact string equality of the extracted ``<answer>`` text and the gold."""
    return isinstance(completion, str) and extract_xml_answer(completion) == str(gold)


def answer_matches(answer: str | None, gold) -> bool:
    """Whether an answer from ``numeric_answer`` has the gold's value, as the numeric grader judges it."""
    expected = _gold_value(gold)
    return answer is not None and expected is not None and same_value(Fraction(answer), expected)


def is_correct(completion: str, gold) -> bool:
    """Numeric grader: the completion's answer has the gold's value (see ``same_value``). Never raises."""
    predicted, expected = _answer_value(completion), _gold_value(gold)
    return predicted is not None and expected is not None and same_value(predicted, expected)


GRADERS = {"strict": is_correct_strict, "numeric": is_correct}


def grade(completion: str, gold) -> dict:
    """What every evaluation records of a completion: each grader's verdict and the study's two format checks."""
    return {
        **{f"correct_{name}": grader(completion, gold) for name, grader in GRADERS.items()},
        "format_strict": bool(STRICT_FORMAT_RE.match(completion)),
        "format_soft": bool(SOFT_FORMAT_RE.match(completion)),
    }
