"""Export tasks as lm-evaluation-harness tasks (the library side of ``run_bench.py export-lm-eval DIR``).

Each task becomes ``DIR/ctkd_<task>.yaml`` (tagged ``ctkd``), beside one ``DIR/ctkd_utils.py`` that hands lm-eval
the functions of :mod:`benchmark.export.lm_eval_hooks`. The YAML records where our data lives and the student prompt
format of a budget (or of a finished cell), so that::

    lm_eval --model hf --model_args pretrained=<saved student> --tasks ctkd_qed --include_path DIR

reads our data files, sends the model the prompts our evaluator sends (rendered with the model's own tokenizer),
decodes greedily up to the task's length, cuts at the first newline and scores with our metric functions. It runs
offline; the evaluating environment needs ctkd-bench installed (``pip install -e ".[lmeval]"``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import yaml

from benchmark.config import Settings, budget_settings, default_budget_name
from benchmark.core.paths import resolve_data_dir
from benchmark.engine.prompting import PROMPT_VERSION, PromptFormat
from benchmark.store import Cell, StoreError
from tasks.base import Task
from tasks.registry import load_tasks

TASK_PREFIX = "ctkd_"
TAG = "ctkd"  # `--tasks ctkd` runs every exported task
UTILS_MODULE = "ctkd_utils"
UTILS_SOURCE = '''"""lm-eval hooks of the CTKD-Bench tasks in this folder (written by `run_bench.py export-lm-eval`).

They need ctkd-bench importable where lm_eval runs: pip install -e ".[lmeval]" in the CTKD-Bench checkout.
"""
from benchmark.export.lm_eval_hooks import load_dataset, process_results

__all__ = ["load_dataset", "process_results"]
'''
STUDENT_STYLE = "plain"  # [suite] every registered student is prompted with plain text (benchmark.models.pairs)


class CellConfigError(ValueError):
    """A cell whose config cannot say what to export: missing, unreadable, or from another prompt version."""


@dataclass(frozen=True)
class LmEvalSettings:
    """What an exported task reproduces of one evaluation: the prompt format, the examples, the length."""

    prompt: PromptFormat
    limit_eval: int | None = None  # the same fixed-seed subset as a run with --limit-eval; None = whole test split
    max_new_tokens: int | None = None  # None = the task's own generation length

    @classmethod
    def from_settings(cls, settings: Settings, style: str = STUDENT_STYLE) -> LmEvalSettings:
        """The student's evaluation under ``settings``: its shots, prompt tokens, examples and generation length."""
        fmt = PromptFormat(style, settings.prompt.student_shots,  # type: ignore[arg-type]
                           max_prompt_tokens=settings.prompt.max_prompt_tokens)
        return cls(fmt, settings.data.limit_eval, settings.eval.max_new_tokens)

    @classmethod
    def from_cell(cls, cell_dir: Path) -> tuple[str, LmEvalSettings]:
        """``(task name, settings)`` of a cell, read from its ``config.json`` (the prompt the cell's model was
        evaluated with: the student's, or the teacher's in a teacher cell)."""
        try:
            config, _ = Cell.at(cell_dir).finished_config()
        except StoreError as error:
            raise CellConfigError(str(error)) from None
        prompt = dict(config["eval_prompt"])
        version = prompt.pop("version")
        if version != PROMPT_VERSION:
            raise CellConfigError(f"{cell_dir}: its prompts are version {version}, this code renders version "
                                  f"{PROMPT_VERSION}; re-run the cell first")
        evaluation = config["eval"]
        return config["cell"]["task"], cls(PromptFormat(**prompt), evaluation["limit_eval"], evaluation["max_new_tokens"])


def task_yaml(task: type[Task], data_dir: Path, settings: LmEvalSettings) -> str:
    """The lm-eval task config of ``task`` (YAML text)."""
    fmt = settings.prompt
    config = {
        "task": TASK_PREFIX + task.name,
        "tag": [TAG],
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "prompt",  # the column holding our rendered prompt (lm-eval adds nothing in zero-shot)
        "doc_to_target": "answer",
        "num_fewshot": 0,  # shots, when any, are already inside the prompt
        "generation_kwargs": {
            "until": ["\n"],
            "do_sample": False,
            "max_gen_toks": settings.max_new_tokens or task.max_new_tokens,
        },
        "metric_list": [{"metric": key, "aggregation": "mean", "higher_is_better": task.scorer.higher_is_better}
                        for key in task.scorer.keys],
        "metadata": {
            "version": PROMPT_VERSION,
            "ctkd_task": task.name,
            "data_dir": str(data_dir.resolve()),
            "prompt_style": fmt.style,
            "shots": fmt.shots,
            "shot_seed": fmt.shot_seed,
            "max_prompt_tokens": fmt.max_prompt_tokens,
            "limit_eval": settings.limit_eval,
        },
    }
    header = (f"# CTKD-Bench task {task.name!r} for lm-evaluation-harness, written by `run_bench.py export-lm-eval`.\n"
              "# Headline metric: " + task.metric + ". Re-export rather than edit.\n")
    hooks = (f"custom_dataset: !function {UTILS_MODULE}.load_dataset\n"
             f"process_results: !function {UTILS_MODULE}.process_results\n")
    return header + yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True) + hooks


class _Dumper(yaml.SafeDumper):
    """Writes strings holding a newline double-quoted with escapes (``"\\n"``) rather than as folded blocks."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"' if "\n" in text else None)


_Dumper.add_representer(str, _represent_str)


def export_lm_eval(out_dir: Path | str, task_names: Sequence[str], data_dir: Path | str | None = None,
                   settings: LmEvalSettings | None = None) -> list[Path]:
    """Write one lm-eval task per name (registered names or aliases) and the shared hooks module into ``out_dir``;
    returns the YAML files written. ``data_dir`` defaults to the run's; ``settings`` to the student's evaluation
    under the default budget. A missing data folder raises ``DataError`` before anything is written."""
    registry = load_tasks()
    folder = resolve_data_dir(data_dir)
    settings = settings or LmEvalSettings.from_settings(budget_settings(default_budget_name()))
    task_classes = [registry.get(name) for name in task_names]
    for task_class in task_classes:
        task_class(folder)  # checks the task's data folder
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{UTILS_MODULE}.py").write_text(UTILS_SOURCE, encoding="utf-8")
    written = []
    for task_class in task_classes:
        path = out / f"{TASK_PREFIX}{task_class.name}.yaml"
        path.write_text(task_yaml(task_class, folder, settings), encoding="utf-8")
        written.append(path)
    return written
