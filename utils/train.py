"""One experiment, start to finish, as its notebook runs it: config and data checks, the reward set and its checks,
the untrained baseline, training with resume, evaluation on every set; several seeds in turn or one per device; and
the command line, on one process or several:

    python -m utils.train exp2_oneshot [--smoke] [--set KEY=VALUE ...] [--no-eval] [--seeds 42 43 44]
    python -m utils.train exp2_oneshot --seeds 42 43 --devices 0 1     # one seed per GPU, at once
    torchrun --nproc_per_node 2 -m utils.train exp2_oneshot --set precision=fp16
    accelerate launch --config_file utils/accelerate/zero2.yaml -m utils.train exp4_cosine_no_penalty

``--devices`` is not data parallelism: ``torchrun --nproc_per_node N`` trains one run with its batch split over N
processes (the same run, faster, transformers + PEFT only), while ``--devices`` trains independent runs at once, each
an ordinary process that sees one device (so on a GPU it can use Unsloth) and writes ``<run folder>/console.log``.
"""

if __name__ == "__main__":  # the command line: Unsloth must be imported before transformers to patch it
    from utils.runtime import import_unsloth_first

    import_unsloth_first()

import argparse
import dataclasses
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from utils import REPO_ROOT, runs
from utils.checks import annotation_arms, closest, describe_type
from utils.config import EXPERIMENTS, ExperimentConfig, declared_default
from utils.evaluate import evaluate_all, summaries_table
from utils.experiments import baseline_dir, make_config
from utils.generation import generate_completions
from utils.grading import extract_xml_answer
from utils.harness import harness_evaluate
from utils.model import load_model, load_tokenizer
from utils.prompts import build_prompt
from utils.reward_lab import check_reward_funcs, reward_table, training_rows
from utils.rewards import build_rewards
from utils.runtime import process_state, rank_and_processes
from utils.sampled import sampled_evaluate
from utils.trainer import train


def in_one_process(evaluation, what: str, *args, **kwargs) -> dict:
    """``evaluation(*args, **kwargs)`` where it can run: the sampled and lm-evaluation-harness evaluations generate in
    one process, so under torchrun they are skipped with a message (run the experiment on one process for them)."""
    if rank_and_processes()[1] > 1:
        print(f"The {what} evaluation runs in one process: skipped under torchrun.")
        return {}
    return evaluation(*args, **kwargs)


def evaluate_baseline(cfg, model, tokenizer, loaded=None) -> dict:
    """Evaluate the untrained model with the experiment's prompt on every evaluated set, sampled on GSM8K and through
    lm-evaluation-harness: the numbers training must beat. A set already evaluated with the same identity
    (``evaluation_identity``: model, questions, prompt, decoding, engine, ...) is reused; anything else is evaluated
    again. Call it before training (a fresh LoRA adapter leaves the model unchanged). Returns the greedy summaries."""
    out_dir = baseline_dir(cfg)
    summaries = evaluate_all(cfg, model, tokenizer, out_dir, loaded)
    # one sampling seed for the untrained model, shared by every run that starts from it
    in_one_process(sampled_evaluate, "sampled", cfg, model, tokenizer, out_dir, loaded, seed=0)
    in_one_process(harness_evaluate, "lm-evaluation-harness", cfg, model, tokenizer, out_dir, loaded, reuse=True)
    return summaries


def evaluate_trained(cfg, model, tokenizer, run_dir, loaded=None) -> dict:
    """The trained model on every evaluated set (greedy), sampled on GSM8K and through lm-evaluation-harness; returns
    the three results by kind."""
    adapter = Path(run_dir) / runs.ADAPTER
    return {
        "greedy": evaluate_all(cfg, model, tokenizer, run_dir, loaded, adapter),
        "sampled": in_one_process(sampled_evaluate, "sampled", cfg, model, tokenizer, run_dir, loaded, adapter),
        "harness": in_one_process(harness_evaluate, "lm-evaluation-harness", cfg, model, tokenizer, run_dir, loaded),
    }


