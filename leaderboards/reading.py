"""A leaderboard reads its store once: one scan, each complete cell's predictions and training log read one time,
into the data the analysis and every renderer receive; nothing downstream reads the store again."""
from __future__ import annotations

import os
from dataclasses import dataclass

from benchmark.store import CellKey, Store, StoreScan, scan_store
from leaderboards.curves import PairCurves, read_curves
from leaderboards.examples import ExampleScores, ExampleTexts, read_examples


@dataclass(frozen=True)
class StoreData:
    scan: StoreScan
    scores: dict[CellKey, ExampleScores]  # per complete cell: per-example metric values
    texts: dict[CellKey, ExampleTexts]  # per complete cell: predictions, references, questions, contexts
    curves: tuple[PairCurves, ...]  # per task × pair with a trained cell
    reading: str = ""  # the store's reading.md: its conclusions in words, rendered above the tables


def read_store(runs_dir: str | os.PathLike[str]) -> StoreData:
    """Everything the leaderboards show from the store under ``runs_dir`` (a damaged ``predictions.jsonl`` is the
    :class:`~benchmark.store.StoreError` naming it; a damaged training log is a problem its curves name)."""
    scan = scan_store(runs_dir)
    inputs = {task: Store(scan.root).inputs(task) for task in {cell.task for cell in scan.cells}}
    read = {cell.key: read_examples(scan.root, cell, inputs[cell.task]) for cell in scan.cells}
    return StoreData(scan, {key: scores for key, (scores, _) in read.items()},
                     {key: texts for key, (_, texts) in read.items()}, read_curves(scan), Store(scan.root).reading())
