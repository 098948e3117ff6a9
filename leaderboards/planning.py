"""Plan a run: how many evaluation examples and seeds a target difference from sft needs, and what it costs.

The spread of paired differences (:class:`leaderboards.stats.PairedSpread`, pooled over a table's trained methods
that do not score as sft on every example) and the costs (training seconds per step times steps per cell,
generation seconds per evaluated example) are measured in an existing result store; the plan reruns that store's
grid (same methods, reference rows and training set) with other numbers of evaluation examples and seeds. The test
is the marks' paired test, two-sided, at Holm's first step ``alpha / family`` (``family``: the comparisons with sft
the planned leaderboard makes, by default those of the store's grid for these tasks), with the noncentral t power
of :func:`leaderboards.stats.detectable_difference`. One seed gets no marks; a store with one seed per cell cannot
measure training-seed variance, so its plans are lower bounds (:func:`leaderboards.stats.examples_lower_bound`).
"""
from __future__ import annotations

import dataclasses
import math
import os
import statistics
from pathlib import Path
from typing import Mapping, Sequence

from benchmark.store import SFT, CellRecord, scan_store
from leaderboards.analysis import REFERENCES, TableInfo, analyze
from leaderboards.examples import read_run_costs
from leaderboards.stats import BootstrapConfig, examples_lower_bound, examples_needed

SEED_OPTIONS = (1, 2, 3, 5, 10)  # [suite] the rows of a plan
_SPREAD_ONLY = BootstrapConfig(resamples=100)  # the plan uses the variance components, not the resampled intervals


def plan(
    runs_dir: str | os.PathLike[str],
    tasks: Sequence[str],
    mde: float,
    *,
    pairs: Sequence[str] | None = None,
    seeds: Sequence[int] = SEED_OPTIONS,
    power: float = 0.80,
    alpha: float = 0.05,
    family: int | None = None,
    test_sizes: Mapping[str, int] | None = None,
) -> str:
    """The text ``run_bench.py plan --tasks ... --mde ... [--runs DIR] [--family M]`` prints, one block per task
    and pair.

    ``family``: how many comparisons with sft the planned leaderboard corrects for together (default: those of the
    store's grid for ``tasks``). ``test_sizes`` (task -> examples in its test split), when given, flags plans that
    need more examples than the split has. Bad input, or a store that cannot tell, is a ValueError with a one-line message saying what the
    store needs.
    """
    if not (isinstance(mde, (int, float)) and math.isfinite(mde) and mde > 0):
        raise ValueError(f"--mde must be a positive number of points (0-100 scale), got {mde!r}")
    if not tasks:
        raise ValueError("plan needs at least one task")
    if not seeds or any(not isinstance(k, int) or k < 1 for k in seeds):
        raise ValueError(f"seed counts must be positive integers, got {list(seeds)}")
    if not (0 < power < 1 and 0 < alpha < 1):
        raise ValueError(f"power and alpha must be in (0, 1), got power={power}, alpha={alpha}")
    if family is not None and (not isinstance(family, int) or family < 1):
        raise ValueError(f"--family must be a positive number of comparisons, got {family!r}")
    root = Path(runs_dir)
    example = f"python run_bench.py --tasks {' '.join(tasks)} --methods sft uld --seeds 1 2 --output {root}"
    if not root.is_dir():
        raise ValueError(f"result store {root} does not exist: plan measures spread and costs in one (run e.g. `{example}`)")
    scan = scan_store(root)
    stored = sorted({c.task for c in scan.cells})
    for task in tasks:
        if task not in stored:
            raise ValueError(f"{root} has no complete cells of task {task!r} (it has: {', '.join(stored) or 'none'}); "
                             f"run e.g. `{example}` first")
    cells = [c for c in scan.cells if c.task in tasks and (pairs is None or c.pair in pairs)]
    if pairs is not None and (unknown := sorted(set(pairs) - {c.pair for c in cells})):
        raise ValueError(f"{root} has no cells of pair(s) {', '.join(unknown)} for task(s) {', '.join(tasks)}")
    analysis = analyze(dataclasses.replace(scan, cells=tuple(cells), failed=(), skipped=()), _SPREAD_ONLY)
    blocks = []
    family = family or analysis.testable
    for info in analysis.tables:
        if info.spread is None:
            raise ValueError(f"{root} has no sft and trained method of task {info.task!r} on pair {info.pair!r} "
                             f"evaluated on the same examples and differing from sft on one at least: plan needs "
                             f"both (run e.g. `{example}`)")
        table_cells = [c for c in cells if (c.task, c.pair) == (info.task, info.pair)]
        blocks.append(_block(root, info, table_cells, mde, seeds, power, alpha, family,
                             (test_sizes or {}).get(info.task)))
    return "\n\n".join(blocks) + "\n"


