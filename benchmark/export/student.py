"""Students as Hugging Face models: a model card from a finished cell, and its export (``run_bench.py export-student``).

A cell run with ``--save-students`` holds ``student/`` (``save_pretrained`` of the trained model and its tokenizer,
with the generation config it was evaluated with: EOS and pad ids, extra stop tokens included). The card is built
from the cell's files only (``config.json``, ``run.json``, ``metrics.json``, and ``predictions.jsonl`` for the
intervals), so it can be written any time after the cell finished, by the run itself or later.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

import yaml

from benchmark.store import REFERENCE_METHODS, Cell, StoreError
from tasks.base import QATask
from tasks.registry import load_tasks

CARD = "README.md"

Intervals = Mapping[str, tuple[float, float]]  # metric key -> (low, high), e.g. a 95% bootstrap interval


class CellError(ValueError):
    """A cell that cannot give a student: unfinished, a reference row, or run without --save-students."""


def open_cell(cell_dir: Path) -> Cell:
    """The finished cell in ``cell_dir``; a one-line :class:`CellError` when there is none."""
    try:
        cell = Cell.at(cell_dir)
    except StoreError as error:
        raise CellError(str(error)) from None
    if not cell.is_complete():
        raise CellError(f"cell {cell_dir} is not finished (no DONE); run it to the end first")
    try:
        cell.finished_config()  # written by this store format
    except StoreError as error:
        raise CellError(str(error)) from None
    return cell


def saved_student(cell_dir: Path) -> Path:
    """The saved student of a finished trained cell; a one-line :class:`CellError` otherwise."""
    cell = open_cell(cell_dir)
    if cell.key.method in REFERENCE_METHODS:
        raise CellError(f"cell {cell_dir} is the {cell.key.method!r} reference row: it trains no student")
    if not (cell.student_dir / "config.json").is_file():
        raise CellError(f"cell {cell_dir} has no saved student: re-run it with --save-students --force")
    return cell.student_dir


def cell_intervals(cell_dir: Path, level: float | None = None) -> Intervals:
    """Each metric's interval for this one cell, as the leaderboard computes intervals: its bootstrap over the
    cell's evaluation examples (examples that share a source resampled together), with the cell's single seed;
    ``level`` defaults to the leaderboard's (95 %). Empty when the cell has no per-example scores."""
    import numpy as np

    from leaderboards.stats import (
        BootstrapConfig,
        bootstrap_means,
        draw_clusters,
        generator,
        percentile_interval,
    )

    cell = open_cell(cell_dir)
    key = cell.key
    try:
        records, metrics = cell.predictions(), sorted(cell.metrics())
    except StoreError:
        return {}  # no per-example scores: the card shows no intervals
    values = np.array([[[record[metric] for record in records]] for metric in metrics], dtype=np.float64)  # [q, 1, n]
    _, codes = np.unique([str(record.get("cluster") or record["id"]) for record in records], return_inverse=True)
    config = BootstrapConfig() if level is None else BootstrapConfig(level=level)
    draws = draw_clusters(generator(config, key.task, key.pair, "clusters"), int(codes.max()) + 1, config.resamples)
    low, high = percentile_interval(bootstrap_means(values, codes, draws, None).draws, config.level)
    return {metric: (float(lo), float(hi)) for metric, lo, hi in zip(metrics, low, high)}


