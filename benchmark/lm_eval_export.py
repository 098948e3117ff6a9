"""Export tasks as lm-evaluation-harness tasks: ``run_bench.py export-lm-eval DIR [--tasks ...]``.

Each task becomes ``DIR/ctkd_<task>.yaml`` (tagged ``ctkd``), beside one ``DIR/ctkd_utils.py`` that hands lm-eval
the functions of :mod:`benchmark.lm_eval_hooks`. The YAML records where our data lives and the student prompt
format of a budget (or of a finished cell), so that::

    lm_eval --model hf --model_args pretrained=<saved student> --tasks ctkd_qed --include_path DIR

reads our data files, sends the model the prompts our evaluator sends (rendered with the model's own tokenizer),
decodes greedily up to the task's length, cuts at the first newline and scores with our metric functions. It runs
offline; the evaluating environment needs ctkd-bench installed (``pip install -e ".[lmeval]"``).
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from benchmark.budgets import BUDGETS, Budget, default_budget_name
from benchmark.cli import UsageError, non_negative_int, positive_int, resolve_names
from benchmark.prompting import PROMPT_VERSION, PromptFormat
from tasks.base import DataError, Task
from tasks.registry import default_data_dir, load_tasks

TASK_PREFIX = "ctkd_"
TAG = "ctkd"  # `--tasks ctkd` runs every exported task
UTILS_MODULE = "ctkd_utils"
UTILS_SOURCE = '''"""lm-eval hooks of the CTKD-Bench tasks in this folder (written by `run_bench.py export-lm-eval`).

They need ctkd-bench importable where lm_eval runs: pip install -e ".[lmeval]" in the CTKD-Bench checkout.
"""
from benchmark.lm_eval_hooks import load_dataset, process_results

__all__ = ["load_dataset", "process_results"]
'''
STUDENT_STYLE = "plain"  # [suite] every registered student is prompted with plain text (benchmark.pairs)


@dataclass(frozen=True)
class LmEvalSettings:
    """What an exported task reproduces of one evaluation: the prompt format, the examples, the length."""

    prompt: PromptFormat
    limit_eval: int | None = None  # the same fixed-seed subset as a run with --limit-eval; None = whole test split
    max_new_tokens: int | None = None  # None = the task's own generation length

    @classmethod
    def from_budget(cls, budget: Budget, style: str = STUDENT_STYLE) -> LmEvalSettings:
        """The student's evaluation under ``budget``: its shots, prompt tokens, examples and generation length."""
        fmt = PromptFormat(style, budget.student_shots, max_prompt_tokens=budget.max_prompt_tokens)  # type: ignore[arg-type]
        return cls(fmt, budget.limit_eval, budget.max_new_tokens)

    @classmethod
    def from_cell(cls, cell_dir: Path) -> tuple[str, LmEvalSettings]:
        """``(task name, settings)`` of a finished cell, read from its ``config.json``."""
        config_file = Path(cell_dir) / "config.json"
        if not config_file.is_file():
            raise UsageError(f"--like-cell {str(cell_dir)!r}: no config.json (expected a cell directory of a run)")
        config = yaml.safe_load(config_file.read_text(encoding="utf-8"))["config"]  # JSON is YAML
        prompt = dict(config["eval_prompt"])
        version = prompt.pop("version")
        if version != PROMPT_VERSION:
            raise UsageError(f"--like-cell {str(cell_dir)!r}: prompt version {version} was used there, this code "
                             f"renders version {PROMPT_VERSION}; re-run the cell first")
        return config["task"], cls(PromptFormat(**prompt), config["limit_eval"], config["max_new_tokens"])

    def replace(self, **overrides: Any) -> LmEvalSettings:
        """A copy with the non-None ``overrides`` applied (fields of this class or of its prompt format)."""
        given = {key: value for key, value in overrides.items() if value is not None}
        prompt_fields = {f.name for f in dataclasses.fields(PromptFormat)}
        prompt = dataclasses.replace(self.prompt, **{k: v for k, v in given.items() if k in prompt_fields})
        return dataclasses.replace(self, prompt=prompt, **{k: v for k, v in given.items() if k not in prompt_fields})


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
        "metric_list": [{"metric": key, "aggregation": "mean", "higher_is_better": True} for key in task.scorer.keys],
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
    returns the YAML files written. ``settings`` default to the student's evaluation under the default budget."""
    registry = load_tasks()
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    if folder is None:
        raise DataError("no data directory: pass data_dir (--data-dir) or set $CTKD_DATA_DIR")
    settings = settings or LmEvalSettings.from_budget(BUDGETS[default_budget_name()])
    task_classes = [registry.get(name) for name in task_names]
    for task_class in task_classes:
        task_class(folder)  # a missing data folder fails here, before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{UTILS_MODULE}.py").write_text(UTILS_SOURCE, encoding="utf-8")
    written = []
    for task_class in task_classes:
        path = out / f"{TASK_PREFIX}{task_class.name}.yaml"
        path.write_text(task_yaml(task_class, folder, settings), encoding="utf-8")
        written.append(path)
    return written


# -- command line (mounted by benchmark.cli as `export-lm-eval`) ------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", type=Path, help="folder to write the lm-eval tasks into (pass it as --include_path)")
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks to export, or `all` (default: all)")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset folder (default: $CTKD_DATA_DIR or ../shared/data)")
    parser.add_argument("--budget", choices=list(BUDGETS), default=None,
                        help="take the student's prompt format, examples and length from this budget (default: run's default)")
    parser.add_argument("--like-cell", type=Path, default=None,
                        help="take task, prompt format, examples and length from this finished cell's config.json")
    parser.add_argument("--limit-eval", type=positive_int, default=None, help="examples (the run's fixed-seed subset)")
    parser.add_argument("--max-prompt-tokens", type=positive_int, default=None)
    parser.add_argument("--student-shots", type=non_negative_int, default=None)
    parser.add_argument("--max-new-tokens", type=positive_int, default=None)


def main(args: argparse.Namespace, log: Any = print) -> int:
    """Export as the parsed ``args`` say; bad input raises :class:`benchmark.cli.UsageError`."""
    if args.like_cell is not None:
        if args.tasks or args.budget:
            raise UsageError("--like-cell takes the task and the budget from the cell; drop --tasks/--budget")
        task_name, settings = LmEvalSettings.from_cell(args.like_cell)
        names = [task_name]
    else:
        settings = LmEvalSettings.from_budget(BUDGETS[args.budget or default_budget_name()])
        names = resolve_names(load_tasks(), args.tasks or ["all"], "--tasks")
    settings = settings.replace(limit_eval=args.limit_eval, max_prompt_tokens=args.max_prompt_tokens,
                                shots=args.student_shots, max_new_tokens=args.max_new_tokens)
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise UsageError(f"--data-dir {str(args.data_dir)!r} is not a directory")
    try:
        written = export_lm_eval(args.out_dir, names, args.data_dir, settings)
    except DataError as error:
        raise UsageError(str(error)) from None
    log(f"wrote {len(written)} lm-eval task(s) to {args.out_dir}: {', '.join(p.stem for p in written)}")
    log(f"run: lm_eval --model hf --model_args pretrained=<model dir> --tasks {TAG} --include_path {args.out_dir}")
    return 0
