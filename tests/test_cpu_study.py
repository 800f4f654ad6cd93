"""The CPU mini-study's comparisons, on records with a known answer."""

import pandas as pd
import pytest

from utils import cpu_study

TAGGED = "<reasoning>\nthree\n</reasoning>\n<answer>\n3\n</answer>\n"
UNTAGGED = "The answer is 3."


def records(completions, tokens):
    return pd.DataFrame(
        [
            {"index": i, "completion": text, "completion_tokens": n, "truncated": n >= 100,
             "format_strict": "<" in text,
             "format_soft": "<" in text, "correct_numeric": True}
            for i, (text, n) in enumerate(zip(completions, tokens))
        ]
    )  # fmt: skip


def test_paired_counts_tags_and_tests_the_discordant_pairs():
    a = records([TAGGED, TAGGED, TAGGED, UNTAGGED], [10, 20, 30, 100])
    b = records([TAGGED, UNTAGGED, UNTAGGED, UNTAGGED], [10, 10, 10, 100])
    result = cpu_study.paired(a, b, ("before", "after"))
    assert result["n"] == 4
    assert result["answer_tags"]["before"] == 0.75 and result["answer_tags"]["after"] == 0.25
    assert result["answered"]["before"] == 0.75  # "3" inside the tags is a number
    assert result["answer_tags"]["mcnemar_p"] == pytest.approx(0.5)  # 2 discordant pairs, both one way: 2 x 1/4
    assert result["completion_tokens"]["difference"]["mean"] == pytest.approx(-7.5)  # (0 - 10 - 20 + 0) / 4
    assert result["completion_tokens"]["truncated"] == [0.25, 0.25]


def test_the_readme_section_is_rendered_from_the_result(tmp_path):
    assert "No CPU study has been published yet" in cpu_study.markdown(tmp_path / "absent.json")
    a = records([TAGGED, UNTAGGED], [10, 20])
    result = {
        "prompts_untrained": cpu_study.paired(a, a, ("system prompt", "one-shot")),
        "experiments": {},
        "provenance": cpu_study.provenance(120, "python -m utils.cpu_study --steps 0"),
    }
    cpu_study.runs.write_json(tmp_path / "cpu_study.json", result)
    text = cpu_study.markdown(tmp_path / "cpu_study.json")
    assert "n = 2 test questions" in text and "| `<answer>` tags | 0.50 [" in text and "trained nothing" in text
