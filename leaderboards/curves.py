"""Training curves from each trained cell's ``train_log.jsonl``, per task × pair, as panels of lines.

Per task × pair: the total loss and the answer cross-entropy (``ce``, where a method logs it) of every method on one
axis each, the gradient norm and the learning rate of every method (the *shared* panels), then one panel per method with its total loss and each term it
logs. x is the optimizer step; every seed is a line, and each series also has the mean over its seeds (at each step,
over the seeds that logged it). A log that is missing or does not parse is named in ``problems`` and its cell left
out of the curves; the rest of the pair still draws. The page (:mod:`leaderboards.curves_html`) draws every panel,
``leaderboard_curves.png`` (:mod:`leaderboards.plot`) the shared ones.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from benchmark.store import REFERENCE_METHODS, CellRecord, Store, StoreError, StoreScan
from leaderboards.tables import ordered_methods

# Logged per step but not a training term: drawn in their own panels (grad_norm, lr) or not at all.
_NOT_TERMS = frozenset({"step", "grad_norm", "lr", "answer_tokens", "elapsed_s"})
SHARED_PANELS = (("loss", "total loss"), ("ce", "answer cross-entropy"), ("grad_norm", "gradient norm"),
                 ("lr", "learning rate"))
MAX_POINTS = 300  # per line: longer logs are drawn at every k-th step (and the last), so large stores stay light
# matplotlib's default colour cycle, so a method has the same colour on the page and in the PNGs.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


@dataclass(frozen=True)
class Line:
    steps: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Series:
    name: str  # a method in the shared panels, a term in a method's own panel
    color: str
    seeds: tuple[tuple[int, Line], ...]  # (seed, its line)
    mean: Line


@dataclass(frozen=True)
class Panel:
    title: str
    series: tuple[Series, ...]
    shared: bool  # one line per method (else one per term of one method)


@dataclass(frozen=True)
class PairCurves:
    task: str
    pair: str
    panels: tuple[Panel, ...]
    problems: tuple[str, ...]  # "<method> seed <k>: <why its log is not drawn>"


_Log = dict[str, Line]  # term -> its line in one cell


def read_curves(scan: StoreScan) -> tuple[PairCurves, ...]:
    """The curves of every task × pair of ``scan`` that has a trained cell, sorted by task and pair."""
    store = Store(scan.root)
    by_pair: dict[tuple[str, str], list[CellRecord]] = defaultdict(list)
    for cell in scan.cells:
        if cell.method not in REFERENCE_METHODS:
            by_pair[cell.task, cell.pair].append(cell)
    colors = method_colors([cell.method for cells in by_pair.values() for cell in cells])
    return tuple(_pair_curves(store, task, pair, cells, colors) for (task, pair), cells in sorted(by_pair.items()))


def method_colors(methods: list[str]) -> dict[str, str]:
    """One colour per method across the whole leaderboard."""
    return {method: PALETTE[i % len(PALETTE)] for i, method in enumerate(ordered_methods(methods))}


def _pair_curves(store: Store, task: str, pair: str, cells: list[CellRecord], colors: dict[str, str]) -> PairCurves:
    logs: dict[str, dict[int, _Log]] = defaultdict(dict)  # method -> seed -> log
    problems = []
    for cell in sorted(cells, key=lambda c: (c.method, c.seed)):
        stored = store.cell(cell.key)
        try:
            logs[cell.method][cell.seed] = _lines(stored.train_records(), stored.train_log.name)
        except StoreError as error:
            problems.append(f"{cell.method} seed {cell.seed}: {str(error).replace(f'{stored.dir}/', '')}")
    panels = [Panel(title, tuple(_series(method, colors[method], {s: log[term] for s, log in seeds.items()
                                                                   if term in log})
                                 for method, seeds in _in_order(logs) if any(term in log for log in seeds.values())),
                    True)
              for term, title in SHARED_PANELS]
    for method, seeds in _in_order(logs):
        terms = sorted({t for log in seeds.values() for t in log if t not in _NOT_TERMS}, key=lambda t: (t != "loss", t))
        panels.append(Panel(f"{method}: loss and terms", tuple(
            _series(term, PALETTE[i % len(PALETTE)], {s: log[term] for s, log in seeds.items() if term in log})
            for i, term in enumerate(terms)), False))
    return PairCurves(task, pair, tuple(p for p in panels if p.series), tuple(problems))


def _in_order(logs: dict[str, dict[int, _Log]]) -> list[tuple[str, dict[int, _Log]]]:
    return [(method, logs[method]) for method in ordered_methods(logs)]


def _lines(records: list[dict[str, Any]], name: str) -> _Log:
    """term -> (steps, values) of one log; a log without steps, or a line whose step is not a positive integer, is a
    :class:`StoreError` (a curve with a wrong x is worse than none)."""
    if not records:
        raise StoreError(f"{name} is empty")
    points: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for number, record in enumerate(records, start=1):
        step = record.get("step")
        if type(step) is not int or step < 1:
            raise StoreError(f"{name}, line {number}: 'step' should be a positive integer, got {step!r}")
        for term, value in record.items():
            if type(value) in (int, float) and math.isfinite(value) and term != "step":
                points[term].append((step, float(value)))
    return {term: _thin(Line(tuple(s for s, _ in pts), tuple(v for _, v in pts))) for term, pts in points.items()}


def _series(name: str, color: str, seeds: dict[int, Line]) -> Series:
    by_step: dict[int, list[float]] = defaultdict(list)
    for line in seeds.values():
        for step, value in zip(line.steps, line.values):
            by_step[step].append(value)
    steps = sorted(by_step)
    mean = Line(tuple(steps), tuple(math.fsum(by_step[s]) / len(by_step[s]) for s in steps))
    return Series(name, color, tuple(sorted(seeds.items())), mean)


def _thin(line: Line) -> Line:
    if len(line.steps) <= MAX_POINTS:
        return line
    stride = math.ceil(len(line.steps) / MAX_POINTS)
    keep = list(range(0, len(line.steps), stride))
    keep += [len(line.steps) - 1] if keep[-1] != len(line.steps) - 1 else []
    return Line(tuple(line.steps[i] for i in keep), tuple(line.values[i] for i in keep))
