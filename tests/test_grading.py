import pytest

from utils.grading import extract_hash_answer, extract_numeric_answer, extract_xml_answer, is_correct, is_correct_strict, parse_number


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
        ("18", 18.0), ("18.", 18.0), ("18.00", 18.0), ("$18", 18.0), ("1,008", 1008.0), ("-5", -5.0),
        ("3/4", 0.75), ("18 dollars", 18.0), ("**18**", 18.0), (" $1,234.50 ", 1234.5), ("\\boxed{42}", 42.0),
        ("50%", 50.0), (".5", 0.5),
    ],
)
def test_parse_number_accepts_common_ways_of_writing_a_number(text, expected):
    assert parse_number(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "eighteen", "18 and 19", "1/0", "abc 18 def", None, "...", "1,00"])
def test_parse_number_rejects_non_numbers(text):
    assert parse_number(text) is None


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
    ["<answer>17</answer>", "<answer>\n</answer>", "", "18 apples, so the answer is 17", "<answer>eighteen</answer>", None, 18],
)
def test_is_correct_rejects_wrong_or_missing_answers(completion):
    assert not is_correct(completion, "18")


def test_is_correct_prefers_the_answer_block_over_the_last_number():
    assert not is_correct("<answer>17</answer> 18", "18")
    assert extract_numeric_answer("<answer>17</answer> 18") == 17


def test_strict_grader_is_the_studys_string_match():
    assert is_correct_strict("<answer>\n18\n</answer>", "18")
    assert not is_correct_strict("<answer>18.00</answer>", "18")
    assert not is_correct_strict("<answer>$18</answer>", "18")
    assert not is_correct_strict(None, "18")
