"""GSM8K through lm-evaluation-harness, so a kit's number can stand next to published ones.

The kit's own evaluation uses the experiment's prompt (system prompt, optional one-shot example, XML tags) and its two
graders: the right comparison between the study's experiments, but no published figure uses that protocol. Here the
same model in memory (LoRA merged or not) goes through lm-eval's own ``gsm8k`` tasks with ``simple_evaluate`` and an
``HFLM`` wrapping it, in two protocols (``PROTOCOLS``), each under lm-eval's two filters: ``strict-match`` (the answer
must be written the task's way) and ``flexible-extract`` (the last number in the text). lm-eval's results JSON, with
its version, each task's version, the shots and the filters, is kept in the run folder, and every scored completion
beside it.

Offline (or with ``data_dir``), lm-eval's task is run on the kit's local GSM8K copy: a task that includes lm-eval's own
YAML and changes only where the rows come from (the same questions, few-shot examples and answers).

A cross-check: on the same completions, lm-eval's flexible extraction and the kit's numeric grader, which should agree
on almost every one; where they do not, the examples say why.
"""

import json
import os
import time
from pathlib import Path

import pandas as pd

from utils import runs
from utils.config import untrained_model_id
from utils.data import LOCAL_COPY_DIR, hub_reachable
from utils.experiments import model_folders
from utils.generation import for_inference
from utils.grading import extract_hash_answer, is_correct
from utils.stats import format_interval, wilson_interval

PROTOCOLS = {
    "gsm8k 5-shot": dict(
        task="gsm8k",
        file="gsm8k.yaml",
        apply_chat_template=False,
        what="lm-eval's standard gsm8k task: 5 worked examples as plain 'Question: ... Answer:' text, greedy; the "
        "protocol of the Open LLM Leaderboard and of most 'GSM8K (5-shot)' figures",
    ),
    "gsm8k CoT 8-shot, chat template": dict(
        task="gsm8k_cot",
        file="gsm8k-cot.yaml",
        apply_chat_template=True,
        fewshot_as_multiturn=True,
        what="8 chain-of-thought examples ending 'The answer is N', as chat turns, greedy: how instruction-tuned "
        "models are evaluated, and the lm-eval protocol closest to Qwen's own report (49.6 for "
        "Qwen2.5-0.5B-Instruct, its chat-model chain-of-thought evaluation)",
    ),
}
VERL_NOTE = (
    "verl's GSM8K figures for Qwen2.5-0.5B-Instruct (54.3 GRPO with LoRA, 56.7 PPO, after training) use its own "
    "zero-shot prompt and a strict '#### N' grader under which the untrained model scores ~0; neither protocol here "
    "reproduces them: compare the gain a run makes, not its level"
)
RESULTS = "harness.json"  # lm-eval's results (without the samples) and the summary
SAMPLES = "harness_samples.jsonl"  # every scored completion


def local_tasks(folder: Path, data_dir) -> dict[str, str]:
    """lm-eval's GSM8K tasks, reading the kit's local copy instead of the hub: each includes lm-eval's own YAML and
    changes only the dataset source. Returns protocol -> task name."""
    import lm_eval

    source = Path(lm_eval.__file__).parent / "tasks" / "gsm8k"
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for protocol, spec in PROTOCOLS.items():
        name = f"{spec['task']}_kit_local"
        quoted = lambda path: json.dumps(str(path))  # noqa: E731 (YAML reads JSON strings: any folder name)
        (folder / f"{name}.yaml").write_text(
            f"include: {quoted(source / spec['file'])}\n"
            f"task: {name}\n"
            "dataset_path: json\n"
            "dataset_name: null\n"
            "dataset_kwargs:\n"
            "  data_files:\n"
            f"    train: {quoted(Path(data_dir).resolve() / 'train.jsonl')}\n"
            f"    test: {quoted(Path(data_dir).resolve() / 'test.jsonl')}\n"
        )
        names[protocol] = name
    return names


def gsm8k_source(cfg) -> Path | None:
    """The local GSM8K copy lm-eval should read (``data_dir``, ``$GSM8K_DIR``, or notebook 00's copy when the hub
    cannot be reached); None: lm-eval's own, from the hub."""
    chosen = cfg.data_dir or os.environ.get("GSM8K_DIR")
    if chosen:
        return Path(chosen)
    if hub_reachable():
        return None
    if (LOCAL_COPY_DIR / "test.jsonl").is_file():
        return LOCAL_COPY_DIR
    raise RuntimeError(
        f"lm-eval reads GSM8K from the hub, which cannot be reached, and there is no local copy in {LOCAL_COPY_DIR}: "
        "run notebook 00 once with the internet on (it saves one), set DATA_DIR, or switch this off "
        "(HARNESS_EVAL_LIMIT = 0)."
    )


LM_EVAL_MAX_GEN_TOKS = 256  # lm-eval's default for these tasks


