import json

import pytest

from utils.scripts.bench import markdown_table, project_epoch, run_benchmark


@pytest.fixture(scope="module")
def kit_and_study(tmp_path_factory):
    """The kit against the study's setup, one run for both tests (the backends: the GPU evidence dry run)."""
    out_dir = tmp_path_factory.mktemp("bench")
    kwargs = dict(steps=2, lengths=[8], experiments=["exp2_oneshot"], out_dir=out_dir, backends=False)
    return run_benchmark(**kwargs, evaluation=False), out_dir


@pytest.mark.slow
def test_benchmark_measures_both_configurations_in_one_run(kit_and_study):
    report, out_dir = kit_and_study
    saved = json.loads((out_dir / "bench.json").read_text())
    assert [(r["config"], r["status"]) for r in saved["results"]] == [("kit", "ok"), ("study", "ok")]
    kit, study = saved["results"]
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
    from utils.scripts.report import memory_estimates

    rows = memory_estimates(gpus=4)
    lora = [r["LoRA r64, one GPU"] for r in rows]
    full = [r["full fine-tuning, one GPU"] for r in rows]
    assert lora == sorted(lora) and full == sorted(full) and all(a < b for a, b in zip(lora, full))
    assert all(r["full, ZeRO-3 x4"] < r["full, ZeRO-2 x4"] < r["full fine-tuning, one GPU"] for r in rows)


def test_evaluation_time_estimate_arithmetic():
    from utils.experiments import make_config
    from utils.scripts.report import ASSUMED_T4_SECONDS_PER_DECODE_STEP, t4_evaluation_minutes

    minutes, arithmetic = t4_evaluation_minutes(make_config("exp2_oneshot", ood_eval_limit=0))["greedy"]
    assert "gsm8k 1,319 questions" in arithmetic and "21 batches" in arithmetic  # ceil(1319 / 64)
    assert minutes == pytest.approx(21 * 786 * ASSUMED_T4_SECONDS_PER_DECODE_STEP / 60)


@pytest.mark.slow
def test_a_published_benchmark_is_rendered_into_the_readme(kit_and_study, tmp_path):
    from utils.scripts.report import speed_markdown

    assert "No GPU benchmark has been published yet" in speed_markdown(tmp_path / "absent.json")
    text = speed_markdown(kit_and_study[1] / "bench.json")
    assert "| study | exp2_oneshot | 8 |" in text and "kit / study at 8 tokens" in text


@pytest.mark.slow
def test_the_lora_learning_rate_check_runs_and_reports(tmp_path):
    from utils.scripts.lora_lr import markdown, sweep

    report = sweep(rates=[1e-4, 1e-2], seeds=[0], steps=1, out_dir=tmp_path)
    saved = json.loads((tmp_path / "lora_lr.json").read_text())
    assert set(saved["gain_per_step"]) == {"full fine-tuning", "LoRA r8 alpha32"}
    assert list(saved["gain_per_step"]["full fine-tuning"]) == ["0.0001", "0.01"]
    assert saved["best_rate_ratio_lora_to_full"] == report["best_rate_ratio_lora_to_full"] > 0
    assert "not the 0.5B model" in saved["what"] + markdown(report)


@pytest.mark.slow
def test_the_gpu_evidence_command_dry_runs_on_a_cpu_within_its_budget(tmp_path):
    """The one command a device call runs, on the tiny model: it finishes what it starts, names what it skips."""
    import os
    import subprocess

    from utils import REPO_ROOT

    env = {**os.environ, "BUDGET": "60", "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        ["bash", "tests/gpu_evidence.sh", str(tmp_path), "--dry-run"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["results"] and all(r["status"] == "ok" for r in report["results"])  # every one started, finished
    assert report["skipped"] and all("expected_seconds" in s for s in report["skipped"])  # the rest, named
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "evidence.log"]  # what comes back
    log = (tmp_path / "evidence.log").read_text()
    assert "=== tests/test_gpu.py" in log and "skipped" in log and "=== done in" in log
