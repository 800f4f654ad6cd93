import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.grading import (
    extract_hash_answer,
    extract_xml_answer,
    is_correct,
    is_correct_strict,
    numeric_answer,
    parse_value,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<reasoning>\nr\n</reasoning>\n<answer>\n18\n</answer>\n", "18"),
        ("<answer>1</answer> then <answer> 2 </answer> trailing", "2"),  # last block wins
        ("<answer>\n7", "7"),  # unterminated block: everything after the tag
        ("no tags at all ", "no tags at all"),  # the study's rule: whole text, stripped
        ("", ""),
    ],
)
def test_extract_xml_answer(text, expected):
    assert extract_xml_answer(text) == expected


@pytest.mark.parametrize(
    "solution, expected",
    [("a\n#### 72", "72"), ("x\n#### 1,008", "1008"), ("#### $18", "18"), ("#### -5", "-5"), ("no answer line", None)],
)
def test_extract_hash_answer(solution, expected):
    assert extract_hash_answer(solution) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("18", 18.0),
        ("18.", 18.0),
        ("18.00", 18.0),
        ("$18", 18.0),
        ("1,008", 1008.0),
        ("-5", -5.0),
        ("3/4", 0.75),
        ("18 dollars", 18.0),
        ("**18**", 18.0),
        (" $1,234.50 ", 1234.5),
        ("\\boxed{42}", 42.0),
        ("50%", 50.0),
        (".5", 0.5),
    ],
)
def test_parse_value_accepts_common_ways_of_writing_a_number(text, expected):
    assert float(parse_value(text)) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "eighteen", "18 and 19", "1/0", "abc 18 def", None, "...", "1,00"])
def test_parse_value_rejects_non_numbers(text):
    assert parse_value(text) is None


@pytest.mark.parametrize(
    "completion",
    [
        "<reasoning>\n...\n</reasoning>\n<answer>\n18\n</answer>\n",
        "<answer>$18</answer>",
        "<answer>18.00</answer>",
        "<answer>18.</answer>",
        "<answer>**18** dollars</answer>",
        "<answer>The answer is 18</answer>",  # a sentence in the block: its last number
        "She earns 9 * 2 = 18 dollars.\nThe answer is 18",  # no block: the last number in the text
        "So she pays $18.",
    ],
)
def test_is_correct_accepts_equivalent_numbers(completion):
    assert is_correct(completion, "18")


def test_is_correct_with_thousands_separator():
    assert is_correct("<answer>1,008</answer>", "1008")
    assert is_correct("<answer>1008</answer>", "1,008")


@pytest.mark.parametrize(
    "completion",
    [
        "<answer>17</answer>",
        "<answer>\n</answer>",
        "",
        "18 apples, so the answer is 17",
        "<answer>eighteen</answer>",
        None,
        18,
    ],
)
def test_is_correct_rejects_wrong_or_missing_answers(completion):
    assert not is_correct(completion, "18")


def test_is_correct_prefers_the_answer_block_over_the_last_number():
    assert not is_correct("<answer>17</answer> 18", "18")
    assert numeric_answer("<answer>17</answer> 18") == "17"


def test_strict_grader_is_the_studys_string_match():
    assert is_correct_strict("<answer>\n18\n</answer>", "18")
    assert not is_correct_strict("<answer>18.00</answer>", "18")
    assert not is_correct_strict("<answer>$18</answer>", "18")
    assert not is_correct_strict(None, "18")


def surface_forms(text: str) -> list[str]:
    """Ways a model writes the number ``text`` (a plain decimal string) as its answer."""
    whole, _, fraction = text.lstrip("-").partition(".")
    sign = "-" if text.startswith("-") else ""
    grouped = sign + f"{int(whole):,}" + (f".{fraction}" if fraction else "")
    forms = [text, grouped, f"${grouped}", f"**{text}**", f"\\boxed{{{text}}}", f"{text} dollars", f"{text}."]
    if not fraction:
        forms += [f"{text}.00", f"{grouped}.0"]
    return [f"<answer>\n{form}\n</answer>" for form in forms]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_integers_match_exactly_in_every_surface_form(value):
    gold = str(value)
    assert all(is_correct(form, gold) for form in surface_forms(gold))
    for other in (value - 1, value + 1):
        assert not any(is_correct(form, gold) for form in surface_forms(str(other))), other


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=1, max_value=4))
def test_decimals_match_exactly_and_reject_one_in_the_last_digit(units, places):
    """A decimal with ``places`` digits after the point; +-1 in its last digit is a different answer."""

    def decimal(n):
        sign = "-" if n < 0 else ""
        digits = str(abs(n)).rjust(places + 1, "0")
        return f"{sign}{digits[:-places]}.{digits[-places:]}"

    gold = decimal(units)
    assert all(is_correct(form, gold) for form in surface_forms(gold))
    for other in (units - 1, units + 1):
        assert not any(is_correct(form, gold) for form in surface_forms(decimal(other))), decimal(other)


def test_big_numbers_off_by_one_are_wrong():
    assert not is_correct("<answer>\n12345679\n</answer>", "12345678")
    assert is_correct("<answer>\n12,345,678\n</answer>", "12345678")


def test_a_fraction_matches_a_decimal_at_the_decimal_precision():
    assert is_correct("<answer>1/3</answer>", "0.33") and is_correct("<answer>0.333</answer>", "1/3")
    assert not is_correct("<answer>0.34</answer>", "1/3") and not is_correct("<answer>2.49</answer>", "2.5")
    assert is_correct("<answer>3/4</answer>", "0.75") and is_correct("<answer>51</answer>", 51.0)
