"""Does LoRA want a ~10x larger learning rate than full fine-tuning, as published? A toy-scale check on a CPU.

    python -m utils.scripts.lora_lr                                # 8 rates x full / LoRA x 3 seeds, on 2 CPU cores
    python -m utils.scripts.lora_lr --seeds 0 --steps 2 --rates 1e-4 1e-3  # a quick look

"LoRA Without Regret" (Schulman et al., Thinking Machines, 2025) finds LoRA's best learning rate about 10x full
fine-tuning's, for supervised learning and RL alike, with alpha = 32 and the usual alpha / rank scaling (under which
the best rate barely depends on the rank); verl's LoRA guide says an order of magnitude too. The kit follows that rule
(``utils.experiments.default_learning_rate``). This script checks the parametrisation the rule rests on, not the 0.5B
model. On a random Qwen2 big enough that a rank-8 adapter is genuinely low-rank (hidden size 256), GRPO learns a
one-token bandit (``low_first_token``: rewarded when the completion's only token is in the lower half of the
vocabulary), so the policy's expected reward is computed exactly, without sampling noise. The script sweeps the
learning rate for full fine-tuning and for LoRA (alpha 32, rank 8), a few seeds each, prints the gain in expected
reward per step at every rate, the rate each method needs for the same gain and the best rate of each, and writes
``runs/lora_lr/lora_lr.json``.
"""

import argparse
import contextlib
import io
import math
import statistics
import time
from pathlib import Path

import torch

from utils import REPO_ROOT, runs

VOCABULARY = 151_665  # Qwen2.5's tokens
RATES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
METHODS = {"full fine-tuning": dict(lora_rank=0), "LoRA r8 alpha32": dict(lora_rank=8, lora_alpha=32)}
# Big enough for rank 8 to be low-rank; initializer_range 0.2 makes the policy peaked enough to learn from, not so
# peaked that every sample is the same token (0.5 is right for the tiny model's hidden size 64).
MODEL = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, initializer_range=0.2)


