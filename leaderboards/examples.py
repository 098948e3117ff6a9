"""What a complete cell holds beyond its scan record, read through the store: per-example scores and the costs.

Each prediction record holds the example's ``id``, its ``cluster`` (stores written before cluster ids lack it),
the prediction, the references and the per-example value of every metric; ``run.json`` holds the training steps
and the evaluation's generation time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from benchmark.store import Cell, CellKey, CellRecord, Store, StoreError


def _cell(root: Path, cell: CellRecord) -> Cell:
    return Store(root).cell(CellKey(cell.task, cell.pair, cell.method, cell.seed))


@dataclass(frozen=True)
class ExampleScores:
    """One cell's per-example values, in file order."""

    ids: tuple[str, ...]
    clusters: tuple[str, ...] | None  # None: the cell was stored before cluster ids were recorded
    scores: dict[str, np.ndarray]  # metric -> [n] values on the 0-100 scale


@dataclass(frozen=True)
class ExampleTexts:
    """One cell's evaluation texts, in file order; ``questions`` and ``contexts`` are "" where the store did not record
    them (stores written before the task's ``inputs.jsonl``)."""

    predictions: tuple[str, ...]
    references: tuple[tuple[str, ...], ...]
    questions: tuple[str, ...]
    contexts: tuple[str, ...]


def read_examples(root: Path, cell: CellRecord,
                  inputs: Mapping[str, tuple[str, str]] | None = None) -> tuple[ExampleScores, ExampleTexts]:
    """The cell's ``predictions.jsonl``, read once, with each example's ``(question, context)`` from ``inputs`` (the
    task's recorded inputs); a missing file, a bad line or a missing metric is a :class:`StoreError` naming the file
    and line (a complete cell must carry the scores its metrics were computed from)."""
    stored = _cell(root, cell)
    path = stored.dir / "predictions.jsonl"
    records = stored.predictions()
    ids = tuple(str(r["id"]) for r in records)
    with_cluster = sum("cluster" in r for r in records)
    if with_cluster not in (0, len(records)):
        raise StoreError(f"{path}: some lines have a 'cluster' and some do not")
    clusters = tuple(str(r["cluster"]) for r in records) if with_cluster else None
    lines = list(range(1, len(records) + 1))
    scores = ExampleScores(ids, clusters, {m: _values(records, m, path, lines) for m in sorted(cell.metrics)})
    recorded = [(inputs or {}).get(i, ("", "")) for i in ids]
    texts = ExampleTexts(
        tuple(str(r.get("prediction", "")) for r in records),
        tuple(tuple(map(str, r["references"])) if isinstance(r.get("references"), list) else () for r in records),
        tuple(question for question, _ in recorded), tuple(context for _, context in recorded),
    )
    return scores, texts


def _values(records: list[dict[str, Any]], metric: str, path: Path, lines: list[int]) -> np.ndarray:
    values = [r.get(metric) for r in records]
    if {type(v) for v in values} <= {int, float}:
        array = np.array(values, dtype=np.float64)
        if np.isfinite(array).all():
            return array
    number, value = next((n, v) for n, v in zip(lines, values) if type(v) not in (int, float) or not math.isfinite(v))
    raise StoreError(f"{path}, line {number}: metric {metric!r} should be a finite number, got {value!r}")


@dataclass(frozen=True)
class RunCosts:
    """What one cell cost, from its ``run.json``; None where the file does not record it."""

    train_steps: int | None
    eval_s_per_example: float | None


def read_run_costs(root: Path, cell: CellRecord) -> RunCosts:
    run = _cell(root, cell).run_info()
    train = run.get("train") if isinstance(run.get("train"), dict) else {}
    evaluation = run.get("eval") if isinstance(run.get("eval"), dict) else {}
    steps, seconds, n = train.get("steps"), evaluation.get("generation_wall_time_s"), evaluation.get("n_examples")
    per_example = seconds / n if _positive(seconds) and _positive(n) else None
    return RunCosts(int(steps) if _positive(steps) else None, per_example)


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
