"""The runtime: detect Colab / Kaggle / local, install what is missing, import Unsloth before transformers; and what
this machine can run: the precision, the processes torchrun or accelerate started.

Imports nothing heavy at module level: it runs before the packages it installs.
"""

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

from utils import REPO_ROOT

REQUIRED = ["torch", "transformers", "trl", "peft", "datasets", "pandas", "matplotlib", "seaborn", "statsmodels"]
# Unsloth 2026.10 supports torch < 2.15, and the xformers it pulls needs torch >= 2.10. Outside that range pip would
# replace the runtime's torch (gigabytes) and break its torchvision.
TORCH_RANGE = ((2, 10), (2, 15))


def runtime() -> str:
    if "COLAB_RELEASE_TAG" in os.environ or "COLAB_GPU" in os.environ:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
        return "kaggle"
    return "local"


def _has_gpu() -> bool:
    try:
        return subprocess.run(["nvidia-smi"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def installed_torch_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def check_torch_for_unsloth(version: str | None) -> None:
    """Stop before installing when the runtime's torch is outside the range Unsloth and its xformers accept."""
    if version is None:
        return
    major_minor = tuple(int(part) for part in version.split("+")[0].split(".")[:2])
    low, high = TORCH_RANGE
    if not low <= major_minor < high:
        raise RuntimeError(
            f"This runtime has torch {version}, but Unsloth needs torch >= {low[0]}.{low[1]} and < "
            f"{high[0]}.{high[1]}; "
            "installing it here would replace torch (several GB) and break torchvision. Fix: restart on a runtime "
            f"whose torch is in that range, or first run `pip install 'torch>={low[0]}.{low[1]},<{high[0]}.{high[1]}' "
            "torchvision` and restart the session."
        )


def prepare_runtime(smoke: bool = False) -> str:
    """Install requirements.txt on Colab/Kaggle GPU runtimes (once), say what is missing elsewhere, and import
    Unsloth first on CUDA so it can patch transformers and TRL. Returns the runtime's name."""
    where = runtime()
    missing = [p for p in REQUIRED if importlib.util.find_spec(p) is None]
    if where in ("colab", "kaggle") and _has_gpu() and (missing or importlib.util.find_spec("unsloth") is None):
        check_torch_for_unsloth(installed_torch_version())
        install_requirements(where)
        missing = [p for p in REQUIRED if importlib.util.find_spec(p) is None]
    if missing:
        hint = "pip install -r tests/requirements.txt  # CPU" if smoke else "pip install -r requirements.txt  # GPU"
        raise ModuleNotFoundError(f"Missing packages: {', '.join(missing)}. Install them with:\n    {hint}")
    import_unsloth_first()
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"runtime: {where}, {gpu}, torch {torch.__version__}")
    return where


def distribution_versions() -> dict[str, str]:
    from importlib import metadata

    return {dist.metadata["Name"].lower().replace("_", "-"): dist.version for dist in metadata.distributions()}


def imported_among(distributions) -> list[str]:
    """The distributions among ``distributions`` that this process has already imported a module of."""
    from importlib import metadata

    modules = metadata.packages_distributions()
    names = {d: [m for m, owners in modules.items() if d in {o.lower().replace("_", "-") for o in owners}]
             for d in distributions}  # fmt: skip
    return sorted(d for d, mods in names.items() if any(m in sys.modules for m in mods))


def install_requirements(where: str, requirements=REPO_ROOT / "requirements.txt", command=None) -> dict:
    """pip install the requirements with one summary line instead of pip's output (what changed, how long). A package
    the kernel had already imported and the install replaced would run old code beside new: that stops here with
    the fix, a restart, after which the install is skipped. Returns the changes, name -> (old, new)."""
    before, started = distribution_versions(), time.time()
    command = command or [sys.executable, "-m", "pip", "install", "-q", "-r", str(requirements)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip install -r {Path(requirements).name} failed:\n{result.stderr[-3000:]}")
    after = distribution_versions()
    changed = {name: (before.get(name), version) for name, version in after.items() if before.get(name) != version}
    replaced = [f"{name} {old} -> {new}" for name, (old, new) in sorted(changed.items()) if old is not None]
    added = len(changed) - len(replaced)
    print(f"{where}: installed {added} packages and replaced {len(replaced)} in {time.time() - started:.0f} s"
          + (f" ({'; '.join(replaced)})" if replaced else ""))  # fmt: skip
    stale = imported_among([name for name, (old, _) in changed.items() if old is not None])
    if stale:
        raise RuntimeError(
            f"The install replaced {', '.join(stale)}, which this session had already imported. Runtime > Restart "
            "session, then Run all: the rerun skips the install."
        )
    return changed


def import_unsloth_first() -> bool:
    """Import Unsloth where it can run (CUDA), before transformers and TRL, so its patches apply. Returns whether it
    was imported."""
    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None:
        import unsloth  # noqa: F401  (must come before transformers / trl)

        return True
    return False


def persistent_run_root(keep_on_drive: bool = True, smoke: bool = False) -> str | None:
    """Where runs survive the session: Google Drive on Colab (mounted here), /kaggle/working on Kaggle; None (the
    config's default, runs/) elsewhere, in smoke mode, or when switched off."""
    where = runtime()
    if smoke or not keep_on_drive or where == "local":
        return None
    if where == "kaggle":
        return "/kaggle/working/runs"
    from google.colab import drive

    drive.mount("/content/drive")
    return "/content/drive/MyDrive/grpo-math-kit/runs"


def bf16_supported() -> bool:
    """Native bf16 only: ``is_bf16_supported()`` says True on a T4 through slow emulation unless told otherwise."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def pick_dtype(precision: str = "auto"):
    """The torch dtype for a config's ``precision``: bf16 where the GPU supports it natively, fp16 on older GPUs such
    as the T4, fp32 on CPU; or as asked."""
    import torch

    if precision != "auto":
        return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    if not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if bf16_supported() else torch.float16


def rank_and_processes() -> tuple[int, int]:
    """This process's rank and the number of processes torchrun or accelerate launch started ((0, 1) otherwise), known
    before any process group starts."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def process_state():
    """Accelerate's state of this process: under torchrun / accelerate launch it starts the process group (gloo on a
    CPU, where accelerate must be told so before the trainer asks)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