def _block(root: Path, info: TableInfo, cells: list[CellRecord], mde: float, seeds: Sequence[int], power: float,
           alpha: float, family: int, test_size: int | None) -> str:
    spread = info.spread
    assert spread is not None
    seed_word = "seed" if info.power_seeds == 1 else "seeds"
    level = alpha / family
    left_out = f" ({', '.join(info.identical_to_sft)} scored as sft on every example: left out)" \
        if info.identical_to_sft else ""
    lines = [
        f"{info.task} · {info.pair}: to detect a difference of {mde:g} points from sft ({power:.0%} power, paired "
        f"test at α = {alpha:g}/{family} = {level:.2g}, Holm's first step over {_count(family, 'comparison')}, "
        f"two-sided, t quantiles)".replace("%", " %"),
        f"  measured in {root}: {info.power_examples} examples in {info.power_clusters} clusters, {info.power_seeds} "
        f"{seed_word}; spread pooled over the differences of {_count(info.spread_methods, 'trained method')} from "
        f"sft{left_out}",
    ]
    if not spread.seeds_measured:
        lines.append("  at one seed: a lower bound. One seed per cell cannot measure training-seed variance, so each "
                     "row is the fewest examples that could do (no seed effect, all example noise seed × example "
                     f"interaction, normal quantiles), and the real need can be far larger: with few seeds the "
                     f"seed part alone, tested on k − 1 degrees of freedom, can put a target out of reach at any "
                     f"number of examples; run {SFT} and a method with 2 or more seeds (--seeds 1 2 3) for a plan")
    train_s, eval_s = _costs(root, cells)
    trained = sorted({c.method for c in cells if c.method not in REFERENCES})
    references = sorted({c.method for c in cells if c.method in REFERENCES})
    grid = f"{_count(len(trained), 'trained method')} incl. sft" + (f" + {', '.join(references)}" if references else "")
    lines.append(f"  {'seeds':>5}  {'examples needed':>15}  compute for {grid}")
    per_example = info.power_clusters / info.power_examples
    for k in seeds:
        if k == 1:
            lines.append(f"  {k:>5}  {'no marks':>15}  one seed cannot tell a method from its seed's luck")
            continue
        if spread.seeds_measured:
            needed, prefix = examples_needed(spread, mde, k, per_example, level, power), ""
        else:
            needed, prefix = examples_lower_bound(spread, mde, k, level, power), "≥ "
        if math.isinf(needed):
            lines.append(f"  {k:>5}  {'unreachable':>15}  training-seed variance alone exceeds the target")
            continue
        n = int(needed)
        note = f" (the test split has {test_size:,})" if test_size is not None and n > test_size else ""
        lines.append(f"  {k:>5}  {prefix + f'{n:,}':>15}  {_cost_text(train_s, eval_s, trained, references, n, k)}"
                     f"{note}")
    lines.append(f"  costs measured: {_measured(train_s, eval_s, trained)}")
    return "\n".join(lines)


def _costs(root: Path, cells: list[CellRecord]) -> tuple[dict[str, float], dict[str, float]]:
    """Per method: training seconds per cell (seconds per step × steps) and generation seconds per example."""
    train: dict[str, list[float]] = {}
    evaluation: dict[str, list[float]] = {}
    for cell in cells:
        costs = read_run_costs(root, cell)
        if cell.train_s_per_step is not None and costs.train_steps is not None:
            train.setdefault(cell.method, []).append(cell.train_s_per_step * costs.train_steps)
        if costs.eval_s_per_example is not None:
            evaluation.setdefault(cell.method, []).append(costs.eval_s_per_example)
    return ({m: statistics.fmean(v) for m, v in train.items()}, {m: statistics.fmean(v) for m, v in evaluation.items()})


def _cost_text(train_s: dict[str, float], eval_s: dict[str, float], trained: list[str], references: list[str],
               n: int, k: int) -> str:
    missing = [m for m in trained if m not in train_s or m not in eval_s] + [m for m in references if m not in eval_s]
    if missing:
        return f"unknown ({', '.join(missing)}: run.json records no training steps or generation time)"
    seconds = sum(k * (train_s[m] + n * eval_s[m]) for m in trained) + sum(n * eval_s[m] for m in references)
    return _duration(seconds)


def _measured(train_s: dict[str, float], eval_s: dict[str, float], trained: list[str]) -> str:
    parts = []
    if train_s:
        parts.append(f"training {_duration(statistics.fmean(train_s.values()))} per trained cell on average "
                     f"({', '.join(f'{m} {_duration(train_s[m])}' for m in trained if m in train_s)})")
    if eval_s:
        parts.append(f"generation {statistics.fmean(eval_s.values()):.2f} s per evaluated example on average")
    return "; ".join(parts) or "none recorded (run.json has no training steps or generation time)"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
