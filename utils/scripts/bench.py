"""Benchmark: does every experiment fit a free T4, and how much faster is the kit than the study's setup?

    python -m utils.scripts.bench                 # on a GPU: real Qwen2.5-0.5B architecture, random weights
    python -m utils.scripts.bench --steps 3       # on a CPU: the tiny model, to check that it works

Runs a fixed number of GRPO optimizer steps for two configurations, in one run, each in its own process
(so one's Unsloth patches and memory cannot affect the other):
  (a) study: full fine-tuning, plain transformers ``generate``, 4 prompts x 4 completions per step;
  (b) kit:   the kit's default (Unsloth LoRA with its fast generation where available, else PEFT LoRA).
Only the kit's worker imports Unsloth, so the study's worker runs plain TRL and transformers; each result records the
trainer class, optimizer and attention that actually ran. Completions are forced to fixed lengths (random weights never
stop on their own). On CUDA the T4 is emulated: memory capped at 14.0 GiB (a T4 has 15 GiB, of which PyTorch gets about
14.7 less the CUDA context; ``torch.cuda.set_per_process_memory_fraction``), fp16, SDPA attention. That emulates a T4's
memory, not its speed. Results go to ``runs/bench/bench.json`` and a printed table.
"""

import argparse
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

from utils import REPO_ROOT, runs
from utils.data import SAMPLE_DATA_DIR

T4_MEMORY_GIB = 14.0
EPOCH_STEPS = 1866  # 7,464 training prompts / 4 prompts per step
# Memory bandwidth (GB/s) bounds token-by-token generation, the bulk of a GRPO step at this model size.
BANDWIDTH_GBS = {"T4": 320, "H100": 3350, "H200": 4800, "A100": 2039, "L4": 300}
CONFIGS = {
    "study": dict(lora_rank=0, use_unsloth=False, fast_inference=False),
    "kit": dict(),  # the kit's defaults: Unsloth where it is installed
    # Generation dominates a GRPO step: the kit's LoRA with other generation backends, side by side.
    "kit, generate": dict(use_unsloth=False),  # transformers + PEFT, TRL's default generate
    "kit, continuous batching": dict(use_unsloth=False, trl_args={"use_transformers_continuous_batching": True}),
    "kit, static cache": dict(use_unsloth=False, trl_args={"cache_implementation": "static"}),
}
BACKENDS = ["kit, generate", "kit, continuous batching", "kit, static cache"]
EVAL_BATCH_SIZES = [32, 64, 128]  # the greedy evaluation's throughput at the kit's eval_batch_size and around it
# Until a configuration of the same length has run, how long one is assumed to take (seconds, model load included).
ASSUMED_SECONDS = {True: {150: 90, 786: 200}, False: {8: 25, 16: 30}}


def uses_unsloth(config: str) -> bool:
    """Whether a configuration's worker imports Unsloth: the study's must run plain TRL and transformers."""
    return CONFIGS[config].get("use_unsloth", True)


def t4_memory_fraction(total_gib: float) -> float:
    """The share of a bigger GPU's memory that leaves PyTorch what a T4 would."""
    return min(1.0, T4_MEMORY_GIB / total_gib)


