from utils.prompts import ONE_SHOT_ANSWER, SYSTEM_PROMPT, build_prompt


def test_system_prompt_is_the_studys_verbatim():
    assert (
        SYSTEM_PROMPT
        == "\nRespond in the following format:\n\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>\n"
    )


def test_one_shot_prompt_has_example_between_system_and_question():
    messages = build_prompt("What is 2+2?", one_shot=True)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == "What is the largest single-digit prime number?"
    assert messages[2]["content"] == (
        "<reasoning>\n9 is divisble by 3 and 8 is divisible by 2, but 7 is prime.\n</reasoning>\n"
        "<answer>\n7\n</answer>\n"
    )
    assert messages[-1] == {"role": "user", "content": "What is 2+2?"}


def test_system_only_prompt():
    messages = build_prompt("Q", one_shot=False)
    assert messages == [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "Q"}]
    assert ONE_SHOT_ANSWER not in str(messages)