def max_gen_toks(cfg) -> int:
    """lm-eval's own generation limit, unless the run's evaluation limit is shorter (smoke runs): then that."""
    return min(LM_EVAL_MAX_GEN_TOKS, cfg.eval_max_new_tokens)


def harness_identity(cfg, loaded) -> dict:
    """What decides these numbers besides the weights: the model, the questions, lm-eval's version, the engine."""
    try:
        import lm_eval
    except ImportError:
        raise ModuleNotFoundError(
            "lm-evaluation-harness is not installed: pip install lm_eval==0.4.13 (requirements.txt has it), or "
            "switch it off with HARNESS_EVAL_LIMIT = 0 (harness_eval_limit=0)."
        ) from None
    return {
        "model": untrained_model_id(cfg.model_name, cfg.seed),
        "limit": cfg.harness_eval_limit,
        "data": str(gsm8k_source(cfg) or "hub"),
        "lm_eval_version": lm_eval.__version__,
        "batch_size": cfg.eval_batch_size,
        "max_gen_toks": max_gen_toks(cfg),
        "backend": loaded.name if loaded is not None else None,
        "dtype": loaded.dtype if loaded is not None else None,
    }


def harness_evaluate(cfg, model, tokenizer, out_dir, loaded=None, reuse: bool = False) -> dict:
    """Every protocol on the first ``cfg.harness_eval_limit`` GSM8K test questions (None: all), greedy, through
    lm-eval's own code. Writes lm-eval's results and every completion to ``out_dir``; returns the summary (also in
    the results file), or {} when switched off (limit 0). ``reuse``: keep a report of the same identity (the
    untrained baseline, shared by every run)."""
    if cfg.harness_eval_limit == 0:
        return {}
    identity = harness_identity(cfg, loaded)
    saved = load_report(out_dir)
    if reuse and saved.get("identity") == identity:
        print(f"lm-eval on the untrained model already done in {out_dir}.")
        return saved
    import lm_eval
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = gsm8k_source(cfg)
    names = local_tasks(out_dir / "harness_tasks", source) if source else {p: s["task"] for p, s in PROTOCOLS.items()}
    # The local tasks include lm-eval's YAML by path: no need to index every task lm-eval knows (seconds).
    manager = (
        TaskManager(include_path=str(out_dir / "harness_tasks"), include_defaults=False) if source else TaskManager()
    )
    summary, samples, started = {}, [], time.time()
    with for_inference(model, loaded):
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=cfg.eval_batch_size, max_length=4096)
        for protocol, spec in PROTOCOLS.items():
            results = simple_evaluate(
                model=lm,
                tasks=[names[protocol]],
                limit=cfg.harness_eval_limit,
                task_manager=manager,
                log_samples=True,
                apply_chat_template=spec["apply_chat_template"],
                fewshot_as_multiturn=spec.get("fewshot_as_multiturn", False),
                gen_kwargs={"max_gen_toks": max_gen_toks(cfg)},
                bootstrap_iters=1000,
            )
            task = names[protocol]
            rows = results.pop("samples")[task]
            summary[protocol] = protocol_summary(protocol, task, results, rows, source)
            summary[protocol]["max_gen_toks"] = max_gen_toks(cfg)
            samples += [sample_row(protocol, row) for row in rows]
            runs.write_json(out_dir / f"harness_{spec['task']}_results.json", results)
    runs.write_rows(out_dir / SAMPLES, samples)
    report = {
        "identity": identity,
        "protocols": summary,
        "limit": cfg.harness_eval_limit,
        "lm_eval_version": lm_eval.__version__,
        "cross_check": cross_check(pd.DataFrame(samples)),
        "verl": VERL_NOTE,
        "seconds": round(time.time() - started, 1),
    }
    runs.write_json(out_dir / RESULTS, report)
    return report


def protocol_summary(protocol: str, task: str, results: dict, rows: list, source) -> dict:
    """One protocol's accuracy under each filter with a 95% Wilson interval and n, and its provenance."""
    spec = PROTOCOLS[protocol]
    filters = {}
    for name in ("strict-match", "flexible-extract"):
        verdicts = [float(r["exact_match"]) for r in rows if r["filter"] == name]
        n, correct = len(verdicts), int(sum(verdicts))
        filters[name] = {
            "accuracy": correct / n if n else float("nan"),
            "ci95": list(wilson_interval(correct, n)),
            "n": n,
            "lm_eval_stderr": results["results"][task].get(f"exact_match_stderr,{name}"),
        }
    return {
        "task": spec["task"],
        "task_version": results["versions"][task],
        "shots": results["n-shot"][task],
        "chat_template": spec["apply_chat_template"],
        "filters": filters,
        "filter_definitions": results["configs"][task]["filter_list"],
        "what": spec["what"],
        "data": f"local copy {source}" if source else "lm-eval's own (openai/gsm8k from the hub)",
    }


