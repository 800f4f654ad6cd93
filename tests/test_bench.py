import json

import pytest

from utils.bench import markdown_table, project_epoch, run_benchmark


@pytest.mark.slow
def test_benchmark_measures_both_configurations_in_one_run(tmp_path):
    report = run_benchmark(steps=2, lengths=[8], experiments=["exp2_oneshot"], out_dir=tmp_path)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert [(r["config"], r["status"]) for r in saved["results"]] == [("study", "ok"), ("kit", "ok")]
    study, kit = saved["results"]
    assert study["backend"]["name"] == "transformers (full fine-tuning)" and kit["backend"]["lora_rank"] == 64
    assert study["ran"]["trainer_class"] == "trl.trainer.grpo_trainer.GRPOTrainer"  # plain TRL
    assert study["ran"]["optim"] == kit["ran"]["optim"] == "adamw_torch"
    assert kit["mean_completion_length"] == 8  # forced length
    assert kit["seconds_per_step"] > 0 and kit["nan_losses"] == 0
    assert report["ratios"][0]["tokens_per_second_ratio"] == pytest.approx(
        kit["generated_tokens_per_second"] / study["generated_tokens_per_second"]
    )
    assert "kit / study at 8 tokens" in markdown_table(report)


def test_epoch_projection_arithmetic():
    results = [{"config": "kit", "status": "ok", "completion_length": 786, "seconds_per_step": 3.6}]
    projection = project_epoch(results, "NVIDIA H100 80GB HBM3")
    assert projection["measured_gpu_hours"] == pytest.approx(3.6 * 1866 / 3600, abs=0.01)
    assert projection["t4_hours_estimate"] == pytest.approx(3.6 * 1866 / 3600 * 3350 / 320, abs=0.02)


def test_memory_estimates_grow_with_the_model_and_shrink_with_sharding():
    from utils.bench import memory_estimates

    rows = memory_estimates(gpus=4)
    lora = [r["LoRA r64, one GPU"] for r in rows]
    full = [r["full fine-tuning, one GPU"] for r in rows]
    assert lora == sorted(lora) and full == sorted(full) and all(a < b for a, b in zip(lora, full))
    assert all(r["full, ZeRO-3 x4"] < r["full, ZeRO-2 x4"] < r["full fine-tuning, one GPU"] for r in rows)


def test_evaluation_time_estimate_arithmetic():
    from utils.evaluate import ASSUMED_T4_SECONDS_PER_DECODE_STEP, evaluation_minutes_estimate
    from utils.experiments import make_config

    estimate = evaluation_minutes_estimate(make_config("exp2_oneshot", ood_eval_limit=0))
    assert estimate["questions"] == {"gsm8k": 1319} and estimate["batches"] == 21  # ceil(1319 / 64)
    assert estimate["minutes"] == pytest.approx(21 * 786 * ASSUMED_T4_SECONDS_PER_DECODE_STEP / 60)


@pytest.mark.slow
def test_a_published_benchmark_is_rendered_into_the_readme(tmp_path):
    from utils.report import speed_markdown

    assert "No GPU benchmark has been published yet" in speed_markdown(tmp_path / "absent.json")
    run_benchmark(steps=2, lengths=[8], experiments=["exp2_oneshot"], out_dir=tmp_path)
    text = speed_markdown(tmp_path / "bench.json")
    assert "| study | exp2_oneshot | 8 |" in text and "kit / study at 8 tokens" in text
