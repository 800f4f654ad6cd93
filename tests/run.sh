#!/usr/bin/env bash
# The test command: install the CPU test environment (torch CPU build first), then run the whole suite offline.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -r tests/requirements.txt
python -m ipykernel install --sys-prefix --name python3 >/dev/null  # the notebooks run in this environment
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python -m pytest "$@"
