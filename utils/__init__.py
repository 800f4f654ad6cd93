"""The GRPO math kit: prompts, rewards, data, training, evaluation and analysis for the study's four experiments."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
