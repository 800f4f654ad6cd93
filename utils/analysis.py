"""The analysis of this kit's runs: held-out evaluations against the untrained baseline, across experiments, seeds
and evaluation sets, sampled evaluations across runs, and training curves. (The study's own logs are re-analysed in
``utils.study``; the charts are drawn by ``utils.charts``.)

Every difference is B - A: the second run minus the first, the trained model minus the untrained baseline.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from utils import runs
from utils.data import EVAL_SETS
from utils.experiments import KitRun, baseline_label, find_baselines, find_runs, model_folders, runs_by_label
from utils.grading import GRADERS
from utils.logs import load_run_logs
from utils.sampled import load_summary
from utils.stats import format_interval, mcnemar_exact, seed_stratified_test, t_interval, wilson_interval


def load_kit_logs(runs_root="runs") -> dict[str, dict[int, pd.DataFrame]]:
    """Per-step logs of every run under ``runs_root``: experiment and settings -> seed -> logs."""
    return {
        label: {run.seed: load_run_logs(run.path) for run in group}
        for label, group in runs_by_label(runs_root).items()
    }


def read_eval(path) -> pd.DataFrame:
    path = Path(path)
    return pd.DataFrame(runs.read_jsonl(path / runs.EVAL if path.is_dir() else path))


def resolve_label(name: str, groups: dict[str, list[KitRun]]) -> str | None:
    """The group ``name`` means: a label (``exp2_oneshot__smoke``), or an experiment whose runs share one label."""
    if name in groups:
        return name
    matching = [label for label, group in groups.items() if group[0].cfg.name == name]
    if len(matching) > 1:
        raise ValueError(f"{name!r} ran with several settings ({', '.join(matching)}): name one of them.")
    return matching[0] if matching else None


def _same_questions(a: dict, b: dict) -> bool:
    """Two evaluation summaries of one base model, prompt and question set (what a baseline must share with a run)."""
    keys = ("model", "prompt", "eval_set", "questions_sha256")
    return all(a.get("identity", {}).get(k) == b.get("identity", {}).get(k) for k in keys)


def baseline_for(run: KitRun, eval_set: str = "gsm8k", runs_root="runs") -> Path | None:
    """The untrained baseline evaluated on the same questions with the same base model and prompt as ``run``."""
    summary_file = runs.eval_files(eval_set)[1]
    if not (run.path / summary_file).is_file():
        return None
    trained = runs.read_json(run.path / summary_file)
    for folder in find_baselines(runs_root):
        if (folder / summary_file).is_file() and _same_questions(trained, runs.read_json(folder / summary_file)):
            return folder
    return None


def eval_table(runs_root="runs", eval_set: str = "gsm8k") -> pd.DataFrame:
    """Every evaluation of ``eval_set`` under ``runs_root``, one row per run and seed (and per untrained baseline):
    accuracy under both graders with 95% Wilson intervals and n."""
    summary_file = runs.eval_files(eval_set)[1]
    evaluated = [(run.label, run.seed, run.path) for run in find_runs(runs_root)]
    evaluated += [(baseline_label(folder), None, folder) for folder in find_baselines(runs_root)]
    rows = []
    for label, seed, folder in evaluated:
        if not (folder / summary_file).is_file():
            continue
        s = runs.read_json(folder / summary_file)
        row = {"run": label, "seed": seed, "trained": runs.steps_trained(folder) if seed is not None else "untrained"}
        row["n"] = s["n"]
        for grader in GRADERS:
            row[f"acc_{grader}"] = s[f"accuracy_{grader}"]
            row[f"acc_{grader}_ci95"] = [round(bound, 3) for bound in s[f"accuracy_{grader}_ci95"]]
        row.update(
            format_strict=s["format_strict"], mean_tokens=s["mean_completion_tokens"], truncated=s["truncated_share"]
        )
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).astype({"seed": "Int64"}).set_index(["run", "seed"])


def _verdicts(run: KitRun, eval_set: str, grader: str) -> pd.Series:
    return read_eval(run.path / runs.eval_files(eval_set)[0]).set_index("index")[f"correct_{grader}"]


def _evaluated(group: list[KitRun], eval_set: str) -> list[KitRun]:
    return [run for run in group if (run.path / runs.eval_files(eval_set)[0]).is_file()]


def seed_table(runs_root="runs", eval_set: str = "gsm8k", grader: str | None = None) -> pd.DataFrame:
    """Per experiment and settings: held-out accuracy averaged over its seeds with a 95% t-interval over seeds (it
    reflects seed-to-seed spread), the spread itself, and every seed's accuracy; with one seed, that run's Wilson
    interval over questions, and the table says "one seed"."""
    grader = grader or EVAL_SETS[eval_set].headline_grader
    rows = []
    for label, group in runs_by_label(runs_root).items():
        evaluated = _evaluated(group, eval_set)
        if not evaluated:
            continue
        accuracies = {run.seed: float(_verdicts(run, eval_set, grader).mean()) for run in evaluated}
        n = len(_verdicts(evaluated[0], eval_set, grader))
        spread = t_interval(list(accuracies.values()))
        if len(evaluated) == 1:
            correct = int(round(spread["mean"] * n))
            interval, what = list(wilson_interval(correct, n)), "one seed: 95% Wilson interval over questions"
        else:
            interval, what = spread["ci95"], f"{len(evaluated)} seeds: 95% t-interval over seeds"
        rows.append(
            {
                "experiment": label,
                "seeds": len(evaluated),
                "questions": n,
                "grader": grader,
                "accuracy": spread["mean"],
                "ci95": interval,
                "interval": what,
                "seed_sd": spread["sd"],
                "per_seed": accuracies,
            }
        )
    return pd.DataFrame(rows).set_index("experiment") if rows else pd.DataFrame()


def compare_experiments(a: str, b: str, runs_root="runs", eval_set: str = "gsm8k", grader: str | None = None) -> dict:
    """Experiment B against A (experiment names or labels, e.g. Exp2 then Exp4) on the same questions, pooled over
    the seeds both have:
    the per-seed paired difference B - A averaged over seeds with a t-interval over seeds, a Cochran-Mantel-Haenszel
    test stratified by seed, and how the seed-to-seed spread compares with the difference. With one common seed: that
    seed's difference with McNemar's exact test, said to rest on one seed."""
    grader = grader or EVAL_SETS[eval_set].headline_grader
    groups = runs_by_label(runs_root)
    a, b = resolve_label(a, groups) or a, resolve_label(b, groups) or b
    by_seed = {label: {run.seed: run for run in _evaluated(groups.get(label, []), eval_set)} for label in (a, b)}
    seeds = sorted(set(by_seed[a]) & set(by_seed[b]))
    if not seeds:
        return {"a": a, "b": b, "seeds": 0, "reading": f"No seed of {a} and {b} is evaluated on {eval_set} in both."}
    per_seed, verdicts_a, verdicts_b = {}, [], []
    for seed in seeds:
        va, vb = _verdicts(by_seed[a][seed], eval_set, grader), _verdicts(by_seed[b][seed], eval_set, grader)
        common = va.index.intersection(vb.index)
        va, vb = va.loc[common], vb.loc[common]
        verdicts_a.append(va.to_numpy())
        verdicts_b.append(vb.to_numpy())
        per_seed[seed] = {
            "difference": float(vb.mean() - va.mean()),
            "questions": len(common),
            **mcnemar_exact(va, vb),
        }
    difference = t_interval([d["difference"] for d in per_seed.values()])
    spread = {
        label: t_interval([float(v.mean()) for v in verdicts])["sd"]
        for label, verdicts in ((a, verdicts_a), (b, verdicts_b))
    }
    result = {
        "a": a,
        "b": b,
        "difference": f"{b} - {a}",
        "eval_set": eval_set,
        "grader": grader,
        "seeds": len(seeds),
        "per_seed": per_seed,
        "mean_difference": difference["mean"],
        "ci95_over_seeds": difference["ci95"],
        "seed_sd": spread,
    }
    if len(seeds) == 1:
        only = per_seed[seeds[0]]
        result["reading"] = (
            f"One seed: {b} - {a} = {only['difference']:+.3f} on {only['questions']} questions (McNemar p = "
            f"{only['p_value']:.3g}); one seed cannot say how much of it another seed would change."
        )
        return result
    result["stratified_test"] = seed_stratified_test(verdicts_a, verdicts_b)
    largest_sd = max(v for v in spread.values() if v == v)
    test = result["stratified_test"]
    note = f" ({test['note']})" if "note" in test else ""
    if largest_sd > 0:
        spread = f"the difference is {abs(difference['mean']) / largest_sd:.1f} times the seed-to-seed SD of accuracy"
        spread += f" (up to {largest_sd:.3f})"
    else:
        spread = "every seed of each experiment scored the same"
    shown = format_interval(difference["mean"], difference["ci95"], signed=True)
    result["reading"] = (
        f"{len(seeds)} seeds: {b} - {a} = {shown} (t-interval over seeds); CMH p = {test['p_value']:.3g}{note}; "
        f"{spread}."
    )
    return result


def baseline_comparison(run_dir, baseline_dir, grader: str = "numeric", eval_sets=EVAL_SETS) -> pd.DataFrame:
    """Per evaluation set (every one by default): the trained run's accuracy and the untrained baseline's on the same
    questions, with 95% Wilson intervals, n, the change, and McNemar's exact test on the paired verdicts."""
    rows = []
    for name in eval_sets:
        records, _ = runs.eval_files(name)
        if not (Path(run_dir) / records).is_file() or not (Path(baseline_dir) / records).is_file():
            continue
        trained = read_eval(Path(run_dir) / records).set_index("index")
        baseline = read_eval(Path(baseline_dir) / records).set_index("index")
        common = trained.index.intersection(baseline.index)
        a, b = trained.loc[common, f"correct_{grader}"], baseline.loc[common, f"correct_{grader}"]
        test = mcnemar_exact(a, b)
        rows.append(
            {
                "eval set": name,
                "n": len(common),
                "accuracy": a.mean(),
                "ci95": wilson_interval(int(a.sum()), len(a)),
                "baseline": b.mean(),
                "baseline_ci95": wilson_interval(int(b.sum()), len(b)),
                "change": a.mean() - b.mean(),
                "mcnemar_p": test["p_value"],
                "grader": grader,
            }
        )
    return pd.DataFrame(rows)


