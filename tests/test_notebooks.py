"""Every notebook executes top to bottom in smoke mode, through the same command users run."""

import json

import nbformat
import pytest

from utils import REPO_ROOT, runs
from utils.scripts.pipeline import NOTEBOOKS, SMOKE_ROOT, run

EXPERIMENT_NOTEBOOKS = [nb for nb in NOTEBOOKS if nb[:2] in ("01", "02", "03", "04")]


def read(name):
    return nbformat.read(REPO_ROOT / "notebooks" / f"{name}.ipynb", as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_clean_with_a_parameters_cell(name):
    notebook = read(name)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in notebook.cells if c.cell_type == "code")
    assert sum("parameters" in c.metadata.get("tags", []) for c in notebook.cells) == 1


def test_experiment_notebooks_differ_only_in_title_and_parameters():
    def body(name):
        return [c.source for c in read(name).cells[1:] if "parameters" not in c.metadata.get("tags", [])]

    first = body(EXPERIMENT_NOTEBOOKS[0])
    assert all(body(name) == first for name in EXPERIMENT_NOTEBOOKS[1:])
    for name in EXPERIMENT_NOTEBOOKS:
        parameters = next(c.source for c in read(name).cells if "parameters" in c.metadata.get("tags", []))
        assert f'EXPERIMENT = "{name[3:]}"' in parameters


@pytest.mark.slow
def test_smoke_pipeline_executes_every_notebook_and_writes_runs(monkeypatch):
    from test_session import MARKER

    monkeypatch.setenv("HF_TOKEN", MARKER)  # a token in the environment, where pipeline users keep it
    out_dir = run(smoke=True)
    root = REPO_ROOT / SMOKE_ROOT
    written = [p for p in root.rglob("*") if p.is_file()]
    assert len(written) > 100 and not [p for p in written if MARKER.encode() in p.read_bytes()]
    for name in NOTEBOOKS:
        executed = nbformat.read(out_dir / f"{name}.ipynb", as_version=4)
        errors = [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, (name, errors)
    from utils.experiments import baseline_dir, make_config
    from utils.scripts.pipeline import SMOKE_SEEDS

    trained = [
        make_config(name[3:], smoke=True, seed=seed)
        for name in EXPERIMENT_NOTEBOOKS
        for seed in SMOKE_SEEDS.get(name[:2], [42])
    ]
    assert sum(cfg.seed == 43 for cfg in trained) == 2  # two seeds of Exp2 and Exp4
    for cfg in trained:
        run_dir = REPO_ROOT / cfg.run_dir
        for artefact in (
            runs.CONFIG,
            runs.ENVIRONMENT,
            runs.REWARDS,
            runs.LOG,
            runs.PROBE,
            runs.COMPLETIONS,
            runs.EVAL,
            runs.EVAL_SUMMARY,
            runs.ADAPTER,
        ):
            assert (run_dir / artefact).exists(), (run_dir, artefact)
        summary = json.loads((run_dir / "eval_summary.json").read_text())
        assert summary["n"] == 8 and "accuracy_numeric_ci95" in summary
        for ood in ("svamp", "asdiv", "mawps"):  # out-of-distribution, small limits in smoke mode
            assert runs.read_json(run_dir / runs.eval_files(ood)[1])["n"] == 4
        assert (REPO_ROOT / baseline_dir(cfg) / runs.EVAL_SUMMARY).exists()  # random weights: one per seed
        for folder in (run_dir, REPO_ROOT / baseline_dir(cfg)):  # sampled: untrained and trained, K = 4
            sampled = runs.read_json(folder / runs.sampled_files()[1])
            assert sampled["complete"] and (sampled["questions"], sampled["samples_per_question"]) == (4, 4)
            harness = runs.read_json(folder / "harness.json")  # lm-evaluation-harness, 4 questions in smoke mode
            assert harness["limit"] == 4 and set(harness["protocols"]) == {
                "gsm8k 5-shot",
                "gsm8k CoT 8-shot, chat template",
            }
    analysis = nbformat.read(out_dir / "05_analysis.ipynb", as_version=4)
    shown = " ".join(
        str(o.get("text", "")) + str(o.get("data", {})) for c in analysis.cells for o in c.get("outputs", [])
    )
    assert "2 seeds: 95% t-interval over seeds" in shown  # the across-seed table
    assert "2 seeds: exp4_cosine_no_penalty__smoke - exp2_oneshot__smoke" in shown  # pooled over seeds
    assert "correct - wrong tokens, same question" in shown and "maj@4" in shown  # does longer reasoning help?
    assert "gsm8k 5-shot: flexible-extract" in shown  # numbers comparable with published ones
    executed = nbformat.read(out_dir / "02_exp2_oneshot.ipynb", as_version=4)
    assert any("pass TRL's contract checks" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    train_cell = next(c for c in executed.cells if c.cell_type == "code" and "run_dir = train(" in c.source)
    figures = [o for o in train_cell.outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 1  # the live view updates one figure in place: no spam in a saved notebook
    ask_cell = next(c for c in executed.cells if c.cell_type == "code" and "ask(cfg" in c.source)
    assert any("answer:" in o.get("text", "") for o in ask_cell.outputs)
    assert (root / "chart" / "study_accuracy.png").exists() and (root / "chart" / "kit_runs.png").exists()
    assert (root / "chart" / "eval_sets.png").exists() and (root / "chart" / "pass_at_k.png").exists()
