"""The plumbing between the config, TRL and the run folder, pinned without training: checkpoints, the batch mapping,
the resume check, the arguments TRL gets, evaluation summaries and comparisons, each with hand-computed answers."""

import json
import sys
import types

import pytest
import torch

from utils import runs
from utils.callbacks import BatchGrader
from utils.evaluate import evaluate
from utils.experiments import make_config
from utils.model import load_model


def tiny_config(tmp_path, **overrides):
    return make_config("exp2_oneshot", smoke=True, run_root=str(tmp_path), probe_every=0, **overrides)


def test_evaluation_marks_completions_that_hit_the_limit_as_truncated(tmp_path, monkeypatch):
    """Greedy generation is faked so one completion stops with EOS and one runs into the token limit."""
    cfg = tiny_config(tmp_path, eval_max_new_tokens=5, eval_limit=2)
    model, tokenizer, backend = load_model(cfg)
    word = tokenizer.encode("7")[0]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id

    def fake_generate(input_ids, **kwargs):
        new = torch.tensor([[word, eos, pad, pad, pad], [word] * 5])[: len(input_ids)]
        return torch.cat([input_ids, new], dim=1)

    monkeypatch.setattr(model, "generate", fake_generate)
    summary = evaluate(cfg, model, tokenizer, tmp_path / "eval", backend, progress=False)
    records = runs.read_rows(tmp_path / "eval" / runs.EVAL)
    assert [(r["completion_tokens"], r["truncated"]) for r in records] == [(2, False), (5, True)]
    assert summary["truncated_share"] == 0.5 and summary["n"] == 2
    assert [r["completion"] for r in records] == ["7", "77777"]
    # the declared graders, imported by name, give the recorded verdicts
    for name, path in summary["graders"].items():
        module, function = path.rsplit(".", 1)
        grader = getattr(__import__(module, fromlist=[function]), function)
        assert [grader(r["completion"], r["gold"]) for r in records] == [r[f"correct_{name}"] for r in records]


def test_vllm_outputs_are_parsed_with_the_adapter(tmp_path, monkeypatch):
    """The vLLM path with a fake engine: text, token count and truncation come from vLLM's output objects."""
    from utils.evaluate import generate_completions
    from utils.model import LoadRecord

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=lambda **kw: kw))
    seen = {}

    class FakeEngine:
        def load_lora(self, path):
            seen["lora"] = path
            return "lora-request"

        def fast_generate(self, texts, sampling_params, lora_request, use_tqdm):
            seen.update(params=sampling_params, lora_request=lora_request, n=len(texts))
            finished = types.SimpleNamespace(text="<answer>\n7\n</answer>", token_ids=[1, 2, 3], finish_reason="stop")
            cut = types.SimpleNamespace(text="step step", token_ids=[4] * 9, finish_reason="length")
            return [types.SimpleNamespace(outputs=[o]) for o in (finished, cut)]

    (tmp_path / "adapter").mkdir()
    backend = LoadRecord(name="unsloth", model_name="m", device="cuda", dtype="float16", fast_inference=True)
    prompts = [[{"role": "user", "content": "q1"}], [{"role": "user", "content": "q2"}]]
    from utils.model import load_tokenizer

    out = generate_completions(
        FakeEngine(), load_tokenizer("tiny"), prompts, 9, loaded=backend, lora_path=tmp_path / "adapter"
    )
    assert out == [("<answer>\n7\n</answer>", 3, False), ("step step", 9, True)]
    assert seen == {
        "lora": str(tmp_path / "adapter"),
        "params": {"temperature": 0.0, "max_tokens": 9},
        "lora_request": "lora-request",
        "n": 2,
    }


def test_batch_grader_writes_sampled_completions(tmp_path):
    grader = BatchGrader("strict", tmp_path / runs.COMPLETIONS, samples_per_step=2)
    state = types.SimpleNamespace(global_step=6)
    completions = [[{"role": "assistant", "content": t}] for t in ("<answer>\n5\n</answer>", "5", "no")]
    assert grader(completions, answer=["5", "4", "5"], trainer_state=state) == [1.0, 0.0, 0.0]
    assert runs.read_rows(tmp_path / runs.COMPLETIONS) == [
        {"step": 7, "gold": "5", "correct": True, "completion": "<answer>\n5\n</answer>"},
        {"step": 7, "gold": "4", "correct": False, "completion": "5"},
    ]