def ask(cfg, model, tokenizer, question: str, rewards=(), gold: str | None = None, loaded=None, lora_path=None):
    """Ask the model any question with the experiment's prompt (greedy): prints its reasoning and answer and returns
    what each reward gives the completion (scored against ``gold`` when given)."""
    prompt = build_prompt(question, cfg.one_shot)
    [(text, tokens, truncated)] = generate_completions(
        model, tokenizer, [prompt], cfg.eval_max_new_tokens, 1, loaded, lora_path, progress=False
    )
    reasoning = text.split("<answer>")[0].replace("<reasoning>", "").replace("</reasoning>", "").strip()
    print(f"reasoning ({tokens} tokens{', cut at the limit' if truncated else ''}):\n{reasoning}\n")
    print(f"answer: {extract_xml_answer(text)!r}" + (f"   gold: {gold!r}" if gold is not None else ""))
    item = {"label": "your question", "question": question, "answer": "" if gold is None else str(gold)}
    return reward_table(list(rewards), [{**item, "completion": text}], one_shot=cfg.one_shot) if rewards else None


def train_and_evaluate(
    cfg: ExperimentConfig,
    rewards: list,
    seed: int | None = None,
    baseline: bool = True,
    evaluate_runs: bool = True,
    budget=None,
) -> Path:
    """One seed of an experiment, as its notebook runs it: a fresh model, the untrained baseline (reused when already
    evaluated for this base model and prompt), training (resuming; stopping early for ``budget``, a
    ``utils.session.TimeBudget``), evaluation on every set. ``seed`` replaces the config's. The model is freed at the
    end, so seeds can follow one another. Returns the run folder."""
    if seed is not None and seed != cfg.seed and cfg.run_name:
        raise ValueError(f"run_name={cfg.run_name!r} names one folder, and each seed needs its own: leave it None.")
    cfg = cfg if seed is None else dataclasses.replace(cfg, seed=seed)
    state = process_state()
    model, tokenizer, loaded = load_model(cfg)
    if evaluate_runs and baseline:
        table = summaries_table(evaluate_baseline(cfg, model, tokenizer, loaded))
        if state.is_main_process:
            print(f"Untrained baseline ({baseline_dir(cfg)}):\n{table.to_string()}")
    run_dir = train(cfg, model, tokenizer, rewards, loaded, budget=budget)
    if evaluate_runs:
        table = summaries_table(evaluate_trained(cfg, model, tokenizer, run_dir, loaded)["greedy"])
        if state.is_main_process:
            print(f"Trained ({run_dir}):\n{table.to_string()}")
    state.wait_for_everyone()
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return run_dir


def experiment_rewards(cfg: ExperimentConfig) -> list:
    """The experiment's reward set, counting tokens with its own model's tokenizer (not Qwen's)."""
    return build_rewards(cfg.reward_set, load_tokenizer(cfg.model_name), **cfg.reward_settings)


def run_experiment(
    experiment: str,
    smoke: bool = False,
    overrides: dict | None = None,
    evaluate_runs: bool = True,
    seeds: list[int] | None = None,
    baseline: bool = True,
    baseline_only: bool = False,
) -> list[Path]:
    """What an experiment notebook does, top to bottom, for each seed one after another (default: the config's).
    Returns the run folders."""
    cfg = make_config(experiment, smoke=smoke, overrides=overrides)
    process_state()  # starts the process group under torchrun / accelerate launch
    if baseline_only:  # the seed launcher's first step: one evaluation that every seed then reuses
        model, tokenizer, loaded = load_model(cfg)
        evaluate_baseline(cfg, model, tokenizer, loaded)
        return []
    rewards = experiment_rewards(cfg)
    check_reward_funcs(rewards, training_rows(cfg), one_shot=cfg.one_shot)
    return [train_and_evaluate(cfg, rewards, seed, baseline, evaluate_runs) for seed in seeds or [cfg.seed]]