def cap_memory_like_t4() -> float | None:
    """Cap this process's GPU memory at a T4's usable share (``t4_memory_fraction``); the fraction, or None on a
    CPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    fraction = t4_memory_fraction(torch.cuda.get_device_properties(0).total_memory / 2**30)
    torch.cuda.set_per_process_memory_fraction(fraction)
    return fraction


def _worker(
    config: str, experiment: str, length: int, steps: int, model_name: str, out: Path, emulate_t4: bool
) -> None:
    """One measurement, in its own process: train ``steps`` GRPO steps and write the numbers as JSON."""
    if uses_unsloth(config):
        from utils.runtime import import_unsloth_first

        import_unsloth_first()
    import torch

    from utils.experiments import make_config
    from utils.model import load_model
    from utils.rewards import build_rewards
    from utils.trainer import train

    overrides = dict(CONFIGS[config])
    cap_fraction = cap_memory_like_t4() if emulate_t4 else None
    if cap_fraction is not None:
        overrides.update(precision="fp16", fast_inference=False)  # a T4 runs neither bf16 nor vLLM
    run_root = out.parent / "runs"
    cfg = make_config(
        experiment,
        model_name=model_name,
        data_dir=str(SAMPLE_DATA_DIR),
        max_steps=steps,
        max_completion_length=length,
        min_completion_length=length,
        probe_every=0,
        save_steps=10**6,
        run_root=str(run_root),
        name=f"{config}_{experiment}_{length}",
        allow_cpu=True,
        **overrides,
    )
    result = {
        "config": config,
        "experiment": experiment,
        "completion_length": length,
        "steps": steps,
        "t4_memory_cap_fraction": cap_fraction,
    }
    try:
        model, tokenizer, loaded = load_model(cfg)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        started = time.time()
        rewards = build_rewards(cfg.reward_set, tokenizer, **cfg.reward_settings)
        run_dir = train(cfg, model, tokenizer, rewards, loaded)
        wall = time.time() - started
        rows = runs.read_rows(run_dir / runs.LOG)
        step_times = [r["step_time"] for r in rows[1:]] or [r["step_time"] for r in rows]  # the first step warms up
        seconds_per_step = statistics.median(step_times)
        completions = cfg.num_generations * cfg.prompts_per_step
        tokens = completions * statistics.fmean(r["completion_length"] for r in rows)
        result.update(
            status="ok",
            backend=loaded.to_dict(),
            ran=runs.read_json(run_dir / runs.ENVIRONMENT)["trainer"],
            wall_seconds=round(wall, 1),
            seconds_per_step=seconds_per_step,
            generated_tokens_per_second=tokens / seconds_per_step,
            mean_completion_length=statistics.fmean(r["completion_length"] for r in rows),
            nan_losses=sum(1 for r in rows if not math.isfinite(r.get("loss", float("nan")))),
            peak_gpu_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        )
    except torch.cuda.OutOfMemoryError as error:
        result.update(status="out of memory", error=str(error)[:300])
    runs.write_json(out, result)


def project_epoch(results: list[dict], gpu_name: str | None) -> dict:
    """Projected wall time of one full epoch at 786 tokens, on the measured GPU and, by memory bandwidth, on a T4."""
    kit = [r for r in results if r["config"] == "kit" and r.get("status") == "ok"]
    if not kit:
        return {}
    longest = max(kit, key=lambda r: r["completion_length"])
    hours = longest["seconds_per_step"] * EPOCH_STEPS / 3600
    projection = {"completion_length": longest["completion_length"], "measured_gpu_hours": round(hours, 2)}
    measured = next((bandwidth for name, bandwidth in BANDWIDTH_GBS.items() if gpu_name and name in gpu_name), None)
    if measured:
        projection["t4_hours_estimate"] = round(hours * measured / BANDWIDTH_GBS["T4"], 2)
        projection["t4_arithmetic"] = (
            f"{hours:.2f} h x {measured} GB/s / {BANDWIDTH_GBS['T4']} GB/s (generation is memory-bandwidth bound)"
        )
    return projection


def ratios(results: list[dict]) -> list[dict]:
    """Kit / study, for each experiment and completion length measured in this run."""
    ok = {(r["config"], r["experiment"], r["completion_length"]): r for r in results if r.get("status") == "ok"}
    return [
        {
            "experiment": experiment,
            "completion_length": length,
            "tokens_per_second_ratio": kit["generated_tokens_per_second"] / study["generated_tokens_per_second"],
            "step_time_ratio": kit["seconds_per_step"] / study["seconds_per_step"],
        }
        for (config, experiment, length), kit in ok.items()
        if config == "kit" and (study := ok.get(("study", experiment, length)))
    ]


def markdown_table(report: dict) -> str:
    lines = [
        "| config | experiment | completion tokens | backend (optimizer, attention) | s/step | generated tok/s | "
        "peak GPU GiB | NaN losses |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if r.get("status") != "ok":
            lines.append(
                f"| {r['config']} | {r['experiment']} | {r['completion_length']} | | {r.get('status')} | | | |"
            )
            continue
        memory = f"{r['peak_gpu_memory_gib']:.2f}" if r["peak_gpu_memory_gib"] is not None else "n/a (CPU)"
        lines.append(
            f"| {r['config']} | {r['experiment']} | {r['completion_length']} | {r['backend']['name']} "
            f"({r['ran']['optimizer'].rsplit('.', 1)[-1]}, {r['ran']['attention']}) | {r['seconds_per_step']:.2f} | "
            f"{r['generated_tokens_per_second']:.0f} | {memory} | {r['nan_losses']} |"
        )
    for ratio in report["ratios"]:
        lines.append(
            f"\nkit / study at {ratio['completion_length']} tokens ({ratio['experiment']}): generated tokens/s "
            f"x{ratio['tokens_per_second_ratio']:.2f}, seconds per step x{ratio['step_time_ratio']:.2f}"
        )
    for skipped in report.get("skipped", []):
        lines.append(
            f"\nskipped, the time budget would have run out: {skipped['config']} / {skipped['experiment']} / "
            f"{skipped['completion_length']} tokens"
        )
    evaluation = report.get("evaluation", {})
    if "batch_sizes" in evaluation:
        lines.append(
            f"\ngreedy evaluation ({evaluation['backend']['name']}, {evaluation['max_new_tokens']} new tokens), "
            "generated tokens/s by batch size: "
            + ", ".join(
                f"{size}: {m['generated_tokens_per_second']:.0f}"
                if "generated_tokens_per_second" in m
                else f"{size}: {m['status']}"
                for size, m in evaluation["batch_sizes"].items()
            )
        )
    env = report["environment"]
    lines.append(
        f"\n{report['device']}; {report['note']}; "
        + ", ".join(
            f"{p} {env['packages'].get(p, 'not installed')}" for p in ("torch", "transformers", "trl", "unsloth")
        )
        + f"; {env['date']}."
    )
    return "\n".join(lines)


def plan(
    experiments: list[str], lengths: list[int], unsloth: bool, backends: bool = True
) -> list[tuple[str, str, int]]:
    """The measurements, most important first, so a time budget drops the least important: the kit and the study at
    the longest completions for each experiment, the generation backends, then the shorter completions."""
    longest, rest = max(lengths), sorted(lengths)[:-1]
    order = [(config, e, longest) for e in experiments for config in ("kit", "study")]
    order += [(b, experiments[0], longest) for b in BACKENDS if backends and (unsloth or b != "kit, generate")]
    order += [(config, e, length) for length in rest for e in experiments for config in ("kit", "study")]
    return order


def run_benchmark(
    steps: int | None = None,
    lengths: list[int] | None = None,
    experiments: list[str] | None = None,
    out_dir=REPO_ROOT / "runs" / "bench",
    emulate_t4: bool = True,
    budget_seconds: float | None = None,
    backends: bool = True,
    evaluation: bool = True,
) -> dict:
    """Every planned measurement that fits in ``budget_seconds`` (each started one is finished; one that would
    overrun, judged by the longest of its length so far, is skipped and named), then the evaluation's throughput."""
    import importlib.util

    import torch

    from utils.model_cache import materialize_random_model

    cuda = torch.cuda.is_available()
    steps = steps or (10 if cuda else 3)
    lengths = lengths or ([150, 786] if cuda else [16])
    experiments = experiments or ["exp2_oneshot", "exp4_cosine_no_penalty"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    model_name = materialize_random_model(
        "random-full" if cuda else "tiny", out_dir / ("random-qwen2.5-0.5b" if cuda else "tiny-qwen2")
    )
    unsloth = cuda and importlib.util.find_spec("unsloth") is not None
    results, skipped, took = [], [], {}
    for config, experiment, length in plan(experiments, lengths, unsloth, backends):
        expected = took.get(length, ASSUMED_SECONDS[cuda].get(length, 120))
        if budget_seconds is not None and time.time() - started + expected > budget_seconds:
            skipped.append(
                {"config": config, "experiment": experiment, "completion_length": length, "expected_seconds": expected}
            )
            print(f"--- skipped {config} / {experiment} / {length}: ~{expected:.0f} s would overrun the budget")
            continue
        out = out_dir / f"{config.replace(', ', '_').replace(' ', '-')}_{experiment}_{length}.json"
        print(f"--- {config} / {experiment} / {length} tokens x {steps} steps", flush=True)
        command = [sys.executable, "-m", "utils.scripts.bench", "--worker", config, "--experiment", experiment]
        command += ["--length", str(length), "--steps", str(steps), "--model", model_name, "--out", str(out)]
        if not emulate_t4:
            command.append("--no-t4")
        begun = time.time()
        done = subprocess.run(command, cwd=REPO_ROOT)
        took[length] = max(took.get(length, 0), time.time() - begun)
        crashed = {"config": config, "experiment": experiment, "completion_length": length}
        results.append(
            runs.read_json(out) if out.exists() else {**crashed, "status": f"crashed (exit {done.returncode})"}
        )
    evaluation = eval_throughput(model_name, out_dir, emulate_t4, budget_seconds, started) if evaluation else {}
    gpu = torch.cuda.get_device_name(0) if cuda else None
    report = {
        "device": gpu or "CPU (tiny random Qwen2: checks the benchmark works; the numbers say nothing about GPUs)",
        "note": f"T4 emulation: memory capped at {T4_MEMORY_GIB} GiB, fp16, SDPA, no vLLM (a T4's memory, not speed)"
        if cuda and emulate_t4
        else "no T4 emulation",
        "model": "Qwen2.5-0.5B-Instruct architecture, random weights" if cuda else "tiny random Qwen2",
        "unsloth_installed": unsloth,
        "results": results,
        "skipped": skipped,
        "evaluation": evaluation,
        "ratios": ratios(results),
        "epoch_projection": project_epoch(results, gpu),
        "budget_seconds": budget_seconds,
        "seconds": round(time.time() - started),
        "environment": runs.environment_info(),
    }
    runs.write_json(out_dir / runs.BENCH, report)
    print(markdown_table(report))
    return report


def eval_throughput(model_name: str, out_dir: Path, emulate_t4: bool, budget_seconds, started) -> dict:
    """The greedy evaluation's generated tokens per second at each of ``EVAL_BATCH_SIZES``, in one process."""
    if budget_seconds is not None and time.time() - started > budget_seconds:
        return {"status": "skipped: the budget was spent"}
    out = out_dir / "eval_throughput.json"
    command = [sys.executable, "-m", "utils.scripts.bench", "--eval-worker", "--model", model_name, "--out", str(out)]
    done = subprocess.run(command + ([] if emulate_t4 else ["--no-t4"]), cwd=REPO_ROOT)
    return runs.read_json(out) if out.exists() else {"status": f"crashed (exit {done.returncode})"}


def _eval_worker(model_name: str, out: Path, emulate_t4: bool) -> None:
    """Greedy generation of one batch of the test set's prompts at each batch size, completions forced to the
    evaluation's token limit (random weights never stop), with the kit's model as it evaluates it."""
    from utils.runtime import import_unsloth_first

    import_unsloth_first()
    import torch

    from utils.data import build_eval_dataset
    from utils.experiments import make_config
    from utils.generation import generate_completions
    from utils.model import load_model

    cuda = torch.cuda.is_available()
    if emulate_t4:
        cap_memory_like_t4()
    tokens = 786 if cuda else 8
    cfg = make_config(
        "exp2_oneshot",
        model_name=model_name,
        data_dir=str(SAMPLE_DATA_DIR),
        allow_cpu=True,
        eval_max_new_tokens=tokens,
        fast_inference=False,
        **({"precision": "fp16"} if cuda and emulate_t4 else {}),
    )
    model, tokenizer, loaded = load_model(cfg)
    prompts = list(build_eval_dataset("gsm8k", True, cfg.data_dir)["prompt"])
    measured = {}
    for batch_size in EVAL_BATCH_SIZES if cuda else [4, 8]:
        batch = (prompts * (batch_size // len(prompts) + 1))[:batch_size]
        model.generation_config.min_new_tokens = tokens  # every sequence to the limit, as random weights would
        begun = time.time()
        try:
            generated = generate_completions(model, tokenizer, batch, tokens, batch_size, loaded, progress=False)
        except torch.cuda.OutOfMemoryError:
            measured[str(batch_size)] = {"status": "out of memory"}
            continue
        seconds = time.time() - begun
        measured[str(batch_size)] = {
            "seconds": round(seconds, 2),
            "generated_tokens_per_second": sum(n for _, n, _ in generated) / seconds,
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        }
    runs.write_json(out, {"backend": loaded.to_dict(), "max_new_tokens": tokens, "batch_sizes": measured})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, help="optimizer steps per configuration (default 10 on GPU, 3 on CPU)")
    parser.add_argument(
        "--lengths", type=int, nargs="+", help="forced completion lengths (default 150 786 on GPU, 16 on CPU)"
    )
    parser.add_argument("--experiments", nargs="+", help="default: exp2_oneshot exp4_cosine_no_penalty")
    parser.add_argument("--out-dir", default=str(REPO_ROOT / "runs" / "bench"))
    parser.add_argument("--no-t4", action="store_true", help="do not emulate a T4 (no memory cap, auto precision)")
    parser.add_argument("--budget", type=float, help="seconds: skip (and name) what would overrun")
    parser.add_argument("--worker", choices=list(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--eval-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--experiment", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.experiment, args.length, args.steps, args.model, Path(args.out), not args.no_t4)
    elif args.eval_worker:
        _eval_worker(args.model, Path(args.out), not args.no_t4)
    else:
        run_benchmark(args.steps, args.lengths, args.experiments, args.out_dir, not args.no_t4, args.budget)


if __name__ == "__main__":
    main()