# Defaults of Unsloth 2026.10.9's generated GRPOConfig subclass (unsloth/models/rl.py) that differ from TRL's: what
# ``trl.GRPOConfig`` becomes after ``import unsloth``.
UNSLOTH_DEFAULTS = dict(
    optim="adamw_8bit",
    torch_empty_cache_steps=250,
    weight_decay=0.001,
    learning_rate=5e-5,
    lr_scheduler_type="linear",
    warmup_steps=0.1,
    seed=3407,
    gradient_accumulation_steps=2,
    per_device_train_batch_size=4,
    max_grad_norm=1.0,
    adam_beta2=0.999,
    gradient_checkpointing=True,
    logging_nan_inf_filter=False,
    beta=0.05,
    temperature=1.0,
    top_k=0,
    num_generations=8,
    max_completion_length=512,
    num_train_epochs=3.0,
    logging_steps=1,
    report_to="none",
    save_steps=500,
    generation_kwargs={},
)


@pytest.mark.parametrize("unsloth_imported", [False, True])
def test_grpo_config_reproduces_the_studys_logged_arguments(tmp_path, monkeypatch, unsloth_imported):
    """The study's TRL 0.14 arguments (utils/assets/study_args.json), mapped onto today's TRL, whether or not
    Unsloth's subclass with its own defaults has replaced ``trl.GRPOConfig``."""
    import trl

    from utils import REPO_ROOT
    from utils.trainer import grpo_config

    if unsloth_imported:

        class UnslothGRPOConfig(trl.GRPOConfig):
            def __init__(self, **kwargs):
                super().__init__(**{**UNSLOTH_DEFAULTS, **kwargs})

        monkeypatch.setattr(trl, "GRPOConfig", UnslothGRPOConfig)
    study = json.loads((REPO_ROOT / "utils" / "assets" / "study_args.json").read_text())["args"]
    cfg = make_config("exp2_oneshot", lora_rank=0)  # the study's full fine-tuning; LoRA's rate is 10x (its own test)
    args = grpo_config(cfg, tmp_path)
    for key in (
        "learning_rate",
        "adam_beta1",
        "adam_beta2",
        "weight_decay",
        "max_grad_norm",
        "num_generations",
        "max_completion_length",
        "num_train_epochs",
        "beta",
        "temperature",
        "seed",
        "logging_steps",
        "optim",
    ):
        assert getattr(args, key) == study[key], key
    assert str(args.lr_scheduler_type) == f"SchedulerType.{study['lr_scheduler_type'].upper()}"
    assert args.warmup_steps == study["warmup_ratio"]  # transformers 5: a float below 1 is a ratio
    assert cfg.max_prompt_length == study["max_prompt_length"]
    # TRL 0.14 counted prompts per batch: 1 prompt x 4 accumulation steps x 4 generations = 16 completions per step.
    study_completions = (
        study["per_device_train_batch_size"] * study["gradient_accumulation_steps"] * study["num_generations"]
    )
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == study_completions
    assert args.top_k == 50 and args.loss_type == "grpo" and args.gradient_checkpointing is False
    assert args.torch_empty_cache_steps is None and args.logging_nan_inf_filter is False
    assert args.save_steps == cfg.save_steps and args.generation_kwargs == {}


def make_checkpoint(
    checkpoints, step, files=("trainer_state.json", "optimizer.pt", "scheduler.pt", "adapter_model.safetensors")
):
    folder = checkpoints / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_text("{}")
    return folder


@pytest.mark.parametrize(
    "missing", ["trainer_state.json", "optimizer.pt", "scheduler.pt", "adapter_model.safetensors"]
)
def test_the_newest_complete_checkpoint_is_resumed_and_an_incomplete_one_skipped(tmp_path, missing, capsys):
    complete = make_checkpoint(tmp_path, 4)
    make_checkpoint(tmp_path, 2)
    every = ("trainer_state.json", "optimizer.pt", "scheduler.pt", "adapter_model.safetensors")
    make_checkpoint(tmp_path, 10, [f for f in every if f != missing])  # 10 > 4: numbers, not text, order them
    (tmp_path / "checkpoint-tmp").mkdir()  # not a checkpoint
    assert runs.last_complete_checkpoint(tmp_path) == complete
    what = "model weights" if missing.endswith("safetensors") else missing
    assert f"Skipping checkpoint-10: incomplete (missing {what})" in capsys.readouterr().out
    make_checkpoint(tmp_path, 12, every[:3] + ("model.safetensors",))  # full fine-tuning's weights count too
    assert runs.last_complete_checkpoint(tmp_path).name == "checkpoint-12"
    assert runs.last_complete_checkpoint(tmp_path / "absent") is None