def eval_sets_table(runs_root="runs", grader: str = "numeric") -> pd.DataFrame:
    """Every run under ``runs_root`` (each experiment, settings and seed) x every evaluation set, against the untrained
    baseline evaluated on the same questions with the same base model and prompt."""
    rows = []
    for run in find_runs(runs_root):
        for name in EVAL_SETS:
            baseline = baseline_for(run, name, runs_root)
            if baseline is not None:
                table = baseline_comparison(run.path, baseline, grader, eval_sets=[name])
                rows += table.assign(experiment=run.label, seed=run.seed).to_dict("records")
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    return table[["experiment", "seed", *[c for c in table.columns if c not in ("experiment", "seed")]]]


def eval_sets_summary(table: pd.DataFrame) -> pd.DataFrame:
    """``eval_sets_table`` averaged over seeds: per experiment and set, the mean accuracy and change from the
    untrained model with 95% t-intervals over seeds (with one seed, the run's Wilson interval)."""
    rows = []
    for (experiment, name), group in table.groupby(["experiment", "eval set"], sort=False):
        accuracy, change = t_interval(group["accuracy"]), t_interval(group["change"])
        one = len(group) == 1
        rows.append(
            {
                "experiment": experiment,
                "eval set": name,
                "seeds": len(group),
                "n": int(group["n"].max()),
                "accuracy": accuracy["mean"],
                "ci95": group["ci95"].iloc[0] if one else accuracy["ci95"],
                "interval": "Wilson, one seed" if one else "t over seeds",
                "per_seed": list(group["accuracy"]),
                "baseline": float(group["baseline"].mean()),
                "change": change["mean"],
                "change_ci95": None if one else change["ci95"],
                "grader": group["grader"].iloc[0],
            }
        )
    return pd.DataFrame(rows)


