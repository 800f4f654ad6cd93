#!/usr/bin/env bash
# The wheels the GPU machine lacks for the kit, downloaded here (it has no registry): .whl/ for the kit's
# transformers + PEFT path and .whl-unsloth/ for Unsloth, both git-excluded. Python 3.12, manylinux x86_64,
# --no-deps, one version of each. The machine already has torch 2.11 (CUDA 13), transformers 5.17, peft, accelerate,
# pandas, pyarrow, scipy, statsmodels, matplotlib, seaborn, tqdm (see the device tool's KINDS.md).
# A call carries at most 64 MiB with the repo: this prints what fits, and what needs a call of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
for folder in .whl .whl-unsloth; do
  grep -qx "/$folder/" .git/info/exclude 2>/dev/null || echo "/$folder/" >> .git/info/exclude
  rm -rf "$folder" && mkdir -p "$folder"
done
fetch() {
  local folder=$1; shift
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$folder" "$@"
}
# trl and datasets, and what datasets needs that the machine lacks (fsspec at datasets' upper bound)
fetch .whl trl==1.14.2 datasets==4.8.5 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.2.0
# Unsloth and what it needs beyond the above
fetch .whl-unsloth unsloth==2026.10.9 unsloth_zoo==2026.10.9 tyro cut_cross_entropy msgspec \
  hf_transfer diffusers json5 nest-asyncio structlog torchao bitsandbytes docstring-parser shtab \
  typeguard
# bitsandbytes alone is 41 MiB and Unsloth 27: the stack is split in two folders that each fit a call beside the repo.
mkdir -p .whl-unsloth-2 && mv .whl-unsloth/bitsandbytes-*.whl .whl-unsloth-2/
grep -qx "/.whl-unsloth-2/" .git/info/exclude || echo "/.whl-unsloth-2/" >> .git/info/exclude
size() { du -cb "$@" 2>/dev/null | tail -1 | cut -f1; }
mib() { echo $(( ($1 + 1048575) / 1048576 )); }
repo=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
core=$(size .whl/*.whl); first=$(size .whl-unsloth/*.whl); second=$(size .whl-unsloth-2/*.whl)
echo "repo $(mib "$repo") MiB; .whl $(mib "$core") MiB (trl, datasets, ...); .whl-unsloth $(mib "$first") MiB and" \
  ".whl-unsloth-2 $(mib "$second") MiB (Unsloth and its needs); a call carries 64 MiB"
(( repo + core <= 64 * 1048576 )) || { echo "the core wheels do not fit a call"; exit 1; }
echo "Call 1, the transformers + PEFT path: carry .whl and .whl-unsloth-2 (bitsandbytes waits on the machine)."
echo "Call 2, within 30 s while the machine is warm, Unsloth: carry .whl and .whl-unsloth; .whl-unsloth-2 is still"
echo "there (paths not carried stay). A machine that went back starts bare: then Unsloth cannot be measured."
for call in "$core + $second" "$core + $first"; do
  (( repo + $(( call )) <= 64 * 1048576 )) || { echo "a call would carry more than 64 MiB"; exit 1; }
done
