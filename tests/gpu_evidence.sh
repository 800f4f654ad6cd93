#!/usr/bin/env bash
# GPU evidence in one call: install the carried wheels, run the GPU tests, run the benchmark within a time budget,
# and write bench.json and evidence.log to the folder given ($OUT on the device machine).
#   on the device:  bash tests/gpu_evidence.sh "$OUT"               (carry .whl; and .whl-unsloth to measure Unsloth)
#   dry run (CPU):  bash tests/gpu_evidence.sh /tmp/evidence --dry-run
# Everything it starts finishes; what would overrun the budget is skipped and named in bench.json.
set -uo pipefail
OUT=${1:?usage: tests/gpu_evidence.sh OUT_DIR [--dry-run]}
MODE=${2:-}
BUDGET=${BUDGET:-480}  # seconds for the whole script, well inside a device call's 10 minutes
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
WORK=$(mktemp -d)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
started=$(date +%s)
{
  for folder in .whl .whl-unsloth .whl-unsloth-2; do
    compgen -G "$folder/*.whl" > /dev/null || continue
    if [ "$MODE" = "--dry-run" ]; then  # here: only that they would install on the device's Python 3.12
      python3 -m pip install -q --dry-run --no-index --no-deps --target "$WORK/check" --only-binary=:all: \
        --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 "$folder"/*.whl \
        && echo "$folder: every wheel installs on Python 3.12, manylinux x86_64" || { echo "$folder: not installable there"; exit 1; }
      continue
    fi
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
      "$folder"/*.whl || { echo "installing $folder failed"; exit 1; }
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
  done
  python3 -c "import torch, transformers, trl, datasets, peft; print('python', __import__('sys').version.split()[0], '| torch', torch.__version__, '| cuda', torch.cuda.is_available(), '| transformers', transformers.__version__, '| trl', trl.__version__, '| peft', peft.__version__, '| datasets', datasets.__version__)"
  python3 -c "import importlib.util as u; print('unsloth installed:', u.find_spec('unsloth') is not None)"
  if [ -d .whl-unsloth-2 ] && [ ! -d .whl-unsloth ]; then echo "(bitsandbytes carried for the Unsloth call that follows)"; fi
  echo "=== tests/test_gpu.py"
  timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py -rs
  echo "=== benchmark"
  left=$(( BUDGET - ($(date +%s) - started) ))
  if [ "$MODE" = "--dry-run" ]; then
    python3 -m utils.scripts.bench --steps 2 --lengths 8 --experiments exp2_oneshot --out-dir "$WORK/bench" --budget "$left"
  else
    python3 -m utils.scripts.bench --steps 3 --out-dir "$WORK/bench" --budget "$left"
  fi
  cp "$WORK/bench/bench.json" "$OUT/bench.json"
  echo "=== done in $(( $(date +%s) - started )) s: $OUT/bench.json"
} 2>&1 | tee "$OUT/evidence.log"
status=${PIPESTATUS[0]}
rm -rf "$WORK"
exit "$status"