def low_token_share(completion_ids, **kwargs):
    """A reward a random model can learn: the share of completion tokens in the lower half of the vocabulary.
    (Every study reward is 0 for a random model, so its advantages, and gradients, would be 0.)"""
    return [sum(t < VOCABULARY // 2 for t in ids) / max(len(ids), 1) for ids in completion_ids]


def low_first_token(completion_ids, **kwargs):
    """1.0 when the completion's first token is in the lower half of the vocabulary: a one-token bandit, whose
    expected value under the policy ``expected_low_token_share`` computes exactly."""
    return [float(bool(ids) and ids[0] < VOCABULARY // 2) for ids in completion_ids]


def expected_low_token_share(model, tokenizer, prompts, temperature=1.0) -> float:
    """The share of the policy's next-token probability in the lower half of the vocabulary on fixed prompts: the
    exact expected ``low_first_token`` (and first-token ``low_token_share``), no sampling noise."""
    from utils.generation import chat_texts

    batch = tokenizer(chat_texts(tokenizer, prompts), return_tensors="pt", padding=True, padding_side="left")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(**batch).logits[:, -1, :] / temperature, dim=-1)
    model.train(was_training)
    return probs[:, : VOCABULARY // 2].sum(-1).mean().item()


def toy_model(folder: Path) -> str:
    """The random Qwen2 of this check, saved once (a path, so full fine-tuning's reference can be rebuilt)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from utils.model import load_tokenizer
    from utils.model_cache import ASSETS_DIR, TINY_OVERRIDES

    if not (folder / "model.safetensors").exists():
        config = AutoConfig.from_pretrained(ASSETS_DIR)
        for key, value in {**TINY_OVERRIDES, **MODEL}.items():
            setattr(config, key, value)
        config.layer_types = config.layer_types[: config.num_hidden_layers]
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(folder)
        load_tokenizer("tiny").save_pretrained(folder)
    return str(folder)


def gain_per_step(model_path: str, method: dict, rate: float, seed: int, steps: int, out_dir: Path) -> float:
    """The expected reward's rise per optimizer step of one GRPO run."""
    from utils.data import build_dataset
    from utils.experiments import make_config
    from utils.model import load_model
    from utils.trainer import train

    cfg = make_config(
        "exp2_oneshot",
        smoke=True,
        model_name=model_path,
        allow_cpu=True,
        learning_rate=rate,
        seed=seed,
        num_generations=8,
        prompts_per_step=2,
        max_completion_length=1,
        beta=0.0,
        top_k=0,
        temperature=1.0,
        warmup_ratio=0.0,
        lr_scheduler_type="constant",
        max_steps=steps,
        save_steps=10**6,
        probe_every=0,
        live_every=0,
        sampled_eval_limit=0,
        run_root=str(out_dir / "runs"),
        overrides=method,
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        model, tokenizer, loaded = load_model(cfg)
        prompts = build_dataset("train", True, cfg.data_dir, limit=16)["prompt"]
        before = expected_low_token_share(model, tokenizer, prompts)
        train(cfg, model, tokenizer, [low_first_token], loaded)
        after = expected_low_token_share(model, tokenizer, prompts)
    return (after - before) / steps


def rate_for_gain(curve: dict[float, float], gain: float) -> tuple[float, str] | None:
    """The smallest rate at which a mean gain curve reaches ``gain``, interpolated linearly in log(rate); ("below",
    the grid's first rate) when that rate already reaches it, None when no rate does."""
    rates = sorted(curve)
    if curve[rates[0]] >= gain:
        return rates[0], "below"
    for low, high in zip(rates, rates[1:]):
        if curve[low] < gain <= curve[high]:
            share = (gain - curve[low]) / (curve[high] - curve[low])
            return 10 ** (math.log10(low) + share * (math.log10(high) - math.log10(low))), "at"
    return None


def matched_rate_ratios(curves: dict[str, dict[float, float]], shares=(0.25, 0.5, 0.75)) -> dict:
    """LoRA's rate over full fine-tuning's for the same gain per step, at shares of the largest gain both reach:
    ``{"ratio": r, "bound": "exact" | "at least"}`` (at least: full fine-tuning reaches it below the grid)."""
    full, lora = curves["full fine-tuning"], curves["LoRA r8 alpha32"]
    reachable = min(max(full.values()), max(lora.values()))
    ratios = {}
    for share in shares:
        found_full, found_lora = rate_for_gain(full, share * reachable), rate_for_gain(lora, share * reachable)
        if found_full and found_lora and found_lora[1] == "at":
            bound = "at least" if found_full[1] == "below" else "exact"
            ratios[f"{share:.0%} of the gain both reach ({share * reachable:.4f}/step)"] = {
                "ratio": found_lora[0] / found_full[0],
                "bound": bound,
            }
    return ratios


def analyse(gains: dict[str, dict[float, list[float]]], seeds, steps: int, rates) -> dict:
    """The sweep's report from its gains per method, rate and seed."""
    curves = {name: {rate: statistics.fmean(g) for rate, g in by_rate.items()} for name, by_rate in gains.items()}
    best = {name: max(curve, key=curve.get) for name, curve in curves.items()}
    matched = matched_rate_ratios(curves)
    report = {
        "what": "GRPO on a random Qwen2 (hidden 256, 2 layers), reward low_first_token (one-token completions); "
        "gain = rise of the policy's exact expected reward per optimizer step, mean over seeds. Checks the "
        "learning-rate parametrisation of LoRA against full fine-tuning at toy scale, not the 0.5B model.",
        "model": MODEL,
        "methods": METHODS,
        "steps": steps,
        "seeds": list(seeds),
        "gain_per_step": {name: {str(r): g for r, g in curve.items()} for name, curve in curves.items()},
        "gain_per_step_by_seed": {name: {str(r): g for r, g in by.items()} for name, by in gains.items()},
        "best_rate_on_the_grid": best,
        "best_rate_ratio_lora_to_full": best["LoRA r8 alpha32"] / best["full fine-tuning"],
        "matched_gain_rate_ratio_lora_to_full": matched,
        "matched_gain_rate_ratio_geometric_mean": math.exp(
            statistics.fmean(math.log(r["ratio"]) for r in matched.values())
        )
        if matched
        else None,
        "note": "the toy reward has a ceiling (always a lower-half token) that large rates reach by collapsing the "
        "policy, at no cost here, so the best rate on the grid is where each method first reaches it; the rate "
        "each needs for the same gain per step is the cleaner measure of the parametrisation",
        "grid": f"rates {rates[0]:g} to {rates[-1]:g}, about 3x apart",
    }
    return report


def sweep(rates=RATES, seeds=(0, 1, 2), steps: int = 8, out_dir=REPO_ROOT / "runs" / "lora_lr") -> dict:
    out_dir = Path(out_dir)
    model_path = toy_model(out_dir / "model")
    started, gains = time.time(), {}
    for name, method in METHODS.items():
        gains[name] = {}
        for rate in rates:
            gains[name][rate] = [gain_per_step(model_path, method, rate, seed, steps, out_dir) for seed in seeds]
            print(f"{name:18s} lr {rate:7.0e}: gain per step {statistics.fmean(gains[name][rate]):+.4f}", flush=True)
    report = analyse(gains, seeds, steps, rates)
    report.update(seconds=round(time.time() - started), environment=runs.environment_info())
    runs.write_json(out_dir / "lora_lr.json", report)
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    """The sweep as a table of gain per step, with the rate ratios."""
    names = list(report["gain_per_step"])
    rates = list(report["gain_per_step"][names[0]])
    lines = [
        "| learning rate | " + " | ".join(f"{n}: gain per step" for n in names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for rate in rates:
        lines.append(
            f"| {float(rate):g} | " + " | ".join(f"{report['gain_per_step'][n][rate]:+.4f}" for n in names) + " |"
        )
    matched = report["matched_gain_rate_ratio_lora_to_full"]
    shown = ", ".join(f"{k}: {'>= ' if v['bound'] == 'at least' else ''}{v['ratio']:.1f}x" for k, v in matched.items())
    lines.append(
        "\nLoRA / full fine-tuning, rate for the same gain per step: "
        + (shown if matched else "not measurable (the curves never reach a common gain)")
        + "; "
        f"best rate on the grid: full {report['best_rate_on_the_grid'][names[0]]:g}, LoRA "
        f"{report['best_rate_on_the_grid'][names[1]]:g}. {len(report['seeds'])} seeds, {report['steps']} steps each. "
        f"A check of the parametrisation at toy scale, not of the 0.5B model."
    )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=RATES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out-dir", default=str(REPO_ROOT / "runs" / "lora_lr"))
    parser.add_argument("--from", dest="saved", help="re-read a saved lora_lr.json's gains (no training)")
    args = parser.parse_args(argv)
    if args.saved:
        saved = runs.read_json(args.saved)
        gains = {m: {float(r): g for r, g in by.items()} for m, by in saved["gain_per_step_by_seed"].items()}
        report = {**saved, **analyse(gains, saved["seeds"], saved["steps"], sorted(next(iter(gains.values()))))}
        runs.write_json(args.saved, report)
        print(markdown(report))
        return
    sweep(args.rates, args.seeds, args.steps, args.out_dir)


if __name__ == "__main__":
    main()
