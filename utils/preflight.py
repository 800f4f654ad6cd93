"""Preflight: what a run needs of this machine and the outside, checked in the config cell before any model loads:
the model's availability, the loggers' and engines' packages, a run folder that takes files, and the push to the hub.
"""

import importlib.util
import os
from pathlib import Path

from utils.checks import closest
from utils.config import DEFAULT_MODEL, ExperimentConfig
from utils.data import hub_reachable
from utils.named_models import GGUF_MODELS, NAMED_MODELS
from utils.session import how_to_add_secret, hub_repo_problems

# The loggers report_to can name, and the package each needs (transformers' integrations, as installed by pip).
LOGGER_PACKAGES = {
    "wandb": "wandb", "tensorboard": "tensorboard", "trackio": "trackio", "comet_ml": "comet_ml", "mlflow": "mlflow",
    "neptune": "neptune", "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab", "codecarbon": "codecarbon",
    "dagshub": "dagshub", "flyte": "flytekit", "azure_ml": "azureml",
}  # fmt: skip


def integration_problems(cfg: ExperimentConfig) -> list[str]:
    """A logger or generation engine the run asks for whose package is missing: named with the install line, in the
    config cell rather than after the model has loaded."""
    problems = []
    for name in [part.strip() for part in str(cfg.report_to).split(",")]:
        package = LOGGER_PACKAGES.get(name)
        if package and importlib.util.find_spec(package.split(".")[0]) is None:
            problems.append(f"report_to={cfg.report_to!r} needs {package}: pip install {package}, or report_to='none'")
    if cfg.trl_args.get("use_vllm") and importlib.util.find_spec("vllm") is None:
        problems.append("trl_args['use_vllm']=True needs vLLM: pip install -r requirements-vllm.txt in a fresh "
                        "environment (a GPU of compute capability 8.0 or newer), or leave use_vllm off")  # fmt: skip
    return problems


def run_root_problems(run_root) -> list[str]:
    """The run folder's parent must take files: made here, with a probe file written and removed, so a path under a
    file or a read-only folder fails in the config cell, not after the baseline's evaluation."""
    root = Path(run_root)
    probe = root / f".kit-write-probe-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        return [f"run_root={str(run_root)!r}: run folders cannot be written there ({error.strerror or error}: "
                f"{error.filename or root}); choose a folder you can write (RUN_ROOT in the notebook)"]  # fmt: skip
    return []


def model_name_problems(model_name: str) -> list[str]:
    """A model that cannot load here: a named model whose package is missing, or a hub model the hub would have to
    serve while it cannot be reached (it would retry for a minute, then fail after the config cell)."""
    if model_name in GGUF_MODELS:
        spec = GGUF_MODELS[model_name]
        modules = [(req, module) for req, module, _, _ in spec.parts] + [("gguf==0.19.0", "gguf")]
        missing = [req for req, module in modules if importlib.util.find_spec(module) is None]
        return [f"model_name={model_name!r} needs {', '.join(missing)}: {spec.install}"] if missing else []
    if model_name in NAMED_MODELS or model_name == DEFAULT_MODEL or Path(model_name).is_dir():
        return []
    if hub_reachable() or _in_hub_cache(model_name):
        return []
    offline = [DEFAULT_MODEL, *NAMED_MODELS]
    close = closest(model_name, offline)
    return [
        f"model_name={model_name!r}: the hub cannot be reached and this model is neither downloaded nor a local "
        f"folder. Offline: {DEFAULT_MODEL!r} (its tokenizer is bundled; weights must be in the hub cache), "
        f"{', '.join(map(repr, NAMED_MODELS))}, or a local folder" + (f" (did you mean {close!r}?)" if close else "")
    ]


def check_push(repo_id: str | None) -> None:
    """Before any model loads: a push target is a well-formed repo id, a token was found (``utils.session``), and,
    where the hub can be reached, the token may write there. Raises ValueError naming what to fix."""
    if repo_id is None:
        return
    problems = hub_repo_problems(repo_id)
    if not problems and not os.environ.get("HF_TOKEN"):
        problems = [f"HUB_REPO_ID={repo_id!r} needs a Hugging Face token with write access, and HF_TOKEN was not "
                    f"found: {how_to_add_secret('HF_TOKEN')}"]  # fmt: skip
    if not problems and not hub_reachable():
        print(f"The hub cannot be reached now: write access to {repo_id} is not checked, and the push will fail "
              "unless the hub is back by then.")  # fmt: skip
    elif not problems:
        problems = _write_access_problems(repo_id)
    if problems:
        raise ValueError("The push to the hub would fail after training:\n- " + "\n- ".join(problems))
    print(f"push to {repo_id}: checked")


def _write_access_problems(repo_id: str) -> list[str]:
    from huggingface_hub import HfApi

    try:
        who = HfApi().whoami(token=os.environ["HF_TOKEN"])
    except Exception as error:  # an invalid or revoked token; the message never holds the token
        return [f"the hub refused HF_TOKEN ({type(error).__name__}): check it, or make a new one at "
                "huggingface.co/settings/tokens"]  # fmt: skip
    namespace = repo_id.split("/")[0]
    owners = [who.get("name"), *(org.get("name") for org in who.get("orgs", []))]
    role = who.get("auth", {}).get("accessToken", {}).get("role")
    if role == "read":
        return ["HF_TOKEN is a read token: make one with write access at huggingface.co/settings/tokens"]
    if namespace not in owners:
        return [f"HF_TOKEN belongs to {who.get('name')!r}, who cannot write to {namespace!r} (yours: "
                f"{', '.join(map(repr, owners))})"]  # fmt: skip
    return []


def _in_hub_cache(model_name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(model_name, "config.json"), str)
    except Exception:  # an id the hub would refuse: not cached either
        return False
