"""Run the whole study: execute the notebooks in order with papermill, writing runs/ and chart/.

    python -m utils.scripts.pipeline            # the real experiments (a CUDA GPU; hours)
    python -m utils.scripts.pipeline --smoke    # tiny random model, a few CPU steps, bundled data: minutes, offline
    python -m utils.scripts.pipeline --cpu      # the study's architecture on a CPU: Exp2 vs Exp4 (hours; resumable)
    python -m utils.scripts.pipeline --only 02 05
    python -m utils.scripts.pipeline --seeds 42 43 44   # every experiment with three seeds

Executed notebooks are saved next to the runs (runs/notebooks/, or runs/smoke/notebooks/), outputs included.
Smoke runs write to runs/smoke/ and their charts to runs/smoke/chart/, never over the real ones. They are
disposable: each smoke run starts fresh (experiments and baselines) rather than resuming one made by older code.
"""

import argparse
import shutil
import sys

from utils import REPO_ROOT

NOTEBOOKS = [
    "00_data_prep",
    "01_exp1_no_oneshot",
    "02_exp2_oneshot",
    "03_exp3_cosine_penalty",
    "04_exp4_cosine_no_penalty",
    "05_analysis",
]
EXPERIMENT_PREFIXES = ("01", "02", "03", "04")
SMOKE_ROOT = "runs/smoke"


# The smoke run trains two seeds of the pair the analysis compares, so notebook 05 shows its across-seed tables.
SMOKE_SEEDS = {"02": [42, 43], "04": [42, 43]}


def notebook_parameters(name: str, smoke: bool, seeds: list[int] | None = None) -> dict:
    if name.startswith("05"):
        return {"RUNS_ROOT": SMOKE_ROOT, "CHART_DIR": f"{SMOKE_ROOT}/chart"} if smoke else {}
    if name.startswith("00"):
        return {"SMOKE": smoke, "SAVE_LOCAL_COPY": not smoke}
    seeds = seeds or (SMOKE_SEEDS.get(name[:2]) if smoke else None)
    return {"SMOKE": smoke, **({"SEEDS": seeds} if seeds else {})}


def select(only: list[str] | None) -> list[str]:
    if not only:
        return NOTEBOOKS
    chosen = [nb for nb in NOTEBOOKS if any(nb.startswith(prefix) for prefix in only)]
    unknown = [prefix for prefix in only if not any(nb.startswith(prefix) for nb in NOTEBOOKS)]
    if unknown:
        raise SystemExit(f"No notebook matches {unknown}; choose from {NOTEBOOKS}.")
    return chosen


def run(smoke: bool = False, only: list[str] | None = None, seeds: list[int] | None = None):
    import papermill

    from utils.analysis import eval_table

    chosen = select(only)
    if not smoke and any(nb.startswith(EXPERIMENT_PREFIXES) for nb in chosen):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit(
                "The real experiments need a CUDA GPU (a free Colab or Kaggle T4 works). On a CPU run "
                "`python -m utils.scripts.pipeline --smoke`, or `--only 00 05`."
            )
    runs_root = REPO_ROOT / (SMOKE_ROOT if smoke else "runs")
    out_dir = runs_root / "notebooks"
    if smoke:  # fresh each time: experiments and the baselines they share
        for stale in [*runs_root.glob("exp*"), *runs_root.glob("baseline_*")]:
            shutil.rmtree(stale, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        print(f"=== {name}", flush=True)
        executed = out_dir / f"{name}.ipynb"
        try:
            papermill.execute_notebook(
                str(REPO_ROOT / "notebooks" / f"{name}.ipynb"),
                str(executed),
                parameters=notebook_parameters(name, smoke, seeds),
                cwd=str(REPO_ROOT),
                kernel_name="python3",
                progress_bar=False,
                log_output=False,
            )
        except papermill.PapermillExecutionError as error:
            raise SystemExit(
                f"{name} failed in cell {error.exec_count}: {error.ename}: {error.evalue}\n"
                f"The executed notebook, with the error and every output before it, is {executed}"
            ) from None
    evals = eval_table(runs_root)
    if len(evals):
        print(evals[["n", "acc_strict", "acc_numeric"]].round(3).to_string())
    print(f"Executed notebooks: {out_dir}")
    return out_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny random model, a few CPU steps, bundled data")
    parser.add_argument("--only", nargs="+", metavar="NN", help="notebook number prefixes to run, e.g. 02 05")
    parser.add_argument("--seeds", type=int, nargs="+", help="train every experiment with these seeds (SEEDS)")
    parser.add_argument(
        "--cpu", action="store_true", help="the CPU study on Qwen2.5-Coder-0.5B: Exp2 vs Exp4 (scripts/qwen_study.py)"
    )
    parser.add_argument("--data-dir", help="with --cpu: a folder with GSM8K's JSONL files; default: the hub")
    args = parser.parse_args(argv)
    if args.cpu:
        from utils.scripts.qwen_study import run_study

        run_study(args.data_dir)
    else:
        run(args.smoke, args.only, args.seeds)


if __name__ == "__main__":
    sys.exit(main())
