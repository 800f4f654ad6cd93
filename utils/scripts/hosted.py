"""What ``pip install -r requirements.txt`` does on the hosted notebook images, checked offline from their published
package lists (``utils/assets/hosted``, with sources and dates): pip resolves the requirements for the image's Python
against a stand-in environment that holds exactly the image's packages (metadata only), without installing anything.
The check fails if torch would be replaced (gigabytes, and a broken torchvision); everything else it replaces is
listed in the README.

    python -m utils.scripts.hosted     # both images; writes chart/hosted_install.json (needs the package registry)
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import venv
import zipfile
from pathlib import Path

from utils import REPO_ROOT, runs

HOSTED_DIR = REPO_ROOT / "utils" / "assets" / "hosted"
RESULT = REPO_ROOT / "chart" / "hosted_install.json"
IMAGES = {
    "Colab GPU": dict(freeze="colab-pip-freeze.gpu.txt", python="3.13", listed="2026-08-19"),
    "Kaggle GPU (the Colab image it starts from)": dict(
        freeze="colab-2026-05-08-pip-freeze.gpu.txt", python="3.12", listed="2026-05-08"
    ),
}
# Both images run Ubuntu 22.04 (glibc 2.35) on x86_64: every manylinux tag up to 2.35.
PLATFORMS = ["manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 36))]
# Published only as source, and pip resolves for another Python with wheels only: metadata-only stand-ins (pure
# Python, no dependencies, as the real packages are) let it go on. Pulled in by lm_eval.
SOURCE_ONLY = {"sqlitedict": "2.1.0", "word2number": "1.1"}
KEPT_WHOLE = ("torch",)  # replacing these is a failure, not a note


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_freeze(path) -> dict[str, str]:
    """A ``pip freeze`` list as name -> version (``name @ url`` lines: the version in the file name, when it has
    one)."""
    packages = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            packages[normalise(name)] = version.strip()
        elif " @ " in line:
            name, url = line.split(" @ ", 1)
            spelled = "[-_.]".join(map(re.escape, re.split(r"[-_.]", name.strip())))
            found = re.search(rf"{spelled}-([0-9][^-/]*?)(?:-|\.tar|\.zip)", url, re.IGNORECASE)
            if found:
                packages[normalise(name)] = found.group(1)
    return packages


def _dist_info(name: str, version: str) -> str:
    return f"{name.replace('-', '_')}-{version}.dist-info"


def stand_in_environment(folder: Path, packages: dict[str, str]) -> Path:
    """A virtual environment without pip whose site-packages hold every package's metadata and nothing else: pip
    sees them installed. Returns its Python."""
    venv.create(folder, with_pip=False)
    python = folder / "bin" / "python"
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())  # fmt: skip
    for name, version in packages.items():
        info = site / _dist_info(name, version)
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("pip\n")
        (info / "RECORD").write_text("")
    return python


def stand_in_wheels(folder: Path, packages: dict[str, str]) -> Path:
    """Metadata-only wheels for packages published only as source."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, version in packages.items():
        info = _dist_info(name, version)
        with zipfile.ZipFile(folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
            tags = "Wheel-Version: 1.0\nGenerator: kit\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            wheel.writestr(f"{info}/WHEEL", tags)
            wheel.writestr(f"{info}/RECORD", "")
    return folder


def resolve(image: str, requirements=REPO_ROOT / "requirements.txt") -> dict:
    """What installing ``requirements`` on ``image`` would add and replace, from a dry-run resolution."""
    spec = IMAGES[image]
    installed = read_freeze(HOSTED_DIR / spec["freeze"])
    with tempfile.TemporaryDirectory() as tmp:
        python = stand_in_environment(Path(tmp) / "env", installed)
        wheels = stand_in_wheels(Path(tmp) / "wheels", SOURCE_ONLY)
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip", "--python", str(python), "install", "--dry-run", "--quiet",
                   "--report", str(report), "--python-version", spec["python"],
                   *(part for platform in PLATFORMS for part in ("--platform", platform)),
                   "--only-binary=:all:", "--find-links", str(wheels), "-r", str(requirements)]  # fmt: skip
        started = time.time()
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip could not resolve {Path(requirements).name} for {image}:\n{done.stderr[-3000:]}")
        to_install = {normalise(item["metadata"]["name"]): item["metadata"]["version"]
                      for item in json.loads(report.read_text())["install"]}  # fmt: skip
    replaced = {name: [installed[name], version] for name, version in sorted(to_install.items()) if name in installed}
    return {
        "image": image,
        "python": spec["python"],
        "package_list": f"utils/assets/hosted/{spec['freeze']} ({spec['listed']})",
        "torch": installed.get("torch"),
        "replaced": replaced,
        "added": sorted(f"{name} {version}" for name, version in to_install.items() if name not in installed),
        "replaces_kept_whole": sorted(set(KEPT_WHOLE) & set(replaced)),
        "seconds": round(time.time() - started),
    }


def check_all(out=RESULT) -> list[dict]:
    results = [resolve(image) for image in IMAGES]
    command = "python -m utils.scripts.hosted"
    runs.write_json(out, {"date": time.strftime("%Y-%m-%d"), "command": command, "images": results})
    return results


def markdown(path=RESULT) -> str:
    """The README's table of what the install changes on each image, from ``chart/hosted_install.json``."""
    if not Path(path).is_file():
        return "Not checked yet: `python -m utils.scripts.hosted` writes it."
    checked = runs.read_json(path)
    lines = [f"Checked on {checked['date']} with `{checked['command']}` (a dry-run resolution of `requirements.txt` "
             "against each image's published package list; nothing is installed).\n",
             "| image | Python | torch | packages replaced | packages added |", "|---|---|---|---|---|"]  # fmt: skip
    for r in checked["images"]:
        torch = f"{r['torch']}, " + ("**replaced**" if r["replaces_kept_whole"] else "kept")
        replaced = ", ".join(f"{name} {old} → {new}" for name, (old, new) in r["replaced"].items()) or "none"
        lines.append(f"| {r['image']} ({r['package_list']}) | {r['python']} | {torch} | {replaced} | "
                     f"{len(r['added'])} |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(RESULT))
    args = parser.parse_args(argv)
    for r in check_all(Path(args.out)):
        print(f"{r['image']}: torch {'REPLACED' if r['replaces_kept_whole'] else 'kept'}; replaces "
              f"{', '.join(r['replaced']) or 'nothing'}; adds {len(r['added'])} ({r['seconds']} s)")  # fmt: skip


if __name__ == "__main__":
    main()
