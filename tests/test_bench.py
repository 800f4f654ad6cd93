import json

import pytest

from utils.bench import markdown_table, project_epoch, run_benchmark

pytestmark = pytest.mark.slow


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
