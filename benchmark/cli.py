"""Command line: ``run_bench.py [run] ...``, ``run_bench.py ls {methods,pairs,tasks}``, ``run_bench.py leaderboard``.

Parsing and dispatch only; everything it does is importable. Bad input exits with code 2 and one line naming
the bad value and what is accepted.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from benchmark.budgets import BUDGETS, TEACHER_PREPS, default_budget_name
from benchmark.executors import EXECUTORS
from benchmark.registry import Registry, RegistryError

DEFAULT_PAIR = "default"
DEFAULT_TASKS = ("qed", "fairytaleqa", "dialogsum")
DEFAULT_METHODS = ("sft", "seqkd", "uld", "mined", "mlot")
SUBCOMMANDS = ("run", "ls", "leaderboard")


class UsageError(ValueError):
    """Bad command-line input; reported as one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one :class:`UsageError` line instead of usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def split_names(values: Sequence[str]) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: names may be space- or comma-separated."""
    return [name for value in values for name in value.split(",") if name]


def resolve_names(registry: Registry[Any], values: Sequence[str], flag: str) -> list[str]:
    try:
        return registry.resolve(split_names(values))
    except RegistryError as error:
        raise UsageError(f"{flag}: {error}") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def non_negative_int(text: str) -> int:
    return 0 if text == "0" else positive_int(text)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def method_overrides(values: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["mlot.alpha=1.5"]`` -> ``{"mlot": {"alpha": 1.5}}`` (values parsed as JSON when they can be)."""
    import json

    out: dict[str, dict[str, Any]] = {}
    for item in values:
        target, sep, raw = item.partition("=")
        method, dot, field = target.partition(".")
        if not sep or not dot or not method or not field:
            raise UsageError(f"--set {item!r}: expected METHOD.FIELD=VALUE, e.g. mlot.alpha=1.5")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(method, {})[field] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="run_bench.py",
        description="CTKD-Bench: cross-tokenizer knowledge distillation benchmark. "
        "Subcommands: run (default), ls {methods,pairs,tasks}, leaderboard.",
    )
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        help="methods to train (space/comma separated, 'all', or 'none' for teacher + untrained only)")
    parser.add_argument("--pairs", nargs="+", default=[DEFAULT_PAIR], help="teacher→student pairs, or 'all'")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), help="tasks, or 'all'")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1], help="training seeds (default: 1)")
    parser.add_argument("--budget", default=None, help=f"one of {', '.join(BUDGETS)} (default: smoke on CPU, paper on GPU)")
    parser.add_argument("--limit-train", type=positive_int, default=None, help="training examples per task")
    parser.add_argument("--limit-eval", type=positive_int, default=None, help="evaluation examples per task")
    parser.add_argument("--epochs", type=positive_float, default=None)
    parser.add_argument("--lr", type=positive_float, default=None, help="peak learning rate")
    parser.add_argument("--batch-size", type=positive_int, default=None)
    parser.add_argument("--grad-accum", type=positive_int, default=None)
    parser.add_argument("--eval-batch-size", type=positive_int, default=None)
    parser.add_argument("--max-new-tokens", type=positive_int, default=None, help="generation length (default: per task)")
    parser.add_argument("--max-prompt-tokens", type=positive_int, default=None)
    parser.add_argument("--max-answer-tokens", type=positive_int, default=None)
    parser.add_argument("--student-shots", type=non_negative_int, default=None)
    parser.add_argument("--teacher-shots", type=non_negative_int, default=None)
    parser.add_argument("--teacher-prep", choices=TEACHER_PREPS, default=None)
    parser.add_argument("--topk", type=positive_int, default=None, help="teacher top-k kept in the teacher cache")
    parser.add_argument("--schedule", choices=("onecycle", "cosine", "constant"), default=None)
    parser.add_argument("--checkpoint-every", type=non_negative_int, default=None, help="optimizer steps between checkpoints")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="METHOD.FIELD=VALUE",
                        help="override a method's config field, e.g. --set mlot.alpha=1.5 (repeatable)")
    parser.add_argument("--output", type=Path, default=Path("runs"), help="result store (default: runs/)")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset folder (default: $CTKD_DATA_DIR or ../shared/data)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="model/teacher cache (default: $CTKD_CACHE_DIR or .cache/)")
    parser.add_argument("--include", action="append", default=[], metavar="FILE.py", help="register methods from a file")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: cells one after another here; gpus: one worker process per visible GPU")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="workers for --executor gpus (default: one per visible GPU; on CPU, N workers share the cores)")
    parser.add_argument("--dry-run", action="store_true", help="print the grid and each cell's state, run nothing")
    parser.add_argument("--force", action="store_true", help="re-run cells finished before this run started")
    parser.add_argument("--exit-on-error", action="store_true", help="stop at the first failing cell")
    parser.add_argument("--save-students", action="store_true", help="save each trained student with save_pretrained")
    parser.add_argument("--no-leaderboard", action="store_true", help="do not render the leaderboard after the run")
    return parser


