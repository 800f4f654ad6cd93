"""The CPU mini-study's comparisons, on records with a known answer."""

import pandas as pd
import pytest

from utils.scripts import cpu_study

TAGGED = "<reasoning>\nthree\n</reasoning>\n<answer>\n3\n</answer>\n"
UNTAGGED = "The answer is 3."


def records(completions, tokens):
    return pd.DataFrame(
        [
            {"index": i, "completion": text, "completion_tokens": n, "truncated": n >= 100,
             "format_strict": "<" in text,
             "format_soft": "<" in text, "correct_strict": "<" in text, "correct_numeric": True}
            for i, (text, n) in enumerate(zip(completions, tokens))
        ]
    )  # fmt: skip


def test_paired_counts_tags_and_tests_the_discordant_pairs():
    a = records([TAGGED, TAGGED, TAGGED, UNTAGGED], [10, 20, 30, 100])
    b = records([TAGGED, UNTAGGED, UNTAGGED, UNTAGGED], [10, 10, 10, 100])
    result = cpu_study.paired(a, b, ("before", "after"))
    assert result["n"] == 4
    assert result["answer_tags"]["before"] == 0.75 and result["answer_tags"]["after"] == 0.25
    assert result["answered"]["before"] == 0.75  # "3" inside the tags is a number
    assert result["correct_strict"]["after"] == 0.25 and result["correct_numeric"]["after"] == 1.0  # both graders
    assert result["answer_tags"]["mcnemar_p"] == pytest.approx(0.5)  # 2 discordant pairs, both one way: 2 x 1/4
    assert result["completion_tokens"]["difference"]["mean"] == pytest.approx(-7.5)  # (0 - 10 - 20 + 0) / 4
    assert result["completion_tokens"]["truncated"] == [0.25, 0.25]


def test_the_readme_section_is_rendered_from_the_result(tmp_path):
    assert "No CPU study published yet" in cpu_study.markdown(tmp_path / "absent.json")
    a = records([TAGGED, UNTAGGED], [10, 20])
    result = {
        "prompts_untrained": cpu_study.paired(a, a, ("system prompt", "one-shot")),
        "experiments": {},
        "provenance": cpu_study.provenance(120, "python -m utils.scripts.cpu_study --steps 0"),
    }
    cpu_study.runs.write_json(tmp_path / "cpu_study.json", result)
    text = cpu_study.markdown(tmp_path / "cpu_study.json")
    assert "n = 2 test questions" in text and "| `<answer>` tags | 0.50 [" in text and "trained nothing" in text


def test_the_sweep_table_is_rendered_from_the_sweep(tmp_path):
    assert "No settings sweep" in cpu_study.sweep_markdown(tmp_path / "absent.json")
    row = {"setting": "bf16, 2x4, 128 tokens", "seconds_per_step": 41.2, "completions_per_minute": 11.65,
           "groups_with_signal": 0.25, "truncated_share": 0.5, "mean_reward": 0.0312}  # fmt: skip
    command = "python -m utils.scripts.cpu_study --sweep"
    sweep = {"steps": 6, "rows": [row], "provenance": cpu_study.provenance(600, command)}
    cpu_study.runs.write_json(tmp_path / "cpu_sweep.json", sweep)
    text = cpu_study.sweep_markdown(tmp_path / "cpu_sweep.json")
    assert "| **bf16, 2x4, 128 tokens** (the study's) | 41 (1.00x) | 11.7 | 25% | 50% | 0.031 |" in text
    assert "6 GRPO steps" in text


