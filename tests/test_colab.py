"""What a Colab or Kaggle user meets: live curves, runs kept on Drive, asking the model, exporting it, every TRL
setting reachable, and a failing notebook that says where its output is."""

import pytest
import torch

from utils.experiments import config_table, make_config
from utils.model import load_model
from utils.rewards import build_rewards


def tiny_config(tmp_path, **overrides):
    return make_config("exp2_oneshot", smoke=True, run_root=str(tmp_path), probe_every=0, **overrides)


@pytest.mark.slow
def test_live_view_draws_at_the_requested_steps(tmp_path):
    from utils.trainer import train

    cfg = tiny_config(tmp_path, max_steps=4, live_every=2)
    model, tokenizer, backend = load_model(cfg)
    titles = []
    train(
        cfg,
        model,
        tokenizer,
        build_rewards(cfg.reward_set, tokenizer),
        backend,
        live_view=lambda fig: titles.append(fig._suptitle.get_text()),
    )
    assert [t.split(":")[0] for t in titles] == ["step 2/4", "step 4/4"]
    assert all("elapsed" in t and "ETA" in t for t in titles)


def test_live_view_draws_nothing_outside_a_notebook():
    from utils.callbacks import notebook_figure

    assert notebook_figure() is None  # pytest has no IPython kernel: no figures, no spam


@pytest.mark.bad_input
def test_trl_args_reach_grpo_config_and_bad_names_fail_before_any_model(tmp_path):
    from utils.trainer import grpo_config

    cfg = make_config(
        "exp2_oneshot", trl_args={"epsilon": 0.3, "mask_truncated_completions": True}, report_to="tensorboard"
    )
    args = grpo_config(cfg, tmp_path)
    assert args.epsilon == 0.3 and args.mask_truncated_completions is True and args.report_to == ["tensorboard"]
    with pytest.raises(ValueError, match=r"trl_args\['epsilonn'\]: not a GRPOConfig argument \(did you mean 'epsil"):
        make_config("exp2_oneshot", trl_args={"epsilonn": 0.3})


def test_config_table_marks_what_was_changed():
    table = config_table(make_config("exp2_oneshot", smoke=True, eval_batch_size=3))
    assert table.loc["eval_batch_size", "changed"] == "yes" and table.loc["learning_rate", "changed"] == ""  # smoke's
    assert config_table(make_config("exp2_oneshot", learning_rate=1e-4)).loc["learning_rate", "changed"] == "yes"
    assert table.loc["beta", "changed"] == "" and table.loc["beta", "value"] == "0.04"


def test_merged_model_loads_and_generates(tmp_path):
    from transformers import AutoModelForCausalLM

    from utils.model import save_merged_model

    cfg = tiny_config(tmp_path)
    model, tokenizer, backend = load_model(cfg)
    with torch.no_grad():  # a trained-looking adapter, so the merge has something to merge
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.fill_(0.01)
    out = save_merged_model(model, tokenizer, backend, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    ids = tokenizer("2 + 2 =", return_tensors="pt")
    reference = model(**ids).logits
    assert torch.allclose(merged(**ids).logits, reference, atol=0.5)  # the adapter is in the weights (fp16)
    assert merged.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] == ids["input_ids"].shape[1] + 3
    assert any("lora_B" in name for name, _ in model.named_parameters())  # the model in memory keeps its adapter


def test_ask_shows_the_answer_and_every_reward(tmp_path, capsys):
    from utils.train import ask

    cfg = tiny_config(tmp_path, eval_max_new_tokens=6)
    model, tokenizer, backend = load_model(cfg)
    rewards = build_rewards(cfg.reward_set, tokenizer)
    table = ask(cfg, model, tokenizer, "What is 2 + 2?", rewards, "4", backend)
    out = capsys.readouterr().out
    assert "reasoning (6 tokens, cut at the limit)" in out and "gold: '4'" in out
    assert list(table.columns) == [f.__name__ for f, _ in rewards] + ["total"] and len(table) == 1


def test_runs_go_to_drive_on_colab_to_working_on_kaggle_and_stay_put_elsewhere(monkeypatch):
    import sys
    import types

    from utils.runtime import persistent_run_root

    for variable in ("COLAB_RELEASE_TAG", "COLAB_GPU", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(variable, raising=False)
    assert persistent_run_root(True) is None  # a no-op outside Colab and Kaggle
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert persistent_run_root(True) == "/kaggle/working/runs" and persistent_run_root(True, smoke=True) is None
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE")
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release")
    mounted = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert persistent_run_root(True) == "/content/drive/MyDrive/grpo-math-kit/runs" and mounted == ["/content/drive"]
    assert persistent_run_root(False) is None and mounted == ["/content/drive"]


@pytest.mark.fault
def test_a_failing_notebook_says_where_its_output_was_saved(monkeypatch):
    import papermill

    from utils.scripts.pipeline import main

    def fails(input_path, output_path, **kwargs):
        raise papermill.PapermillExecutionError(7, 3, "train(...)", "ValueError", "bad reward", [])

    monkeypatch.setattr(papermill, "execute_notebook", fails)
    with pytest.raises(
        SystemExit, match=r"00_data_prep failed in cell 3: ValueError: bad reward\n.*is .*notebooks/00_data_prep.ipynb"
    ):
        main(["--smoke", "--only", "00"])
