"""Notebook setup: detect Colab / Kaggle / local, install what is missing, import Unsloth before transformers.

Imports nothing heavy at module level: it runs before the packages it installs.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ["torch", "transformers", "trl", "peft", "datasets", "pandas", "matplotlib", "seaborn"]


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


def prepare_runtime(smoke: bool = False) -> str:
    """Install requirements.txt on Colab/Kaggle GPU runtimes (once), say what is missing elsewhere, and import
    Unsloth first on CUDA so it can patch transformers and TRL. Returns the runtime's name."""
    where = runtime()
    missing = [p for p in REQUIRED if importlib.util.find_spec(p) is None]
    if where in ("colab", "kaggle") and _has_gpu() and (missing or importlib.util.find_spec("unsloth") is None):
        print(f"{where}: installing requirements.txt (a few minutes, once per session)...")
        result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(REPO_ROOT / "requirements.txt")], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"pip install -r requirements.txt failed:\n{result.stderr[-3000:]}")
        missing = [p for p in REQUIRED if importlib.util.find_spec(p) is None]
    if missing:
        hint = "pip install -r tests/requirements.txt  # CPU" if smoke else "pip install -r requirements.txt  # GPU"
        raise ModuleNotFoundError(f"Missing packages: {', '.join(missing)}. Install them with:\n    {hint}")
    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None:
        import unsloth  # noqa: F401  (must come before transformers / trl)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"runtime: {where}, {gpu}, torch {torch.__version__}")
    return where