def test_a_checkpoint_at_max_steps_is_finished(tmp_path):
    folder = make_checkpoint(tmp_path, 4)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 4, "max_steps": 4}))
    assert runs.finished(folder)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 3, "max_steps": 4}))
    assert not runs.finished(folder)


@pytest.mark.parametrize(
    "processes, generations, prompts, expected",
    [(1, 4, 4, (4, 4)), (1, 8, 2, (8, 2)), (2, 4, 4, (4, 2)), (4, 6, 4, (6, 1))],
)
def test_the_batch_mapping_keeps_the_studys_step(monkeypatch, processes, generations, prompts, expected):
    """Per process: one prompt's completions per micro-batch, prompts_per_step / N accumulated: N x that many."""
    from utils.experiments import batch_mapping

    cfg = make_config("exp2_oneshot", num_generations=generations, prompts_per_step=prompts)  # checked on one process
    monkeypatch.setenv("WORLD_SIZE", str(processes))
    mapping = batch_mapping(cfg)
    assert (mapping["per_device_train_batch_size"], mapping["gradient_accumulation_steps"]) == expected
    assert processes * mapping["gradient_accumulation_steps"] == prompts  # prompts per optimizer step, unchanged


def test_a_batch_that_cannot_be_split_over_the_processes_is_refused(monkeypatch):
    from utils.experiments import batch_mapping

    cfg = make_config("exp2_oneshot")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="prompts_per_step=4 cannot be split over 3 processes"):
        batch_mapping(cfg)


def saved_run(tmp_path, cfg, records):
    from utils.trainer import check_resumable

    cfg.run_dir.mkdir(parents=True)
    cfg.save(cfg.run_dir / runs.CONFIG)
    runs.write_json(cfg.run_dir / runs.REWARDS, records)
    return lambda other_cfg, other_records: check_resumable(other_cfg, other_records, cfg.run_dir)


REWARD = {"name": "correctness_reward_func", "weight": 2.0, "module": "utils.rewards", "source": "def f(): ..."}


@pytest.mark.parametrize(
    "change, allowed",
    [
        (dict(learning_rate=1e-4), False),
        (dict(seed=7), False),
        (dict(cosine_scale=2.0), False),  # reward hyper-parameters are config fields, so they are compared
        (dict(eval_limit=10, ood_eval_limit=0, eval_batch_size=2, live_every=0, report_to="tensorboard"), True),
        (dict(run_root="elsewhere"), True),  # a copied or moved run folder resumes
    ],
)
def test_the_resume_check_refuses_what_changes_training_and_nothing_else(tmp_path, change, allowed):
    import dataclasses

    cfg = tiny_config(tmp_path)
    check = saved_run(tmp_path, cfg, [REWARD])
    changed = dataclasses.replace(cfg, **change)
    if allowed:
        check(changed, [REWARD])
    else:
        field = next(iter(change))
        with pytest.raises(ValueError, match=rf"trained differently \({field}: "):
            check(changed, [REWARD])


@pytest.mark.parametrize(
    "records, message",
    [
        ([], "reward correctness_reward_func removed"),
        ([REWARD, dict(REWARD, name="extra")], "reward extra added"),
        ([dict(REWARD, weight=1.0)], r"reward correctness_reward_func changed \(weight\)"),
        ([dict(REWARD, source="def g(): ...")], r"reward correctness_reward_func changed \(source\)"),
    ],
)
def test_the_resume_check_names_each_kind_of_reward_change(tmp_path, records, message):
    cfg = tiny_config(tmp_path)
    check = saved_run(tmp_path, cfg, [REWARD])
    with pytest.raises(ValueError, match=message):
        check(cfg, records)


def test_rows_past_a_save_interval_are_never_dropped(tmp_path):
    from utils.trainer import check_no_rows_lost

    runs.write_rows(tmp_path / runs.LOG, [{"step": s} for s in range(1, 8)])
    check_no_rows_lost(tmp_path, resume_step=6, save_steps=2)  # step 7 is redone: a save interval explains it
    check_no_rows_lost(tmp_path, resume_step=5, save_steps=2)
    with pytest.raises(ValueError, match=r"logged 7 steps, but .* has checkpoint-4: .*drop the rows of steps 5-7"):
        check_no_rows_lost(tmp_path, resume_step=4, save_steps=2)


