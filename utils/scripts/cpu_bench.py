"""CPU speed on a real model, side by side in one run: float32 vs bf16, and the kit vs a bare TRL GRPOTrainer.

    python -m utils.scripts.cpu_bench              # SmolLM2-135M-Instruct, 7 minutes on 2 cores: chart/cpu_bench.json

Every configuration trains the CPU mini-study's batch (``cpu_study.CPU_SETTINGS``: 2 prompts x 4 completions,
LoRA) with its completions forced to the same length, so each generates the same number of tokens:
  kit, fp32 / kit, bf16: the kit's trainer (``utils.trainer.train``: graders, logs, checks, run folder, final save);
  bare TRL, bf16: ``trl.GRPOTrainer`` alone with the same model, data, rewards and ``GRPOConfig``, and nothing else.
Per step: TRL's own ``step_time`` (generation, scoring and backward, not the optimizer), median after the first
step, which warms up; per run: the wall time of the whole training call, the kit's overhead as the ratio of the two.
Greedy generation, as the evaluation runs it (batch of 8 prompts), in tokens per second at each precision.
"""

import argparse
import shutil
import statistics
import time
from pathlib import Path

from utils import REPO_ROOT, runs
from utils.data import SAMPLE_DATA_DIR, build_dataset, build_eval_dataset
from utils.experiments import make_config
from utils.generation import chat_texts, generate_completions
from utils.model import load_model
from utils.scripts import cpu_floors
from utils.scripts.cpu_study import CPU_SETTINGS, provenance
from utils.train import experiment_rewards
from utils.trainer import grpo_config, train

RESULT = REPO_ROOT / "chart" / "cpu_bench.json"
QWEN = REPO_ROOT / "chart" / "cpu_bench_qwen.json"  # --model qwen2.5-coder-0.5b --floors --length 64 --out this
CONFIGS = {"kit, fp32": ("kit", "fp32"), "kit, bf16": ("kit", "bf16"), "bare TRL, bf16": ("bare", "bf16")}
GENERATION_BATCH = 8


def bench_config(model_name: str, precision: str, steps: int, length: int, run_root: Path):
    changes = dict(
        model_name=model_name, precision=precision, max_steps=steps, max_completion_length=length,
        min_completion_length=length, save_steps=10**6, data_dir=str(SAMPLE_DATA_DIR), run_root=str(run_root),
        name=f"cpu_bench_{precision}",
    )  # fmt: skip
    return make_config("exp2_oneshot", **{**CPU_SETTINGS, **changes})


