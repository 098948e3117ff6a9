"""``run_bench.py export-student CELL_DIR OUT``: a finished cell's saved student as a Hugging Face model folder with
its model card (see ``benchmark.export.student``)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from benchmark.config import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cell_dir", type=Path, help="a finished cell run with --save-students: "
                                                    "runs/<task>/<pair>/<method>/seed<k>")
    parser.add_argument("out_dir", type=Path, help="new (or empty) folder for the model and its card")


def main(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    from benchmark.export.student import CellError, export_student

    try:
        out = export_student(args.cell_dir, args.out_dir)
    except CellError as error:
        raise UsageError(str(error)) from None
    print(f"wrote {out} (load with AutoModelForCausalLM.from_pretrained / AutoTokenizer.from_pretrained)")
    return 0
