"""The notebook session: everything that may need a person happens here, in the first minute (Drive authorisation,
secrets), so that *Run all* then needs nobody; and the session's time budget, so a run that does not fit a free
session stops at a checkpoint early enough for its evaluation.

Secrets are read from Colab's secrets (``google.colab.userdata``), Kaggle's (``kaggle_secrets``) or the environment,
into this process's environment only: never a notebook parameter, a config field, a log or a file. Imports nothing
heavy: it runs before the install.
"""

import os
import re
import time
from dataclasses import dataclass

from utils.runtime import persistent_run_root, runtime

# Colab: "virtual machines that have maximum lifetimes that can be as much as 12 hours" for free users (Colab FAQ,
# research.google.com/colaboratory/faq.html); Kaggle: "12 hours execution time per session" for CPU and GPU notebooks
# (kaggle.com/docs/notebooks). Free sessions can end sooner (idle time-outs, demand); lower TIME_BUDGET if yours do.
FREE_TIER_HOURS = {"colab": 12.0, "kaggle": 12.0}
# Names that hold secrets: refused in OVERRIDES and trl_args (they would be saved in config.json and shown).
SECRET_NAME_RE = re.compile(r"(^|_)(token|api_?key|password|passwd|secret|credentials?)(_|$)", re.IGNORECASE)
SECRET_VALUE_RE = re.compile(r"^(hf_[A-Za-z0-9]{20,}|[0-9a-f]{40})$")  # Hugging Face and Weights & Biases keys
HUB_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def how_to_add_secret(name: str) -> str:
    """Where to put a secret so the kit finds it, for the runtime at hand."""
    where = runtime()
    if where == "colab":
        return (f"add it in Colab's Secrets (the key icon in the left sidebar): name {name}, your value, and turn on "
                "'Notebook access'; then run this cell again")  # fmt: skip
    if where == "kaggle":
        return f"add it in Kaggle's Add-ons > Secrets as {name}, attach it to this notebook, and run this cell again"
    return f"set it in the environment before starting Jupyter (export {name}=...)"


def _from_colab(name: str) -> str | None:
    try:
        from google.colab import userdata
    except ImportError:
        return None
    try:  # SecretNotFoundError, NotebookAccessError, or TimeoutException outside the Colab UI (after 10 s)
        return userdata.get(name) or None
    except Exception:
        return None


def _from_kaggle(name: str) -> str | None:
    try:
        from kaggle_secrets import UserSecretsClient
    except ImportError:
        return None
    try:  # BackendError when missing or not attached, CredentialError off Kaggle
        return UserSecretsClient().get_secret(name) or None
    except Exception:
        return None


def find_secret(name: str) -> tuple[str | None, str | None]:
    """A secret's value and where it was found: Colab's secrets, Kaggle's, or the environment (in that order)."""
    where = runtime()
    sources = [("Colab's secrets", _from_colab)] if where == "colab" else []
    sources += [("Kaggle's secrets", _from_kaggle)] if where == "kaggle" else []
    sources.append(("the environment", os.environ.get))
    for label, read in sources:
        if value := read(name):
            return value, label
    return None, None


def load_secret(name: str, needed_for: str | None = None) -> str | None:
    """Put a secret into this process's environment (where huggingface_hub and wandb read it) and say where it came
    from, never what it is. Returns the source, or None when no source has it (with how to add one)."""
    value, source = find_secret(name)
    if value is None:
        need = f" {needed_for} needs it:" if needed_for else " (optional)"
        print(f"{name}: not found.{need} {how_to_add_secret(name)}.")
        return None
    os.environ[name] = value
    print(f"{name}: read from {source} (kept in memory only, never written).")
    return source


def secret_problems(values, where: str) -> list[str]:
    """Secret-looking entries in a dict of settings (keys named like tokens or keys, values shaped like them), named
    by key only: the value is never repeated."""
    problems = []
    for key, value in (values or {}).items():
        label = f"{where}[{key!r}]"
        if isinstance(value, dict):
            problems += secret_problems(value, label)
        elif SECRET_NAME_RE.search(str(key)) or (isinstance(value, str) and SECRET_VALUE_RE.match(value.strip())):
            problems.append(
                f"{label} holds a secret, and settings are saved with the run and shown: remove it. The kit reads "
                "HF_TOKEN and WANDB_API_KEY from Colab's or Kaggle's secrets or the environment (see the notebook's "
                "'Connect' cell)"
            )
    return problems


def hub_repo_problems(repo_id: str | None) -> list[str]:
    """A push target that is not a Hugging Face repo id (``you/name``), checked before any model loads."""
    if repo_id is None or HUB_REPO_ID_RE.match(repo_id):
        return []
    return [f"HUB_REPO_ID={repo_id!r}: use 'namespace/name' (your user or organisation, a slash, the model's name)"]


def session_started() -> tuple[float, str]:
    """When this session began, as the kit can tell it: the VM's boot on Colab and Kaggle (a notebook cannot read the
    time it has left), else now, the first call in this kernel."""
    if runtime() in FREE_TIER_HOURS:
        try:
            with open("/proc/uptime") as f:
                return time.time() - float(f.read().split()[0]), "the VM's start (its uptime)"
        except OSError:
            pass
    return time.time(), "this notebook's first cell"


@dataclass(frozen=True)
class TimeBudget:
    """Hours this session may spend, counted from ``started`` (epoch seconds): training stops at a checkpoint when the
    next step and the evaluation reserve would no longer fit."""

    hours: float
    started: float
    counted_from: str

    @property
    def deadline(self) -> float:
        return self.started + self.hours * 3600

    def left(self) -> float:
        return self.deadline - time.time()

    def describe(self) -> str:
        return (f"{self.hours:g} h counted from {self.counted_from}: {max(self.left(), 0) / 3600:.1f} h left "
                f"(until {time.strftime('%H:%M', time.localtime(self.deadline))})")  # fmt: skip


def time_budget(hours="auto") -> TimeBudget | None:
    """The session's budget: ``"auto"``, the free tier's session limit on Colab and Kaggle (none elsewhere); a number
    of hours; or None (no limit)."""
    if hours == "auto":
        hours = FREE_TIER_HOURS.get(runtime())
    if hours is None:
        return None
    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or hours <= 0:
        raise ValueError(f"TIME_BUDGET={hours!r}: use a number of hours > 0, 'auto' (the free tier's) or None (off).")
    return TimeBudget(float(hours), *session_started())


@dataclass(frozen=True)
class Session:
    run_root: str | None
    budget: TimeBudget | None


def connect(run_root=None, keep_runs_on_drive=True, smoke=False, hub_repo_id=None, overrides=None, hours="auto"):
    """The notebook's first steps, the only ones that may ask for something: mount Drive for the runs (Colab), read
    the secrets the run needs, check the push target's name, and set the time budget. Returns the ``Session``."""
    problems = hub_repo_problems(hub_repo_id)
    if problems:
        raise ValueError(problems[0])
    budget = time_budget(hours)
    run_root = run_root or persistent_run_root(keep_runs_on_drive, smoke)
    load_secret("HF_TOKEN", f"HUB_REPO_ID={hub_repo_id!r}" if hub_repo_id else None)
    report_to = overrides.get("report_to") if isinstance(overrides, dict) else None
    if report_to and "wandb" in str(report_to):
        load_secret("WANDB_API_KEY", f"report_to={report_to!r}")
    print(f"runs go to {run_root or 'runs/ (the config default)'}")
    print("time budget: " + (budget.describe() if budget else "none (TIME_BUDGET=None)"))
    return Session(run_root, budget)
