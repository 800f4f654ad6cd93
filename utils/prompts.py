"""The study's prompts, verbatim: a system prompt asking for XML output and an optional one-shot example."""

SYSTEM_PROMPT = "\nRespond in the following format:\n\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>\n"

XML_COT_FORMAT = "<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>\n"

ONE_SHOT_QUESTION = "What is the largest single-digit prime number?"
ONE_SHOT_ANSWER = XML_COT_FORMAT.format(
    reasoning="9 is divisble by 3 and 8 is divisible by 2, but 7 is prime.",  # the study's typo, kept
    answer="7",
)


def prompt_label(one_shot: bool) -> str:
    """How run files, tables and folder names call a prompt."""
    return "one-shot" if one_shot else "system prompt only"


def build_prompt(question: str, one_shot: bool) -> list[dict]:
    """Chat messages: system, [one-shot user, one-shot assistant], user question."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    if one_shot:
        messages += [
            {"role": "user", "content": ONE_SHOT_QUESTION},
            {"role": "assistant", "content": ONE_SHOT_ANSWER},
        ]
    messages.append({"role": "user", "content": question})
    return messages
