"""Seeds as an axis: run identity, grouping by config.json, and statistics across seeds with known answers."""

import dataclasses
import shutil

import numpy as np
import pytest

from utils import runs
from utils.analysis import compare_experiments, eval_table, seed_table
from utils.experiments import make_config
from utils.stats import seed_stratified_test, t_interval


def test_each_seed_and_each_training_setting_is_its_own_run_folder():
    cfg = make_config("exp2_oneshot")
    assert cfg.run_dir.name == "exp2_oneshot__seed42"
    assert make_config("exp2_oneshot", seed=43).run_dir.name == "exp2_oneshot__seed43"
    assert make_config("exp2_oneshot", max_steps=200).run_dir.name == "exp2_oneshot__max_steps=200__seed42"
    assert make_config("exp2_oneshot", smoke=True).run_dir.name == "exp2_oneshot__smoke__seed42"
    # what cannot change training changes neither the folder nor the resume: evaluation, display, location
    same = make_config("exp2_oneshot", eval_limit=10, live_every=0, report_to="tensorboard", run_root="elsewhere")
    assert same.run_dir.name == cfg.run_dir.name
    long = make_config("exp2_oneshot", data_dir=None, learning_rate=1e-5, max_steps=50, beta=0.0, top_k=0)
    assert long.run_dir.name.startswith("exp2_oneshot__settings-") and long.run_dir.name.endswith("__seed42")
    assert make_config("exp2_oneshot", run_name="exp2_oneshot").run_dir.name == "exp2_oneshot"  # an older folder


def test_a_t_interval_over_seeds_has_the_textbook_value():
    result = t_interval([0.40, 0.42, 0.38])  # mean 0.40, SD 0.02, t(0.975, 2) = 4.3027
    assert result["mean"] == pytest.approx(0.40) and result["sd"] == pytest.approx(0.02)
    assert result["ci95"] == pytest.approx([0.40 - 4.3027 * 0.02 / 3**0.5, 0.40 + 4.3027 * 0.02 / 3**0.5], abs=1e-4)
    assert t_interval([0.4])["seeds"] == 1 and np.isnan(t_interval([0.4])["ci95"][0])  # one seed: no interval


def synthetic_seeds(rng, effect: float, seeds: int = 3, questions: int = 300):
    """Per-question verdicts of two experiments: question difficulty shared, a seed effect shared by both experiments
    within a seed, and B better than A by ``effect``."""
    a, b = [], []
    for _ in range(seeds):
        seed_shift = rng.normal(0, 0.04)
        p = rng.uniform(0.1, 0.9, questions)
        a.append(rng.random(questions) < np.clip(p + seed_shift, 0, 1))
        b.append(rng.random(questions) < np.clip(p + seed_shift + effect, 0, 1))
    return a, b


@pytest.mark.parametrize("effect, detected", [(0.0, False), (0.08, True)])
def test_the_seed_stratified_test_finds_a_real_difference_and_not_a_null_one(effect, detected):
    rng = np.random.default_rng(0)
    p_values = [seed_stratified_test(*synthetic_seeds(rng, effect))["p_value"] for _ in range(20)]
    share = np.mean([p < 0.05 for p in p_values])
    assert share >= 0.9 if detected else share <= 0.15, p_values


def write_run(root, folder, experiment, seed, verdicts):
    """A trained run's folder as the kit writes it: config, a log row, and its GSM8K evaluation."""
    from utils.evaluate import summarize

    cfg = make_config(experiment, run_root=str(root), seed=seed)
    path = root / folder
    path.mkdir(parents=True)
    cfg.save(path / runs.CONFIG)
    runs.write_rows(path / runs.LOG, [{"step": 1}])
    records = [
        {
            "index": i,
            "correct_strict": v,
            "correct_numeric": v,
            "format_strict": True,
            "format_soft": True,
            "completion_tokens": 10,
            "truncated": False,
        }
        for i, v in enumerate(verdicts)
    ]
    runs.write_rows(path / runs.EVAL, records)
    runs.write_json(path / runs.EVAL_SUMMARY, summarize(records))
    return path


def three_seeds_each(tmp_path):
    rng = np.random.default_rng(1)
    a, b = synthetic_seeds(rng, effect=0.15, seeds=3, questions=200)
    for seed, (va, vb) in zip((42, 43, 44), zip(a, b)):
        write_run(tmp_path, f"two-{seed}", "exp2_oneshot", seed, va.tolist())
        write_run(tmp_path, f"four-{seed}", "exp4_cosine_no_penalty", seed, vb.tolist())
    return a, b


def test_accuracy_over_seeds_is_the_mean_with_a_t_interval_and_every_seed(tmp_path):
    a, _ = three_seeds_each(tmp_path)
    row = seed_table(tmp_path).loc["exp2_oneshot"]
    per_seed = [float(v.mean()) for v in a]
    assert row["seeds"] == 3 and row["accuracy"] == pytest.approx(np.mean(per_seed))
    assert row["ci95"] == pytest.approx(t_interval(per_seed)["ci95"]) and row["per_seed"] == dict(
        zip((42, 43, 44), per_seed)
    )
    assert row["interval"] == "3 seeds: 95% t-interval over seeds"


def test_two_experiments_are_compared_per_seed_and_pooled(tmp_path):
    a, b = three_seeds_each(tmp_path)
    pair = compare_experiments("exp2_oneshot", "exp4_cosine_no_penalty", tmp_path)
    differences = [float(vb.mean() - va.mean()) for va, vb in zip(a, b)]  # B - A, seed by seed
    assert [pair["per_seed"][s]["difference"] for s in (42, 43, 44)] == pytest.approx(differences)
    assert pair["mean_difference"] == pytest.approx(np.mean(differences)) and pair["mean_difference"] > 0
    assert pair["stratified_test"]["p_value"] < 0.01 and pair["stratified_test"]["odds_ratio_b_vs_a"] > 1
    assert pair["reading"].startswith("3 seeds: exp4_cosine_no_penalty - exp2_oneshot = +")


def test_one_seed_says_it_is_one_seed(tmp_path):
    write_run(tmp_path, "a", "exp2_oneshot", 42, [True, False, True, True])
    write_run(tmp_path, "b", "exp4_cosine_no_penalty", 42, [True, False, False, True])
    assert seed_table(tmp_path).loc["exp2_oneshot", "interval"] == "one seed: 95% Wilson interval over questions"
    assert compare_experiments("exp2_oneshot", "exp4_cosine_no_penalty", tmp_path)["reading"].startswith("One seed:")


def test_renaming_or_copying_a_run_folder_changes_no_table(tmp_path):
    three_seeds_each(tmp_path)
    before = (seed_table(tmp_path).to_dict(), eval_table(tmp_path).to_dict())
    (tmp_path / "two-42").rename(tmp_path / "my favourite run")
    shutil.copytree(tmp_path / "four-43", tmp_path / "old-copy")
    shutil.rmtree(tmp_path / "four-43")
    assert (seed_table(tmp_path).to_dict(), eval_table(tmp_path).to_dict()) == before


def test_an_older_single_seed_folder_is_read_by_its_config(tmp_path):
    """Folders of kits before seeds were named after the experiment alone: their config.json still says what they
    are, and run_name resumes them in place."""
    path = write_run(tmp_path, "exp2_oneshot", "exp2_oneshot", 42, [True, True, False])
    assert seed_table(tmp_path).loc["exp2_oneshot", "seeds"] == 1
    older = dataclasses.replace(make_config("exp2_oneshot", run_root=str(tmp_path)), run_name="exp2_oneshot")
    assert older.run_dir == path