def sample_row(protocol: str, row: dict) -> dict:
    completion = row["resps"][0][0] if row["resps"] and row["resps"][0] else ""
    return {
        "protocol": protocol,
        "doc_id": row["doc_id"],
        "filter": row["filter"],
        "gold": extract_hash_answer(row["target"]),
        "completion": completion,
        "extracted": row["filtered_resps"][0] if row["filtered_resps"] else None,
        "correct": bool(row["exact_match"]),
    }


def cross_check(samples: pd.DataFrame, examples: int = 5) -> dict:
    """On the same completions (the 5-shot protocol's), how often lm-eval's flexible extraction and the kit's numeric
    grader disagree, and a few of the disagreements."""
    flexible = samples[(samples["protocol"] == "gsm8k 5-shot") & (samples["filter"] == "flexible-extract")]
    if flexible.empty:
        return {}
    kit = flexible.apply(lambda r: is_correct(r["completion"].split("Question:")[0], r["gold"]), axis=1)
    differ = flexible[kit != flexible["correct"]]
    return {
        "completions": len(flexible),
        "disagreements": len(differ),
        "rate": len(differ) / len(flexible),
        "examples": [
            {
                "gold": r["gold"],
                "lm_eval_extracted": r["extracted"],
                "lm_eval": bool(r["correct"]),
                "kit_numeric": not r["correct"],
                "completion_end": r["completion"].split("Question:")[0][-160:],
            }
            for _, r in differ.head(examples).iterrows()
        ],
    }


def load_report(folder) -> dict:
    path = Path(folder) / RESULTS
    return runs.read_json(path) if path.is_file() else {}


def harness_table(reports: dict[str, dict]) -> pd.DataFrame:
    """One row per model and protocol: accuracy under each lm-eval filter with its 95% Wilson interval and n."""
    rows = []
    for model, report in reports.items():
        for protocol, s in (report or {}).get("protocols", {}).items():
            row = {"model": model, "protocol": protocol, "shots": s["shots"], "chat template": s["chat_template"]}
            for name, f in s["filters"].items():
                row[name] = format_interval(f["accuracy"], f["ci95"])
            row["n"] = s["filters"]["flexible-extract"]["n"]
            row["task version"] = s["task_version"]
            rows.append(row)
    return pd.DataFrame(rows)


def harness_reading(report: dict) -> str:
    """What the lm-eval numbers are and how far the kit's grader agrees with lm-eval's on the same completions."""
    if not report:
        return "lm-evaluation-harness was switched off (harness_eval_limit = 0)."
    check = report.get("cross_check") or {}
    lines = [f"lm-evaluation-harness {report['lm_eval_version']}, {report['limit'] or 'all'} GSM8K test questions."]
    for protocol, s in report["protocols"].items():
        lines.append(f"- {protocol} (task {s['task']} v{s['task_version']}, {s['shots']} shots): {s['what']}.")
    if check:
        same = f"On the same {check['completions']} completions (5-shot), lm-eval's flexible extraction and the kit's "
        if check["disagreements"]:
            cases = "; ".join(f"gold {e['gold']}, lm-eval read {e['lm_eval_extracted']!r}" for e in check["examples"])
            lines.append(same + f"numeric grader disagree on {check['disagreements']} ({check['rate']:.1%}): {cases}.")
        else:
            lines.append(same + "numeric grader agree on every one.")
    lines.append(report["verl"] + ".")
    return "\n".join(lines)


def comparable_table(runs_root="runs") -> pd.DataFrame:
    """Per experiment (mean over its seeds) and untrained model: each lm-eval protocol's flexible-extract and
    strict-match accuracy beside the kit's own greedy GSM8K accuracies (strict and numeric grader) on the same
    model, with the number of seeds and questions."""
    rows = {}
    for label, folders in model_folders(runs_root).items():
        reports = [r for r in (load_report(f) for f in folders) if r]
        if not reports:
            continue
        row = {
            "seeds": len(reports),
            "questions": reports[0]["protocols"][next(iter(PROTOCOLS))]["filters"]["flexible-extract"]["n"],
        }
        for protocol in PROTOCOLS:
            for name in ("flexible-extract", "strict-match"):
                row[f"{protocol}: {name}"] = float(
                    pd.Series([r["protocols"][protocol]["filters"][name]["accuracy"] for r in reports]).mean()
                )
        kit = [runs.read_json(f / runs.EVAL_SUMMARY) for f in folders if (f / runs.EVAL_SUMMARY).is_file()]
        for grader in ("strict", "numeric"):
            row[f"kit prompt, {grader} grader"] = (
                float(pd.Series([k[f"accuracy_{grader}"] for k in kit]).mean()) if kit else None
            )
        rows[label] = row
    return pd.DataFrame(rows).T