def record(correct_strict: bool, correct_numeric: bool, tokens: int, index: int, truncated=False, fmt=True) -> dict:
    return {
        "index": index,
        "correct_strict": correct_strict,
        "correct_numeric": correct_numeric,
        "format_strict": fmt,
        "format_soft": fmt,
        "completion_tokens": tokens,
        "truncated": truncated,
    }


def test_a_summary_counts_what_it_says(tmp_path):
    from utils.evaluate import summaries_table, summarize

    records = [
        record(True, True, 10, 0),
        record(False, True, 20, 1),
        record(True, True, 30, 2, fmt=False),
        record(False, False, 100, 3, truncated=True),
    ]
    summary = summarize(records)
    assert summary["n"] == 4 and summary["accuracy_strict"] == 0.5 and summary["accuracy_numeric"] == 0.75
    assert summary["accuracy_numeric_ci95"] == pytest.approx([0.3006, 0.9544], abs=1e-4)  # Wilson, 3 of 4
    assert summary["accuracy_strict_ci95"] == pytest.approx([0.1500, 0.8500], abs=1e-4)  # Wilson, 2 of 4
    assert summary["format_strict"] == 0.75 and summary["truncated_share"] == 0.25
    assert summary["mean_completion_tokens"] == 40 and summary["median_completion_tokens"] == 25
    table = summaries_table({"gsm8k": dict(summary, headline_grader="strict")})
    row = table.loc["gsm8k"]
    assert (row["n"], row["headline grader"], row["accuracy [95% CI]"]) == (4, "strict", "0.500 [0.150, 0.850]")
    assert (row["numeric"], row["mean_tokens"], row["truncated"]) == (0.75, 40.0, 0.25)


def write_eval(folder, verdicts, eval_set="gsm8k"):
    folder.mkdir(parents=True, exist_ok=True)
    rows = [record(v, v, 10, i) for i, v in enumerate(verdicts)]
    runs.write_rows(folder / runs.eval_files(eval_set)[0], rows)
    return folder


def test_the_baseline_comparison_is_trained_minus_untrained_on_the_same_questions(tmp_path):
    from utils.analysis import baseline_comparison

    trained = write_eval(tmp_path / "exp2_oneshot", [True, True, True, False, True])
    baseline = write_eval(tmp_path / "baseline", [False, False, True, False])  # one question fewer: not compared
    [row] = baseline_comparison(trained, baseline).to_dict("records")
    assert row["n"] == 4 and row["accuracy"] == 0.75 and row["baseline"] == 0.25
    assert row["change"] == pytest.approx(+0.5)  # trained - untrained: positive when training helped
    assert row["mcnemar_p"] == pytest.approx(0.5)  # 2 discordant, both for the trained model: 2 x 0.5^2
    assert row["ci95"] == pytest.approx((0.3006, 0.9544), abs=1e-4)


def write_evaluated(folder, verdicts, cfg, eval_set="gsm8k"):
    """An evaluation as the kit writes it: the records, and a summary whose identity says what was evaluated."""
    from utils.evaluate import summarize

    write_eval(folder, verdicts, eval_set)
    identity = {"model": cfg.model_name, "prompt": "one-shot" if cfg.one_shot else "system prompt only"}
    identity.update(eval_set=eval_set, questions_sha256="the same questions")
    records = runs.read_rows(folder / runs.eval_files(eval_set)[0])
    runs.write_json(folder / runs.eval_files(eval_set)[1], dict(summarize(records), identity=identity))


