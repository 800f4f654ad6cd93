"""The kit's GPU decisions, checked on CPU: the CUDA capability, the installed packages or the Unsloth module are
faked, the decision is the kit's own code."""

import importlib.machinery
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from utils import REPO_ROOT
from utils.experiments import make_config
from utils.model import LoadRecord, load_model, load_tokenizer, vllm_supported
from utils.model_cache import build_random_qwen2
from utils.runtime import pick_dtype


def fake_gpu(monkeypatch, capability, bf16_native):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16_native or including_emulation
    )


T4, A100 = (7, 5), (8, 0)


@pytest.mark.parametrize("capability, expected", [(T4, False), (A100, True)])
def test_vllm_only_where_it_can_run(monkeypatch, capability, expected):
    fake_gpu(monkeypatch, capability, bf16_native=capability >= A100)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real_find_spec(name, *a)
    )
    assert vllm_supported() is expected


def test_a_t4_gets_fp16_although_it_emulates_bf16(monkeypatch):
    fake_gpu(monkeypatch, T4, bf16_native=False)
    assert torch.cuda.is_bf16_supported()  # the emulation answer that misled the kit
    assert pick_dtype("auto") == torch.float16
    fake_gpu(monkeypatch, A100, bf16_native=True)
    assert pick_dtype("auto") == torch.bfloat16


def fake_unsloth(monkeypatch, loaded_dtype=torch.float16):
    """An Unsloth module whose FastLanguageModel records its arguments and returns the tiny model, with a vLLM engine
    attached only when fast_inference was asked for (as Unsloth does)."""
    calls = {}

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(**kwargs):
            calls["from_pretrained"] = kwargs
            model = build_random_qwen2("tiny", dtype=loaded_dtype)
            if kwargs["fast_inference"]:
                model.vllm_engine = object()
            return model, load_tokenizer("tiny")

        @staticmethod
        def get_peft_model(model, **kwargs):
            calls["get_peft_model"] = kwargs
            return model

    module = types.ModuleType("unsloth")
    module.__spec__ = importlib.machinery.ModuleSpec("unsloth", None)
    module.FastLanguageModel = FastLanguageModel
    monkeypatch.setitem(sys.modules, "unsloth", module)
    return calls


@pytest.mark.parametrize("capability, vllm_enabled", [(T4, False), (A100, True)])
def test_fast_inference_is_asked_for_only_on_capable_gpus_and_read_back_from_the_model(
    monkeypatch, capability, vllm_enabled
):
    cfg = make_config("exp2_oneshot", model_name="Qwen/Qwen2.5-0.5B-Instruct")  # checked on this CPU
    fake_gpu(monkeypatch, capability, bf16_native=capability >= A100)
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    sys.modules["vllm"].__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    calls = fake_unsloth(monkeypatch)
    model, tokenizer, backend = load_model(cfg)
    assert backend.name == "unsloth"
    assert calls["from_pretrained"]["fast_inference"] is vllm_enabled
    assert backend.fast_inference is vllm_enabled
    assert calls["get_peft_model"]["use_gradient_checkpointing"] is False  # the config's gradient_checkpointing


def test_vllm_context_fits_the_longest_eval_prompt_and_every_new_token(monkeypatch):
    from utils.model import LONGEST_EVAL_PROMPT_TOKENS

    cfg = make_config("exp2_oneshot", model_name="Qwen/Qwen2.5-0.5B-Instruct")  # checked on this CPU
    fake_gpu(monkeypatch, A100, bf16_native=True)
    calls = fake_unsloth(monkeypatch)
    load_model(cfg)
    assert calls["from_pretrained"]["max_seq_length"] >= LONGEST_EVAL_PROMPT_TOKENS + cfg.eval_max_new_tokens


