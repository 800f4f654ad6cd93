"""Stand-in for ``google.colab.drive``: mounting records the mount point in ``mounts.txt`` beside the stand-ins."""

from pathlib import Path

RECORD = Path(__file__).resolve().parents[2] / "mounts.txt"


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    with open(RECORD, "a") as f:
        f.write(f"{mountpoint}\n")
