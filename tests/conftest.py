import os

import pytest

from utils.runtime import import_unsloth_first

import_unsloth_first()  # on a CUDA machine with Unsloth: before anything imports transformers, so its patches apply
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tokenizer():
    from utils.model import load_tokenizer

    return load_tokenizer("tiny")
