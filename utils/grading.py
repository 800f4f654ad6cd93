"""Answer extraction and grading, declared by name so every reported accuracy says which grader made it.

Two graders, both reported by evaluation:
- ``strict``: the study's rule. The text inside the last ``<answer>`` block must equal the gold
  string exactly ("18.00" and "$18" are wrong when the gold is "18").
- ``numeric``: parse numbers and compare values. Uses the ``<answer>`` block when there is one, else the
  last number in the text (lm-evaluation-harness's "flexible" rule).
"""

import math
import re

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
    """The gold answer of a GSM8K solution: the text after ``####``, with commas and ``$`` removed."""
    if "####" not in solution:
        return None
    return solution.split("####")[-1].strip().replace(",", "").replace("$", "")


def _to_float(token: str) -> float | None:
    token = re.sub(r"\s+", "", token).replace(",", "")
    try:
        if "/" in token:
            numerator, denominator = token.split("/")
            return float(numerator) / float(denominator)
        return float(token)
    except (ValueError, ZeroDivisionError):
        return None


def parse_number(text: str) -> float | None:
    """Parse a final answer written as a single number: ``18``, ``18.``, ``18.00``, ``$18``, ``1,008``,
    ``-5``, ``3/4``, ``18 dollars``, ``**18**``. Returns ``None`` when the text is not one number."""
    if not isinstance(text, str):
        return None
    cleaned = _DECORATION_RE.sub("", text).strip().rstrip(".").strip()
    cleaned = _TRAILING_WORDS_RE.sub("", cleaned).strip().rstrip(".")
    if not _FULL_NUMBER_RE.match(cleaned):
        return None
    value = _to_float(cleaned)
    return value if value is not None and math.isfinite(value) else None


def last_number(text: str) -> float | None:
    """The last number anywhere in the text (lm-evaluation-harness's flexible extraction)."""
    for token in reversed(NUMBER_RE.findall(text or "")):
        value = _to_float(token)
        if value is not None and math.isfinite(value):
            return value
    return None


def extract_numeric_answer(text: str) -> float | None:
    """The number a completion answers with: its ``<answer>`` block when present, else its last number."""
    if not isinstance(text, str):
        return None
    if "<answer>" in text:
        block = extract_xml_answer(text)
        value = parse_number(block)
        return value if value is not None else last_number(block)
    return last_number(text)


def is_correct_strict(completion: str, gold: str) -> bool:
    """The study's grader: exact string equality of the extracted ``<answer>`` text and the gold."""
    return isinstance(completion, str) and extract_xml_answer(completion) == str(gold)


def is_correct(completion: str, gold) -> bool:
    """Numeric grader: the completion's answer equals the gold number (relative tolerance 1e-6). Never raises."""
    try:
        predicted = extract_numeric_answer(completion)
        expected = gold if isinstance(gold, (int, float)) else parse_number(str(gold))
        if predicted is None or expected is None:
            return False
        return math.isclose(predicted, float(expected), rel_tol=1e-6, abs_tol=1e-9)
    except Exception:
        return False


GRADERS = {"strict": is_correct_strict, "numeric": is_correct}