def test_the_table_of_sets_pairs_each_run_with_its_prompts_baseline(tmp_path):
    """Runs are found by their config.json (a renamed folder changes nothing) and each is compared with the baseline
    whose evaluation identity matches its own: same base model, prompt and questions."""
    from utils.analysis import eval_sets_table
    from utils.experiments import baseline_dir

    for experiment, verdicts, folder in (("exp1_no_oneshot", [True, False], "a"), ("exp2_oneshot", [True, True], "b")):
        cfg = make_config(experiment, run_root=str(tmp_path))
        write_evaluated(tmp_path / folder, verdicts, cfg)  # folders named anything at all
        cfg.save(tmp_path / folder / runs.CONFIG)
        runs.write_rows(tmp_path / folder / runs.LOG, [{"step": 1}])
    write_evaluated(
        baseline_dir(make_config("exp1_no_oneshot", run_root=str(tmp_path))),
        [False, False],
        cfg=make_config("exp1_no_oneshot"),
    )
    write_evaluated(
        baseline_dir(make_config("exp2_oneshot", run_root=str(tmp_path))),
        [True, False],
        cfg=make_config("exp2_oneshot"),
    )
    table = eval_sets_table(tmp_path).set_index("experiment")
    assert table.loc["exp1_no_oneshot", "change"] == pytest.approx(0.5)  # against the system-prompt baseline
    assert table.loc["exp2_oneshot", "change"] == pytest.approx(0.5)  # against the one-shot baseline
    assert table.loc["exp2_oneshot", "baseline"] == 0.5 and table.loc["exp2_oneshot", "seed"] == 42


def test_the_built_grpo_config_is_what_environment_json_records(tmp_path, monkeypatch):
    from utils.trainer import grpo_config, what_reached_trl

    monkeypatch.setenv("WORLD_SIZE", "1")
    cfg = make_config("exp2_oneshot", trl_args={"epsilon": 0.3})
    record_ = what_reached_trl(grpo_config(cfg, tmp_path))
    assert record_["batch"] == {
        "world_size": 1,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 4,
        "num_generations": 4,
        "completions_per_step": 16,
    }
    assert record_["grpo_config"]["epsilon"] == 0.3 and record_["grpo_config"]["learning_rate"] == cfg.learning_rate
    assert record_["mixed_precision"] == "no"  # fp32 on a CPU


def test_reward_hyper_parameters_are_config_fields_the_builder_reads(tokenizer):
    import math

    from utils.rewards import build_rewards, reasoning_length

    cfg = make_config("exp4_cosine_no_penalty", cosine_scale=2.0, cosine_max_length=100, correctness_weight=3.0)
    rewards = dict((f.__name__, (f, w)) for f, w in build_rewards(cfg.reward_set, tokenizer, **cfg.reward_settings))
    cosine, _ = rewards["cosine_length_reward_func"]
    short = "<reasoning>\n9\n</reasoning>\n<answer>\n18\n</answer>\n"
    tokens = reasoning_length(short, tokenizer)
    assert cosine([short], answer=["18"])[0] == pytest.approx(2.0 * math.cos(tokens / 100 * math.pi / 2))
    assert rewards["correctness_reward_func"][1] == 3.0
    smoke = make_config("exp4_cosine_no_penalty", smoke=True)
    assert smoke.reward_settings["cosine_max_length"] == smoke.max_completion_length == 24  # None: follow the limit
    study = make_config("exp4_cosine_no_penalty")
    assert study.reward_settings == {"cosine_max_length": 786, "cosine_scale": 5.0, "correctness_weight": None}
    assert study.to_dict()["cosine_max_length"] == 786  # config.json holds the budget that ran


def test_a_run_folder_of_an_earlier_kit_gets_one_clear_message(tmp_path):
    """A config.json that lacks fields this kit has was written by an earlier kit: refused with what to do."""
    from utils.experiments import ExperimentConfig

    cfg = make_config("exp4_cosine_no_penalty", run_root=str(tmp_path))
    older = {k: v for k, v in cfg.to_dict().items() if k not in ("cosine_max_length", "cosine_scale")}
    cfg.run_dir.mkdir(parents=True)
    runs.write_json(cfg.run_dir / runs.CONFIG, older)
    with pytest.raises(ValueError, match=r"written by an earlier version of the kit .*start a new run"):
        ExperimentConfig.load(cfg.run_dir / runs.CONFIG)


def test_lora_learns_at_ten_times_the_studys_rate_and_a_set_rate_wins():
    from utils.experiments import config_table

    lora, full = make_config("exp2_oneshot"), make_config("exp2_oneshot", lora_rank=0)
    assert (lora.learning_rate, lora.lora_rank, lora.lora_alpha) == (5e-5, 64, 32)  # 10 x 5e-6, alpha / rank = 0.5
    assert full.learning_rate == 5e-6  # the study's, for what the study did
    assert make_config("exp2_oneshot", learning_rate=2e-5).learning_rate == 2e-5
    table = config_table(lora)
    assert table.loc["learning_rate", "value"] == "5e-05" and table.loc["learning_rate", "changed"] == ""
    assert "10x that for LoRA" in table.loc["learning_rate", "what it does"]