def summaries_by_experiment(runs_root="runs", eval_set_name="gsm8k") -> dict[str, list[dict]]:
    """Every finished sampled evaluation under ``runs_root``: each untrained baseline, and each experiment (grouped by
    its config.json) with one summary per seed."""
    found = {
        label: [load_summary(folder, eval_set_name) for folder in folders]
        for label, folders in model_folders(runs_root).items()
    }
    return {label: [s for s in summaries if s] for label, summaries in found.items() if any(summaries)}


def _over_seeds(metrics: list[dict], digits: int = 3) -> str:
    """One metric over seeds: the mean with a t-interval over seeds; with one seed, its bootstrap interval."""
    if len(metrics) == 1:
        return format_interval(metrics[0]["mean"], metrics[0]["ci95"], digits)
    spread = t_interval([m["mean"] for m in metrics])
    return format_interval(spread["mean"], spread["ci95"], digits)


def sampled_experiments_table(runs_root="runs", eval_set_name="gsm8k") -> pd.DataFrame:
    """Across experiments (and the untrained models): pass@1, pass@K and maj@K under the numeric grader, the never
    and always solved shares, and whether longer reasoning goes with right answers within a question (without
    truncated samples), each over seeds when there are several (t-interval over seeds; one seed: bootstrap over
    questions)."""
    rows = {}
    for label, summaries in summaries_by_experiment(runs_root, eval_set_name).items():
        k = str(summaries[0]["samples_per_question"])
        lengths = [s["length"]["without truncated samples"] for s in summaries]
        rows[label] = {
            "seeds": len(summaries),
            "questions x samples": f"{summaries[0]['questions']} x {k}",
            "pass@1": _over_seeds([s["pass_at_k_numeric"]["1"] for s in summaries]),
            f"pass@{k}": _over_seeds([s["pass_at_k_numeric"][k] for s in summaries]),
            f"maj@{k}": _over_seeds([s["maj_at_k"][k] for s in summaries]),
            "never solved": _over_seeds([s["never_solved"] for s in summaries]),
            "always solved": _over_seeds([s["always_solved"] for s in summaries]),
            "correct - wrong tokens, same question": _length_over_seeds(lengths, "within_question_difference", 1),
            "odds ratio per SD (same question)": _length_over_seeds(lengths, "conditional_logit", 2),
            "naive r across questions": _length_over_seeds(lengths, "across_questions_correlation", 2),
        }
    return pd.DataFrame(rows).T


