"""Command line: ``run_bench.py [COMMAND] ...``; parsing and dispatch only, every command is importable.

Commands (``run`` when none is named): see :data:`COMMANDS`. Each lives in ``benchmark/cli/commands/<name>.py`` with
``add_arguments(parser)``, ``main(args, argv) -> int`` and optionally ``DATACLASSES``, whose fields become flags.

Exit codes: 0 success; 1 a cell failed, or the disk failed the run (one line); 2 bad input (one line naming the bad
value and what is accepted); 130 interrupted (Ctrl-C; one line saying how to resume).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import os
import shlex
import sys
import types
from typing import Any, Sequence

from transformers import HfArgumentParser

from benchmark.config import UsageError
from benchmark.core.files import describe_os_error

# name -> (module under benchmark.cli.commands, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "train and evaluate the grid of methods × pairs × tasks × seeds (the default command)"),
    "ls": ("ls", "list registered methods, pairs, tasks, or the state of the task data, one line each"),
    "leaderboard": ("leaderboard", "re-render the leaderboards from a result store"),
    "cache-teacher": ("cache_teacher", "build the teacher-output cache (top-k logits, answers) a grid's cells will "
                                       "train from, ahead of them"),
    "pair": ("pair", "check a pair before training: its tokenizers' overlap, byte spans, special-token roles, "
                     "MinED's vocabulary map and padded output rows, one line per check"),
    "data": ("data", "fetch the task data that is missing, verified against its release"),
    "plan": ("plan", "how many evaluation examples and seeds a target difference from sft needs, and its cost"),
    "export-lm-eval": ("export_lm_eval", "write the tasks as lm-evaluation-harness tasks (our data, prompts, metrics)"),
    "export-student": ("export_student", "a finished cell's saved student as a Hugging Face model with its card"),
}
# Keywords the HF argument parser passes on to ``add_argument``; other field metadata (e.g. a settings field's
# ``check`` and ``hashed``) is the config tree's own.
_ARGPARSE_KEYWORDS = frozenset({"help", "aliases", "metavar", "action", "choices", "nargs"})


class Parser(HfArgumentParser):
    """The HF argument parser (flags generated from dataclass fields), reporting bad input as one
    :class:`UsageError` line instead of usage text."""

    def __init__(self, dataclass_types: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.HelpFormatter)
        # No prefixes of flags (``--learning-rat``): one that matches today may match two flags tomorrow.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(dataclass_types, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)

    @staticmethod
    def _parse_dataclass_field(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:  # type: ignore[override]
        argparse_view = copy.copy(field)
        argparse_view.metadata = types.MappingProxyType(
            {k: v for k, v in field.metadata.items() if k in _ARGPARSE_KEYWORDS})
        HfArgumentParser._parse_dataclass_field(parser, argparse_view)


def split_names(values: Sequence[str]) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: names may be space- or comma-separated."""
    return [name for value in values for name in value.split(",") if name]


def command_parser(name: str) -> tuple[Parser, Any]:
    """The parser and module of command ``name``."""
    module = importlib.import_module(f"benchmark.cli.commands.{COMMANDS[name][0]}")
    parser = Parser(getattr(module, "DATACLASSES", ()), prog="run_bench.py" if name == "run" else f"run_bench.py {name}",
                    description=COMMANDS[name][1])
    module.add_arguments(parser)
    return parser, module


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("CTKD_ONLINE") != "1":
        # Offline by default: without it every hub lookup waits ~23 s before failing on a closed network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    name = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    try:
        parser, module = command_parser(name)
        return module.main(parser.parse_args(argv), argv)
    except UsageError as error:
        print(f"run_bench.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Every file is written atomically and a cell counts as done only once its DONE is written, so what an
        # interrupted run leaves is either finished or resumable.
        resume = f"; resume with: python run_bench.py {shlex.join(argv)}" if name == "run" else ""
        # On a line of its own: the terminal's ^C or a progress bar may have left the cursor mid-line.
        print(f"\nrun_bench.py: interrupted{resume}", file=sys.stderr)
        return 130
    except OSError as error:  # the environment, not the input: a full or read-only disk, a file that went away
        print(f"run_bench.py: error: {describe_os_error(error)}", file=sys.stderr)
        return 1