@pytest.mark.slow
def test_the_cpu_benchmark_measures_each_configuration_and_divides_what_it_measured(tmp_path):
    from utils.scripts import cpu_bench

    out, root = tmp_path / "cpu_bench.json", tmp_path / "runs"
    result = cpu_bench.run("tiny", steps=2, length=8, out=out, run_root=root, with_limits=True)
    configs = result["configs"]
    assert list(configs) == list(cpu_bench.CONFIGS)
    assert [c["dtype"] for c in configs.values()] == ["float32", "bfloat16", "bfloat16"]
    assert all(c["steps"] == 2 and c["generation_tokens_per_second"] > 0 for c in configs.values())
    [kit_log] = (root / "kit").glob(f"*bf16*/{cpu_study.runs.LOG}")
    assert [row["completion_length"] for row in cpu_study.runs.read_rows(kit_log)] == [8, 8]  # forced lengths
    assert list((root / "bare").glob("**/bare/adapter/adapter_model.safetensors"))  # the bare trainer saved its own
    per_step = configs["kit, bf16"]["seconds_per_step"] / configs["bare TRL, bf16"]["seconds_per_step"]
    assert result["ratios"]["kit / bare TRL, per step"] == pytest.approx(per_step)
    text = cpu_bench.markdown(out)
    assert all(f"| {label} |" in text for label in configs) and "kit / bare TRL, per step" in text
    limits = result["limits"]
    assert limits["bandwidth_gb_per_second"] > 0 and limits["bf16_matmul_tflops"] > 0 and limits["decode_profile"]
    assert limits["prompt_tokens"] > 100  # the one-shot chat prompt's tokens, not the fields of an encoding
    attempts = limits["attempts"]
    assert set(attempts) == {"baseline (batch 8, transformers' SDPA, dynamic cache)", *cpu_bench.cpu_floors.ATTEMPTS}
    assert attempts["grouped SDPA, torch's enable_gqa (utils.cpu_attention)"]["same"]  # the kit's: the same tokens
    assert "Against this CPU's limits" in text and "| grouped decode attention written out (float32 softmax) |" in text


def test_the_floors_follow_from_bandwidth_matmul_rate_and_model_size():
    import torch

    from utils.scripts.cpu_floors import floors

    model = torch.nn.Linear(1000, 1000, bias=False).to(torch.bfloat16)  # 1e6 parameters, 2e6 bytes
    found = floors(model, bandwidth=20.0, tflops=0.5, batch=8, prompt_tokens=100, completion_tokens=50, completions=8)
    prefill = 2 * 1e6 * 8 * 100 / 0.5e12  # 3.2 ms
    decode = 50 * 2e6 / 20e9  # reading the weights (0.1 ms a token) is slower than their 16 MFLOPs (0.032 ms)
    assert found["generation_tokens_per_second"] == pytest.approx(8 * 50 / (prefill + decode))
    assert found["step_seconds"] == pytest.approx(prefill + decode + 8 * 1e6 * 8 * 150 / 0.5e12)
    wide = floors(model, bandwidth=20.0, tflops=0.5, batch=64, prompt_tokens=0, completion_tokens=50, completions=8)
    assert wide["generation_tokens_per_second"] == pytest.approx(64 * 50 / (50 * 2 * 1e6 * 64 / 0.5e12))  # compute


@pytest.mark.parametrize("attention", ["kit_grouped_decode", "kit_grouped_rows"])
def test_grouped_decode_attentions_compute_what_sdpa_does(attention):
    import copy

    import torch

    from utils.model_cache import build_random_qwen2
    from utils.scripts.cpu_floors import register_grouped_decode_attention

    register_grouped_decode_attention()
    model = build_random_qwen2("tiny").eval()  # 4 query heads over 2 key-value heads
    ids = torch.randint(0, 1000, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding, as batched generation has it
    with torch.no_grad():
        cache = model(ids, attention_mask=mask, use_cache=True).past_key_values
        step, step_mask = torch.randint(0, 1000, (3, 1)), torch.cat([mask, torch.ones(3, 1, dtype=mask.dtype)], 1)
        reference = model(step, attention_mask=step_mask, past_key_values=copy.deepcopy(cache)).logits
        model.set_attn_implementation(attention)
        grouped = model(step, attention_mask=step_mask, past_key_values=cache).logits
    assert torch.allclose(grouped, reference, atol=1e-4)
