"""``run_bench.py ls {methods,pairs,tasks,data}``: what is registered, one line each, name first (``data``: each
task's files, size, license and state here: present, missing or corrupt; ``pairs``: whether the pair can run here
and its vocabulary overlap, measured from the two tokenizers only, once per pair)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from benchmark.config import PAIR_HELP, PAIRS_FILE_HELP
from benchmark.core.paths import default_cache_dir, resolve_data_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=("methods", "pairs", "tasks", "data"))
    parser.add_argument("--include", action="append", default=[], metavar="FILE.py",
                        help="register methods from a Python file first")
    parser.add_argument("--cache-dir", default=None, help="model cache (offline models, data checks)")
    parser.add_argument("--data-dir", default=None, help="dataset folder (default: $CTKD_DATA_DIR, ../shared/data, "
                                                         "or the per-user data folder)")
    parser.add_argument("--pair", action="append", default=[], metavar="NAME=TEACHER,STUDENT", help=PAIR_HELP)
    parser.add_argument("--pairs-file", default=None, help=PAIRS_FILE_HELP)


def main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.what == "methods":
        from benchmark.cli.preflight import methods_with_includes

        methods = methods_with_includes(args.include)
        for name in methods.names():
            default = methods.get(name)()  # what the method needs with its default config
            print(f"{name}\tteacher: {default.teacher_request().needs}\t{methods.description(name)}")
    elif args.what == "data":
        from benchmark.data.check import data_table

        for line in data_table(resolve_data_dir(args.data_dir), cache_dir=args.cache_dir or default_cache_dir()):
            print(line)
    elif args.what == "tasks":
        from tasks.registry import load_tasks

        tasks = load_tasks()
        for name in tasks.names():
            print(f"{name}\tmetric: {tasks.get(name).metric}\t{tasks.description(name)}")
    else:
        from benchmark.cli.preflight import directory
        from benchmark.cli.resolve import define_user_pairs
        from benchmark.models.pairs import PAIRS, pair_status

        define_user_pairs(args.pair, args.pairs_file)
        cache = directory(args.cache_dir if args.cache_dir is not None else str(default_cache_dir()), "--cache-dir")
        for name in PAIRS.names():
            pair = PAIRS.get(name)
            reason = pair_status(pair, cache)
            status = "reachable" if reason is None else f"not reachable: {reason}"
            overlap = "overlap: not measured (its tokenizers are not here)" if reason else overlap_note(pair, cache)
            print(f"{name}\t{pair.teacher.name} -> {pair.student.name}\t{status}\t{overlap}")
    return 0


def overlap_note(pair: Any, cache_dir: str | Path) -> str:
    """The pair's vocabulary overlap (O_V and Jaccard on canonical bytes, methods-spec §19) from its two tokenizers
    (never the weights), measured once per pair; or why it could not be measured."""
    from benchmark.models.loading import ModelUnavailableError, load_tokenizer
    from benchmark.models.pair_cache import (
        cached_vocabulary_overlap,
        indexed_vocabulary_overlap,
    )
    from methods.token_text import VocabInfo

    directory = Path(cache_dir) / "pairs"

    def vocabs() -> tuple[VocabInfo, VocabInfo]:
        student, teacher = (load_tokenizer(spec, cache_dir=cache_dir) for spec in (pair.student, pair.teacher))
        return VocabInfo.from_tokenizer(student), VocabInfo.from_tokenizer(teacher)

    try:
        if any(spec.source == "local" or spec.ref.endswith(".gguf") for spec in (pair.student, pair.teacher)):
            # a folder's (or a GGUF file's) tokenizer can change under its path
            overlap = cached_vocabulary_overlap(*vocabs(), directory)
        else:
            identity = {"student": pair.student.fingerprint(), "teacher": pair.teacher.fingerprint()}
            overlap = indexed_vocabulary_overlap(identity, vocabs, directory)
    except (ModelUnavailableError, OSError, ValueError) as error:
        return f"overlap: not measured ({str(error).splitlines()[0]})"
    return f"O_V {overlap.student_share:.3f} · Jaccard {overlap.jaccard:.3f}"