def ls_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="run_bench.py ls", description="list registered methods, pairs or tasks")
    parser.add_argument("what", choices=("methods", "pairs", "tasks"))
    parser.add_argument("--include", action="append", default=[], metavar="FILE.py")
    parser.add_argument("--cache-dir", type=Path, default=None)
    return parser


def leaderboard_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="run_bench.py leaderboard", description="re-render leaderboards from a result store")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="result store to read (default: runs/)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the result store)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("CTKD_ONLINE") != "1":
        # Offline by default: without it every hub lookup waits ~23 s before failing on a closed network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    command = argv.pop(0) if argv and argv[0] in SUBCOMMANDS else "run"
    try:
        if command == "ls":
            return cmd_ls(ls_parser().parse_args(argv))
        if command == "leaderboard":
            return cmd_leaderboard(leaderboard_parser().parse_args(argv))
        return cmd_run(build_parser().parse_args(argv), argv)
    except UsageError as error:
        print(f"run_bench.py: error: {error}", file=sys.stderr)
        return 2


def cmd_ls(args: argparse.Namespace) -> int:
    from benchmark.models import default_cache_dir
    from benchmark.pairs import PAIRS, pair_status
    from tasks.registry import load_tasks

    if args.what == "methods":
        methods = _load_methods(args.include)
        for name in methods.names():
            cls = methods.get(name)
            print(f"{name}\tteacher: {cls.teacher_needs}\t{methods.description(name)}")
    elif args.what == "tasks":
        tasks = load_tasks()
        for name in tasks.names():
            cls = tasks.get(name)
            print(f"{name}\tmetric: {cls.metric}\t{tasks.description(name)}")
    else:
        cache = args.cache_dir or default_cache_dir()
        for name in PAIRS.names():
            pair = PAIRS.get(name)
            reason = pair_status(pair, cache)
            status = "reachable" if reason is None else f"not reachable: {reason}"
            print(f"{name}\t{pair.teacher.name} -> {pair.student.name}\t{status}")
    return 0


def _load_methods(include: Sequence[str]) -> Registry[Any]:
    from methods.registry import load_methods

    try:
        return load_methods(list(include))
    except (ValueError, RegistryError) as error:
        raise UsageError(str(error)) from None


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from leaderboards import render_leaderboards

    if not args.runs.is_dir():
        raise UsageError(f"--runs {str(args.runs)!r} is not a directory")
    try:
        written = render_leaderboards(args.runs, args.out)
    except ValueError as error:
        raise UsageError(str(error)) from None
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