def seed_command(experiment: str, smoke: bool, settings: list[str], seed: int, *flags: str) -> list[str]:
    """The command line of one seed's process."""
    sets = [part for pair in settings for part in ("--set", pair)]
    return [sys.executable, "-m", "utils.train", experiment, *(["--smoke"] if smoke else []), *sets, "--seeds",
            str(seed), *flags]  # fmt: skip


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
    """Train ``seeds`` at once, at most one per device (the next starts when a device frees up); returns the run
    folders. Every config is made (and checked) before any process starts; the baseline is evaluated once first when
    the seeds share a base model; a seed that fails is named with its log, after the others have finished."""
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


def parse_setting(f: dataclasses.Field, text: str):
    """A command-line value read as its field's declared type: true/false for booleans, null for None where the field
    allows it, JSON for dicts; a value that does not parse is an error naming the field."""
    arms = annotation_arms(f.type)
    if type(None) in arms and text.strip().lower() in ("null", "none"):
        return None
    kind = next(arm for arm in arms if arm is not type(None))
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    try:
        if kind is bool:
            return words[text.strip().lower()]
        if kind in (int, float):
            return kind(text)
        if kind is dict and isinstance(value := json.loads(text), dict):
            return value
        if kind is dict:
            raise ValueError
        return text
    except (KeyError, ValueError):
        hint = " (a JSON object on the command line)" if kind is dict else ""
        raise ValueError(f"--set {f.name}={text}: use {describe_type(f.type)}{hint}.") from None


def parse_overrides(pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings as config overrides, each value read as its field's declared type (``--set
    one_shot=false``, ``--set ood_eval_limit=null``, ``--set trl_args='{"epsilon": 0.3}'``)."""
    fields = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
    overrides = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}.")
        if key not in fields:
            hint = f" (did you mean {close!r}?)" if (close := closest(key, fields)) else ""
            raise SystemExit(f"--set: unknown config field {key!r}{hint}; see --help for every field.")
        try:
            overrides[key] = parse_setting(fields[key], text)
        except ValueError as error:
            raise SystemExit(str(error)) from None
    return overrides


def fields_help() -> str:
    """Every config field with its default and help, for ``--help``."""
    lines = []
    for f in dataclasses.fields(ExperimentConfig):
        default = declared_default(f)
        shown = f"default {default}" if default else "from the experiment"
        lines.append(f"  {f.name} ({shown}): {f.metadata['help']}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="config fields (--set KEY=VALUE):\n" + fields_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("experiment", choices=list(EXPERIMENTS))
    parser.add_argument("--smoke", action="store_true", help="tiny random model, a few CPU steps, bundled data")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config field below, e.g. --set max_steps=200 --set one_shot=false "
        "--set trl_args='{\"epsilon\": 0.3}'",
    )
    parser.add_argument("--no-eval", action="store_true", help="skip the baseline and the final evaluations")
    parser.add_argument("--seeds", type=int, nargs="+", help="train these seeds, one after another (default: seed)")
    parser.add_argument(
        "--devices",
        nargs="+",
        metavar="DEVICE",
        help="with --seeds: one seed per device at once, each in its own process and run folder (GPU indices, e.g. "
        "0 1; 'cpu' for a CPU process). Independent runs, unlike torchrun's data-parallel one",
    )
    parser.add_argument("--no-baseline", action="store_true", help=argparse.SUPPRESS)  # the launcher's children
    parser.add_argument("--baseline-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.devices:
        run_seeds_on_devices(args.experiment, args.smoke, args.set, args.seeds, args.devices, not args.no_eval)
        return
    run_experiment(
        args.experiment,
        args.smoke,
        parse_overrides(args.set),
        evaluate_runs=not args.no_eval,
        seeds=args.seeds,
        baseline=not args.no_baseline,
        baseline_only=args.baseline_only,
    )


if __name__ == "__main__":
    main()
