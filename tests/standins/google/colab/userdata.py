"""Stand-in for ``google.colab.userdata``: secrets from ``secrets.json`` beside the stand-ins, keyed by runtime."""

import json
from pathlib import Path

SECRETS = Path(__file__).resolve().parents[2] / "secrets.json"


class SecretNotFoundError(Exception):
    pass


class NotebookAccessError(Exception):
    pass


def get(key):
    secrets = json.loads(SECRETS.read_text()).get("colab", {}) if SECRETS.is_file() else {}
    if key not in secrets:
        raise SecretNotFoundError(f"Secret {key} does not exist.")
    return secrets[key]