def train_bare(cfg, model, tokenizer, loaded) -> list[dict]:
    """TRL's GRPOTrainer with the kit's GRPOConfig and rewards, without anything the kit adds around it."""
    from trl import GRPOTrainer

    rewards = experiment_rewards(cfg)
    args = grpo_config(cfg, cfg.run_dir / "bare", loaded, reward_weights=[w for _, w in rewards])
    dataset = build_dataset("train", cfg.one_shot, cfg.data_dir, cfg.train_limit, tokenizer, cfg.max_prompt_length)
    trainer = GRPOTrainer(
        model=model, reward_funcs=[f for f, _ in rewards], args=args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.train()
    trainer.save_model(str(cfg.run_dir / "bare" / "adapter"))
    return [row for row in trainer.state.log_history if "step_time" in row]


def measure(kind: str, cfg) -> dict:
    """Train ``cfg.max_steps`` steps one way and time them; then time greedy generation with the same model."""
    model, tokenizer, loaded = load_model(cfg)
    begun = time.perf_counter()
    if kind == "kit":
        rows = runs.read_rows(train(cfg, model, tokenizer, experiment_rewards(cfg), loaded) / runs.LOG)
    else:
        rows = train_bare(cfg, model, tokenizer, loaded)
    wall = time.perf_counter() - begun
    step_times = [row["step_time"] for row in rows[1:]] or [row["step_time"] for row in rows]
    completions = cfg.prompts_per_step * cfg.num_generations
    result = {
        "dtype": loaded.dtype,
        "steps": len(rows),
        "seconds_per_step": statistics.median(step_times),
        "wall_seconds": wall,
        "training_tokens_per_second": completions * cfg.max_completion_length / statistics.median(step_times),
    }
    prompts = list(build_eval_dataset("gsm8k", True, str(SAMPLE_DATA_DIR), GENERATION_BATCH)["prompt"])
    model.generation_config.min_new_tokens = cfg.max_completion_length  # the same tokens for every configuration
    begun = time.perf_counter()
    generated = generate_completions(
        model, tokenizer, prompts, cfg.max_completion_length, GENERATION_BATCH, loaded, progress=False
    )
    result["generation_tokens_per_second"] = sum(n for _, n, _ in generated) / (time.perf_counter() - begun)
    return result


def limits(model_name: str, length: int, run_root: Path, step_seconds: float, generation_speed: float) -> dict:
    """The floors this CPU sets (bandwidth and matmul rate measured now), the measured figures against them, a
    decoding step's profile, and the generation attempts (``utils.scripts.cpu_floors``)."""
    cfg = bench_config(model_name, "bf16", 1, length, run_root / "floors")
    model, tokenizer, loaded = load_model(cfg)
    model.eval()
    prompts = build_eval_dataset("gsm8k", True, str(SAMPLE_DATA_DIR), GENERATION_BATCH)["prompt"]
    prompt_tokens = statistics.fmean(len(tokenizer(text)["input_ids"]) for text in chat_texts(tokenizer, prompts))
    bandwidth, tflops = cpu_floors.copy_bandwidth(), cpu_floors.matmul_tflops()
    floor = cpu_floors.floors(model, bandwidth, tflops, GENERATION_BATCH, prompt_tokens, length,
                              cfg.prompts_per_step * cfg.num_generations)  # fmt: skip
    return {
        "bandwidth_gb_per_second": bandwidth, "bf16_matmul_tflops": tflops, "prompt_tokens": prompt_tokens,
        "floors": floor,
        "measured_over_floor": {"generation tokens/s": generation_speed / floor["generation_tokens_per_second"],
                                "seconds per step": step_seconds / floor["step_seconds"]},
        "decode_profile": cpu_floors.decode_profile(model),
        "attempts": cpu_floors.generation_attempts(model, tokenizer),
    }  # fmt: skip


def run(model_name: str = "smollm2-135m", steps: int = 3, length: int = 128, out=RESULT, run_root=None,
        with_limits: bool = False) -> dict:  # fmt: skip
    started = time.time()
    run_root = Path(run_root or REPO_ROOT / "runs" / "cpu_bench")
    shutil.rmtree(run_root, ignore_errors=True)  # fresh: a finished run folder would be loaded, not trained
    measured = {}
    for label, (kind, precision) in CONFIGS.items():
        cfg = bench_config(model_name, precision, steps, length, run_root / kind)
        measured[label] = measure(kind, cfg)
        print(label, {k: round(v, 2) if isinstance(v, float) else v for k, v in measured[label].items()})
    ratios = {
        "bf16 speed-up over fp32, per step": measured["kit, fp32"]["seconds_per_step"]
        / measured["kit, bf16"]["seconds_per_step"],
        "bf16 speed-up over fp32, generation": measured["kit, bf16"]["generation_tokens_per_second"]
        / measured["kit, fp32"]["generation_tokens_per_second"],
        "kit / bare TRL, per step": measured["kit, bf16"]["seconds_per_step"]
        / measured["bare TRL, bf16"]["seconds_per_step"],
        "kit / bare TRL, whole training call": measured["kit, bf16"]["wall_seconds"]
        / measured["bare TRL, bf16"]["wall_seconds"],
    }
    settings = dict(
        model_name=model_name, steps=steps, completion_tokens=length, generation_batch=GENERATION_BATCH,
        prompts_per_step=CPU_SETTINGS["prompts_per_step"], num_generations=CPU_SETTINGS["num_generations"],
    )  # fmt: skip
    command = "python -m utils.scripts.cpu_bench" + (f" --model {model_name}" if model_name != "smollm2-135m" else "")
    if with_limits:
        bf16 = measured["kit, bf16"]
        speeds = bf16["seconds_per_step"], bf16["generation_tokens_per_second"]
        limits_found = limits(model_name, length, run_root, *speeds)
        command += " --floors"
    result = {"settings": settings, "configs": measured, "ratios": ratios,
              **({"limits": limits_found} if with_limits else {}),
              "provenance": {**provenance(time.time() - started, command), "model": model_name}}  # fmt: skip
    runs.write_json(out, result)
    print(markdown(out))
    return result


def markdown(path=RESULT) -> str:
    """The README's CPU speed table, from ``chart/cpu_bench.json``."""
    if not Path(path).is_file():
        return f"Not measured yet: `python -m utils.scripts.cpu_bench` writes `chart/{Path(path).name}`."
    result = runs.read_json(path)
    s, source = result["settings"], result["provenance"]
    lines = [
        f"{s['model_name']}, {s['prompts_per_step']} prompts x {s['num_generations']} completions of "
        f"{s['completion_tokens']} tokens a step (forced), LoRA, {s['steps']} steps each; {source['machine']}; "
        f"{source['seconds'] / 60:.0f} minutes on {source['date']} (`{source['command']}`).\n",
        "| configuration | seconds per step | training tokens/s | whole training call (s) "
        f"| greedy generation tokens/s (batch {s['generation_batch']}) |",
        "|---|---|---|---|---|",
    ]
    for label, m in result["configs"].items():
        lines.append(
            f"| {label} | {m['seconds_per_step']:.1f} | {m['training_tokens_per_second']:.1f} | "
            f"{m['wall_seconds']:.0f} | {m['generation_tokens_per_second']:.1f} |"
        )
    lines.append("")
    lines += [f"- {name}: {value:.2f}x" for name, value in result["ratios"].items()]
    lines.append(
        "\nEvery row's generation runs the kit's evaluation code on the same prompts, so the two bf16 rows differ "
        "there only by run-to-run noise; each figure is one measurement."
    )
    return "\n".join(lines + (limits_markdown(result["limits"]) if "limits" in result else []))


def limits_markdown(found: dict) -> list[str]:
    floor, over = found["floors"], found["measured_over_floor"]
    lines = [
        f"\n**Against this CPU's limits**, measured in the same run: copy bandwidth "
        f"{found['bandwidth_gb_per_second']:.1f} GB/s, bf16 matmul {found['bf16_matmul_tflops']:.2f} TFLOPS. Floors: "
        f"greedy generation at batch {GENERATION_BATCH} first reads {found['prompt_tokens']:.0f} prompt tokens each "
        f"at that matmul rate, then {floor['weight_bytes'] / 1e9:.2f} GB of weights a token, so at most "
        f"{floor['generation_tokens_per_second']:.0f} tokens/s (measured: {over['generation tokens/s']:.2f}x of it); "
        f"a GRPO step at least {floor['step_seconds']:.0f} s (measured: {over['seconds per step']:.2f}x it).",
        "\nOne decoding step (batch 8, 300 tokens cached, the kit's CPU attention), its largest operators: "
        + ", ".join(f"{row['operator']} {row['share']:.0%}" for row in found["decode_profile"]) + ".",
        "\n| attempt | greedy tokens/s | vs baseline | same tokens | kept |", "|---|---|---|---|---|",
    ]  # fmt: skip
    for label, a in found["attempts"].items():
        kept = "baseline" if "kept" not in a else ("yes" if a["kept"] else "no")
        lines.append(f"| {label} | {a['tokens_per_second']:.1f} | {a['ratio']:.2f}x | {'yes' if a['same'] else 'no'} "
                     f"| {kept} |")  # fmt: skip
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="a model that runs on a CPU (tests use 'tiny')")
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps per configuration (the first warms up)")
    parser.add_argument("--length", type=int, default=128, help="completion tokens, forced")
    parser.add_argument("--floors", action="store_true", help="also the CPU's limits, a profile and speed attempts")
    parser.add_argument("--out", default=str(RESULT))
    args = parser.parse_args(argv)
    run(args.model, args.steps, args.length, args.out, with_limits=args.floors)


if __name__ == "__main__":
    main()