def _length_over_seeds(lengths: list[dict], measure: str, digits: int) -> str:
    """A length measure over seeds; "-" when some seed had too few questions with right and wrong samples."""
    value = {"conditional_logit": "odds_ratio_per_sd", "across_questions_correlation": "r"}.get(measure, "mean")
    found = [x[measure] for x in lengths if measure in x and x[measure].get(value) == x[measure].get(value)]
    if len(found) < len(lengths):
        return "-"
    return _over_seeds([{"mean": m[value], "ci95": m["ci95"]} for m in found], digits)


def pass_at_k_curves(runs_root="runs", eval_set_name="gsm8k") -> dict[str, dict]:
    """Per experiment (and untrained model), a pass@k curve to draw: the one seed's, or the mean over seeds."""
    curves = {}
    for label, summaries in summaries_by_experiment(runs_root, eval_set_name).items():
        if len(summaries) == 1:
            curves[label] = summaries[0]
            continue
        merged = {"samples_per_question": summaries[0]["samples_per_question"]}
        for grader in GRADERS:
            key = f"pass_at_k_{grader}"
            merged[key] = {
                k: {
                    "mean": float(np.mean([s[key][k]["mean"] for s in summaries])),
                    "ci95": t_interval([s[key][k]["mean"] for s in summaries])["ci95"],
                }
                for k in summaries[0][key]
            }
        curves[f"{label} ({len(summaries)} seeds)"] = merged
    return curves
