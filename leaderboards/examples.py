"""Read what a complete cell stores beyond its scan record: per-example scores and the measured costs.

``predictions.jsonl`` holds one line per evaluated example: its ``id``, its ``cluster`` (stores written before
cluster ids lack it), the prediction, the references and the per-example value of every metric in
``metrics.json``. ``run.json`` holds the training steps and the evaluation's generation time.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from leaderboards.store import CellRecord, StoreError


def cell_dir(root: Path, cell: CellRecord) -> Path:
    return Path(root) / cell.task / cell.pair / cell.method / f"seed{cell.seed}"


@dataclass(frozen=True)
class ExampleScores:
    """One cell's per-example values, in file order."""

    ids: tuple[str, ...]
    clusters: tuple[str, ...] | None  # None: the cell was stored before cluster ids were recorded
    scores: dict[str, np.ndarray]  # metric -> [n] values on the 0-100 scale


def read_example_scores(root: Path, cell: CellRecord) -> ExampleScores:
    """The cell's ``predictions.jsonl``; a missing file, a bad line or a missing metric is a :class:`StoreError`
    naming the file and line (a complete cell must carry the scores its metrics were computed from)."""
    path = cell_dir(root, cell) / "predictions.jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoreError(f"{path} is missing: a complete cell needs its per-example scores") from None
    numbered = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not numbered:
        raise StoreError(f"{path} has no predictions")
    try:  # one parse of the whole file: a store of 1,000 cells has 200,000 lines
        records = json.loads("[" + ",".join(line for _, line in numbered) + "]")
    except json.JSONDecodeError:
        records = []
    if len(records) != len(numbered):  # a bad line: parse line by line to name it
        records = [_record(line, f"{path}, line {number}") for number, line in numbered]
    for (number, _), record in zip(numbered, records):
        if not isinstance(record, dict) or "id" not in record:
            raise StoreError(f"{path}, line {number}: expected an object with an 'id'")
    ids = tuple(str(r["id"]) for r in records)
    if len(set(ids)) != len(ids):
        raise StoreError(f"{path} lists an example id twice")
    with_cluster = sum("cluster" in r for r in records)
    if with_cluster not in (0, len(records)):
        raise StoreError(f"{path}: some lines have a 'cluster' and some do not")
    clusters = tuple(str(r["cluster"]) for r in records) if with_cluster else None
    lines = [number for number, _ in numbered]
    return ExampleScores(ids, clusters, {m: _values(records, m, path, lines) for m in sorted(cell.metrics)})


def _record(line: str, where: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise StoreError(f"{where}: invalid JSON ({error.msg})") from None


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
    path = cell_dir(root, cell) / "run.json"
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return RunCosts(None, None)
    except json.JSONDecodeError as error:
        raise StoreError(f"{path} is not valid JSON: {error}") from None
    run = run if isinstance(run, dict) else {}
    train = run.get("train") if isinstance(run.get("train"), dict) else {}
    evaluation = run.get("eval") if isinstance(run.get("eval"), dict) else {}
    steps, seconds, n = train.get("steps"), evaluation.get("generation_wall_time_s"), evaluation.get("n_examples")
    per_example = seconds / n if _positive(seconds) and _positive(n) else None
    return RunCosts(int(steps) if _positive(steps) else None, per_example)


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