def model_card(cell_dir: Path, intervals: Intervals | None = None) -> str:
    """The model card (Markdown with Hugging Face YAML metadata) of the student trained in ``cell_dir``.

    The score table has an interval column: ``intervals`` when given, else :func:`cell_intervals`.
    """
    stored = open_cell(cell_dir)
    try:
        (config, config_hash), run, metrics = stored.finished_config(), stored.run_info(), stored.metrics()
    except StoreError as error:
        raise CellError(str(error)) from None
    cell = config["cell"]
    task = load_tasks().get(cell["task"])
    task_type = "question-answering" if issubclass(task, QATask) else "summarization"
    n_eval = int(run.get("eval", {}).get("n_examples", 0))
    title = f"{cell['method']} student on {cell['task']} ({cell['pair']}, seed {cell['seed']})"
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["ctkd-bench", "knowledge-distillation", "cross-tokenizer", cell["method"], cell["task"]],
        "model-index": [{"name": title, "results": [{
            "task": {"type": task_type, "name": task_type},
            "dataset": {"type": task.name, "name": task.name, "split": "test"},
            "metrics": [{"type": key, "name": key, "value": value} for key, value in sorted(metrics.items())],
        }]}],
    }
    prompt = config["eval_prompt"]
    commit = f"{run.get('git_commit')}" + (" (uncommitted changes)" if run.get("git_dirty") else "")
    cell_path = f"<runs>/{cell['task']}/{cell['pair']}/{cell['method']}/seed{cell['seed']}"
    facts = [
        ("method", f"`{cell['method']}`" + _method_settings(config)),
        ("pair (teacher → student)", f"`{cell['pair']}`"),
        ("task", f"`{cell['task']}`, headline metric `{task.metric}`"),
        ("budget", f"`{run.get('budget')}`: {_budget_summary(config)}"),
        ("seed", str(cell["seed"])),
        ("prompt", f"{prompt['style']}, {prompt['shots']} shots, at most {prompt['max_prompt_tokens']} tokens "
                   f"(prompt version {prompt['version']})"),
        ("decoding", f"greedy, at most {config['eval']['max_new_tokens']} new tokens, cut at the first newline or EOS"),
        ("commit", f"`{commit}`"),
        ("config hash", f"`{config_hash}`"),
    ]
    lines = ["---", yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {title}", "",
             "A student model trained and evaluated by CTKD-Bench, a benchmark for cross-tokenizer knowledge "
             f"distillation. Everything below is read from its result cell `{cell_path}`.", "",
             "| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in facts), "",
             f"## Scores (test split, {n_eval} examples, ×100)", ""]
    lines += _score_table(metrics, cell_intervals(cell_dir) if intervals is None else intervals, task.metric)
    lines += ["", "## Use", "", "```python",
              "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              'tokenizer = AutoTokenizer.from_pretrained("<this folder>")',
              'model = AutoModelForCausalLM.from_pretrained("<this folder>")',
              "```", "",
              "The generation config holds the EOS ids the benchmark stopped at; the benchmark also cut each answer "
              "at its first newline. To re-score this model with lm-evaluation-harness on the same examples and "
              "prompts:", "", "```bash",
              f"python run_bench.py export-lm-eval lm_eval_tasks --like-cell {cell_path}",
              f"lm_eval --model hf --model_args pretrained=<this folder> --tasks ctkd_{cell['task']} "
              "--include_path lm_eval_tasks --batch_size 8",
              "```", ""]
    return "\n".join(lines)


def write_model_card(cell_dir: Path, model_dir: Path, intervals: Intervals | None = None) -> Path:
    """Write ``model_dir/README.md`` for the student of ``cell_dir``; returns its path."""
    path = Path(model_dir) / CARD
    path.write_text(model_card(cell_dir, intervals), encoding="utf-8")
    return path


def export_student(cell_dir: Path, out_dir: Path, intervals: Intervals | None = None) -> Path:
    """Copy the saved student of ``cell_dir`` into ``out_dir`` (new or empty) with its model card; returns
    ``out_dir``, loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained``."""
    student = saved_student(cell_dir)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise CellError(f"output folder {out_dir} is not empty; choose a new one")
    shutil.copytree(student, out_dir, dirs_exist_ok=True)
    write_model_card(cell_dir, out_dir, intervals)
    return out_dir


def _method_settings(config: Mapping[str, Any]) -> str:
    settings = config.get("method", {}).get("config") or {}
    return " (" + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())) + ")" if settings else " (defaults)"


def _budget_summary(config: Mapping[str, Any]) -> str:
    train, limit_train = config.get("train", {}), config.get("train_data", {}).get("limit_train")
    return (f"{'all' if limit_train is None else limit_train} training examples, {train.get('epochs')} epochs, "
            f"lr {train.get('learning_rate')}, batch {train.get('batch_size')}×{train.get('grad_accum')}, "
            f"teacher {config.get('teacher', {}).get('teacher_prep')}")


def _score_table(metrics: Mapping[str, float], intervals: Intervals, headline: str) -> list[str]:
    with_intervals = any(key in intervals for key in metrics)
    header = ["| metric | value |" + (" interval |" if with_intervals else ""),
              "|---|---:|" + ("---|" if with_intervals else "")]
    rows = []
    for key in sorted(metrics, key=lambda k: (k != headline, k)):
        name = f"**{key}**" if key == headline else key
        row = f"| {name} | {metrics[key]:.2f} |"
        if with_intervals:
            low_high = intervals.get(key)
            row += f" [{low_high[0]:.2f}, {low_high[1]:.2f}] |" if low_high else " – |"
        rows.append(row)
    return header + rows
