"""A stand-in for Kaggle's ``kaggle_secrets`` (tests only): secrets from ``secrets.json`` beside it."""

import json
from pathlib import Path

SECRETS = Path(__file__).resolve().parent / "secrets.json"


class BackendError(Exception):
    pass


class UserSecretsClient:
    def get_secret(self, label):
        secrets = json.loads(SECRETS.read_text()).get("kaggle", {}) if SECRETS.is_file() else {}
        if label not in secrets:
            raise BackendError(f"Unexpected response from the service. Response: {{'errors': ['No user secrets exist "
                               f"for kernel id 1 and label {label}.']}}")
        return secrets[label]