def resolve_settings(args: argparse.Namespace) -> Any:
    from benchmark.models import default_cache_dir
    from benchmark.pairs import PAIRS
    from benchmark.runner import RunSettings
    from tasks.registry import default_data_dir, load_tasks

    methods_registry = _load_methods(args.include)
    requested = split_names(args.methods)
    methods = [] if requested == ["none"] else resolve_names(methods_registry, requested, "--methods")
    tasks = resolve_names(load_tasks(), args.tasks, "--tasks")
    pairs = resolve_names(PAIRS, args.pairs, "--pairs")
    budget_name = args.budget or default_budget_name()
    if budget_name not in BUDGETS:
        raise UsageError(f"--budget {budget_name!r}: accepted: {', '.join(BUDGETS)}")
    data_dir = args.data_dir or default_data_dir()
    if data_dir is None or not Path(data_dir).is_dir():
        raise UsageError(f"--data-dir {str(data_dir)!r} is not a directory; pass --data-dir or set CTKD_DATA_DIR")
    overrides = method_overrides(args.overrides)
    for name, fields in overrides.items():
        if name not in methods_registry:
            raise UsageError(f"--set: unknown method {name!r}; registered: {', '.join(methods_registry.names())}")
        cls = methods_registry.get(name)
        try:
            cls.config_class.from_dict(fields)
        except (TypeError, ValueError) as error:
            raise UsageError(f"--set {name}: {error}") from None
        overrides[methods_registry.canonical(name)] = overrides.pop(name)
    budget = BUDGETS[budget_name].replace(
        limit_train=args.limit_train, limit_eval=args.limit_eval, epochs=args.epochs, learning_rate=args.lr,
        batch_size=args.batch_size, grad_accum=args.grad_accum, eval_batch_size=args.eval_batch_size,
        max_new_tokens=args.max_new_tokens, max_prompt_tokens=args.max_prompt_tokens,
        max_answer_tokens=args.max_answer_tokens, student_shots=args.student_shots, teacher_shots=args.teacher_shots,
        teacher_prep=args.teacher_prep, topk=args.topk, schedule=args.schedule, checkpoint_every=args.checkpoint_every,
    )
    return RunSettings(
        tasks=tasks, pairs=pairs, methods=methods, seeds=list(dict.fromkeys(args.seeds)), budget_name=budget_name,
        budget=budget, output=args.output, data_dir=Path(data_dir), cache_dir=args.cache_dir or default_cache_dir(),
        method_overrides=overrides, exit_on_error=args.exit_on_error, force=args.force, save_students=args.save_students,
    )


def cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from benchmark.runner import FAILED_STATUSES, GridRunner, summarize
    from tasks.base import DataError

    if args.workers not in (None, 1) and args.executor != "gpus":
        raise UsageError(f"--workers {args.workers}: more than one worker needs --executor gpus")
    settings = resolve_settings(args)
    started = time.perf_counter()
    runner = GridRunner(settings)
    try:
        if args.executor == "gpus" and not args.dry_run:
            outcomes = run_with_workers(runner, args.workers, argv)
        else:
            outcomes = runner.run(dry_run=args.dry_run)
    except DataError as error:
        raise UsageError(str(error)) from None
    if args.dry_run:
        return 0
    print(summarize(outcomes))
    if not args.no_leaderboard:
        from leaderboards import render_leaderboards

        written = render_leaderboards(settings.output)
        markdown = written.get("markdown") or written.get("leaderboard.md")
        if markdown is not None:
            print(Path(markdown).read_text())
        for kind, path in written.items():
            print(f"{kind}: {path}")
    print(f"results: {settings.output}/<task>/<pair>/<method>/seed<k>/  wall time {time.perf_counter() - started:.0f} s")
    return 1 if any(o.status in FAILED_STATUSES for o in outcomes) else 0


def run_with_workers(runner: Any, workers: int | None, argv: Sequence[str]) -> list[Any]:
    """``--executor gpus``: the grid spread over worker processes; the outcomes as the result store records them."""
    import torch

    from benchmark.executors import run_workers, worker_environments

    try:
        environments = worker_environments(workers, torch.cuda.device_count(), os.cpu_count() or 1)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(f"executor gpus: {len(environments)} workers")
    for index, code in enumerate(run_workers(argv, environments)):
        if code not in (0, 1):  # 1 is "a cell failed", which the store reports per cell
            print(f"worker {index} exited with code {code}")
    return runner.stored_outcomes()