@pytest.mark.parametrize("model_name", ["tiny", "smollm2-135m"])  # Qwen2.5's tokenizer and SmolLM2's
def test_longest_eval_prompt_constant_covers_the_bundled_test_sets(model_name):
    from utils.data import OOD_SETS, eval_set, prompt_token_count
    from utils.model import LONGEST_EVAL_PROMPT_TOKENS
    from utils.prompts import build_prompt
    from utils.runs import read_jsonl

    questions = [q for name in OOD_SETS for q in eval_set(name).load(None)["question"]]
    shared = REPO_ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"  # the full GSM8K test split, where present
    questions += [row["question"] for row in read_jsonl(shared)] if shared.is_file() else []
    tokenizer = load_tokenizer(model_name)
    longest = max(prompt_token_count(tokenizer, build_prompt(question, True)) for question in questions)
    assert longest <= LONGEST_EVAL_PROMPT_TOKENS


def test_precision_flags_follow_the_dtype_unsloth_loaded(tmp_path):
    """Unsloth loads fp16 on a T4 even when bf16 was asked for; GRPOConfig must then say fp16, not bf16."""
    from utils.trainer import grpo_config

    cfg = make_config("exp2_oneshot", precision="bf16")
    t4 = LoadRecord(name="unsloth", model_name=cfg.model_name, device="cuda", dtype="float16")
    args = grpo_config(cfg, tmp_path, t4)
    assert args.fp16 is True and args.bf16 is False


@pytest.mark.parametrize(
    "version, fine", [("2.9.1+cu126", False), ("2.10.0", True), ("2.14.1+cu128", True), ("2.15.0", False)]
)
def test_runtime_torch_is_checked_before_installing(monkeypatch, version, fine):
    import utils.runtime as runtime

    monkeypatch.setattr(runtime, "runtime", lambda: "colab")
    monkeypatch.setattr(runtime, "_has_gpu", lambda: True)
    monkeypatch.setattr(runtime, "installed_torch_version", lambda: version)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "unsloth" else real_find_spec(name, *a)
    )
    pip_calls = []
    monkeypatch.setattr(
        subprocess, "run", lambda command, **kw: pip_calls.append(command) or types.SimpleNamespace(returncode=0)
    )
    if fine:
        runtime.prepare_runtime()
        assert pip_calls and "requirements.txt" in pip_calls[0][-1]
    else:
        with pytest.raises(RuntimeError, match=rf"torch {re.escape(version)}.*>= 2.10 and < 2.15.*Fix:"):
            runtime.prepare_runtime()
        assert not pip_calls


def test_hosted_notebooks_install_neither_jupyter_nor_papermill():
    from utils.runtime import TORCH_RANGE

    lines = [line.split("#")[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    names = {line.split("=")[0].split(">")[0].split("<")[0] for line in lines if line}
    assert not names & {"jupyter", "papermill", "notebook", "ipykernel", "vllm"}
    (low, high) = TORCH_RANGE
    assert f"torch>={low[0]}.{low[1]},<{high[0]}.{high[1]}" in lines


@pytest.mark.parametrize("cuda_torch", [True, False])
def test_test_command_keeps_an_installed_cuda_torch(tmp_path, cuda_torch):
    """tests/run.sh with a fake python and ruff: it installs the CPU torch only when no CUDA torch is there."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text(f"""#!/usr/bin/env bash
echo "$@" >> {log}
case "$*" in
  *torch.version.cuda*) exit {0 if cuda_torch else 1} ;;
  *print\\(torch.__version__\\)*) echo 2.14.1+cu128 ;;
esac
exit 0
""")
    (fake / "ruff").write_text("#!/usr/bin/env bash\nexit 0\n")
    for script in fake.iterdir():
        script.chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(Path(REPO_ROOT) / "tests" / "run.sh"), "-k", "nothing"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text()
    assert ("torch==2.13.0" in calls) is not cuda_torch
    assert "pytest -k nothing" in calls


def test_only_the_kits_benchmark_worker_imports_unsloth_and_the_t4_cap_is_14_gib():
    from utils.scripts.bench import t4_memory_fraction, uses_unsloth

    assert uses_unsloth("kit") and not uses_unsloth("study")
    assert t4_memory_fraction(80.0) * 80.0 == pytest.approx(14.0)
