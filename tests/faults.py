"""A lost runtime, as a reward that raises during a chosen step: for tests that interrupt training and resume it."""

from utils.rewards import build_rewards


class Disconnect(Exception):
    pass


DISCONNECT = {"at_step": None}  # set by a test; the reward's source stays the same, so reruns may resume


def disconnects(completions, trainer_state=None, **kwargs):
    """A zero reward that raises, as a lost runtime would, during the step DISCONNECT names."""
    if trainer_state is not None and trainer_state.global_step + 1 == DISCONNECT["at_step"]:
        raise Disconnect("runtime disconnected")
    return [0.0] * len(completions)


def even_token_share(completion_ids, **kwargs):
    """The share of a completion's tokens whose id is even: a reward on which any model's sampled completions differ,
    so GRPO has a signal (and the weights move) even where every study reward gives 0."""
    return [sum(t % 2 == 0 for t in ids) / max(len(ids), 1) for ids in completion_ids]


def fault_rewards(tokenizer):
    """The study's rewards, one any model can learn (so the weights really move), and the disconnect."""
    return build_rewards("standard", tokenizer) + [(even_token_share, 1.0), (disconnects, 0.0)]
