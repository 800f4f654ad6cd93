"""Several seeds of one experiment at once: one process per device, each its own run.

    python -m utils.train exp2_oneshot --seeds 42 43 --devices 0 1        # a Kaggle T4 x2: two seeds at once
    python -m utils.train exp2_oneshot --seeds 42 43 44 45 --devices 0 1  # four seeds, two at a time

Each seed is an ordinary ``python -m utils.train`` process that sees one device (``CUDA_VISIBLE_DEVICES``), so on a
GPU it can use Unsloth; it trains into its own run folder and writes its output to ``<run folder>/console.log``. When
there are more seeds than devices, the next seed starts on the first device that frees up. The untrained baseline is
evaluated once, before the seeds start, when they share a base model (random weights differ by seed, so each of those
evaluates its own).

This is not data parallelism: ``torchrun --nproc_per_node N`` trains one run with its batch split over N processes
(the same run, faster, transformers + PEFT only), while this trains N independent runs at once (more seeds in the same
time, for statistics across seeds). Pick torchrun to finish one long run sooner; pick this to get several seeds.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from utils import REPO_ROOT


def seed_command(experiment: str, smoke: bool, settings: list[str], seed: int, *flags: str) -> list[str]:
    """The command line of one seed's process."""
    return [
        sys.executable,
        "-m",
        "utils.train",
        experiment,
        *(["--smoke"] if smoke else []),
        *[part for pair in settings for part in ("--set", pair)],
        "--seeds",
        str(seed),
        *flags,
    ]


def device_environment(device: str, processes: int) -> dict:
    """The environment of a process that may use ``device`` only: a GPU index, or 'cpu' (no GPU, and its share of
    the CPU cores)."""
    environment = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    if device == "cpu":
        environment["CUDA_VISIBLE_DEVICES"] = ""
        environment["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
    else:
        environment["CUDA_VISIBLE_DEVICES"] = device
    return environment


def run_seeds_on_devices(
    experiment: str, smoke: bool, settings: list[str], seeds: list[int] | None, devices: list[str], evaluate_runs=True
) -> list[Path]:
    """Train ``seeds`` at once, at most one per device; returns the run folders. Every config is made (and checked)
    before any process starts; a seed that fails is named with its log, after the others have finished."""
    import dataclasses

    from utils.evaluate import baseline_dir
    from utils.experiments import make_config
    from utils.train import parse_overrides

    if not seeds:
        raise SystemExit("--devices runs one seed per device: give the seeds too, e.g. --seeds 42 43 --devices 0 1.")
    invalid = [d for d in devices if d != "cpu" and not d.isdigit()]
    if invalid:
        raise SystemExit(f"--devices {' '.join(invalid)}: give GPU indices (0 1) or 'cpu'.")
    cfg = make_config(experiment, smoke=smoke, overrides=parse_overrides(settings))
    if cfg.run_name:
        raise SystemExit("run_name names one folder, and every seed needs its own: leave run_name unset.")
    configs = {seed: dataclasses.replace(cfg, seed=seed) for seed in seeds}
    shared_baseline = evaluate_runs and len({baseline_dir(c) for c in configs.values()}) == 1
    if shared_baseline:
        print(f"Evaluating the untrained baseline once, on device {devices[0]} ...", flush=True)
        command = seed_command(experiment, smoke, settings, seeds[0], "--baseline-only")
        if subprocess.run(command, cwd=REPO_ROOT, env=device_environment(devices[0], 1)).returncode != 0:
            raise SystemExit("The baseline evaluation failed; its output is above.")
    flags = ("--no-baseline",) if shared_baseline else () if evaluate_runs else ("--no-eval",)
    pending, free, running, finished = list(seeds), list(range(len(devices))), {}, {}
    while pending or running:
        while pending and free:  # each --devices entry is a slot: "cpu cpu" runs two CPU processes at once
            slot, seed = free.pop(0), pending.pop(0)
            log = configs[seed].run_dir / "console.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            handle = log.open("a")
            process = subprocess.Popen(
                seed_command(experiment, smoke, settings, seed, *flags),
                cwd=REPO_ROOT,
                env=device_environment(devices[slot], len(devices)),
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
            running[slot] = (seed, process, handle, log)
            print(f"seed {seed} on device {devices[slot]}: {configs[seed].run_dir} (output: {log})", flush=True)
        for slot, (seed, process, handle, log) in list(running.items()):
            if process.poll() is not None:
                handle.close()
                finished[seed] = (process.returncode, log)
                free.append(slot)
                del running[slot]
                print(f"seed {seed} {'done' if process.returncode == 0 else 'FAILED'} (exit {process.returncode})")
        time.sleep(0.5)
    failed = {seed: log for seed, (code, log) in finished.items() if code != 0}
    if failed:
        raise SystemExit("Seeds that failed: " + "; ".join(f"{seed} (see {log})" for seed, log in failed.items()))
    return [configs[seed].run_dir for seed in seeds]
