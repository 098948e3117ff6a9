"""Statistics over seeds: mean, sample standard deviation, Student-t 95% confidence interval.

Conventions for a single seed: the mean is the value, and the standard deviation and confidence interval are NaN
(undefined with ddof=1), never 0, so one seed never passes for a perfectly stable result. Rendered files show NaN
as ``nan`` in CSV and omit the ``±`` in Markdown.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from benchmark.store import CellRecord


@dataclass(frozen=True)
class SeedStats:
    mean: float
    std: float  # sample standard deviation (ddof=1); NaN for one seed
    ci95_low: float  # mean -/+ t_{0.975, n-1} * std / sqrt(n); NaN for one seed
    ci95_high: float
    n: int


@dataclass(frozen=True)
class SummaryRow:
    """One (task, pair, method, metric) over its complete seeds."""

    task: str
    pair: str
    method: str
    metric: str
    stats: SeedStats
    mean_wall_time_s: float  # over the seeds whose run.json records it; NaN when none does
    mean_train_s_per_step: float = math.nan  # likewise; NaN for cells that do not train
    mean_peak_memory_mb: float = math.nan  # likewise


def seed_stats(values: Sequence[float]) -> SeedStats:
    """Mean, sample std and two-sided 95% Student-t interval of ``values`` (at least one)."""
    if not values:
        raise ValueError("seed_stats needs at least one value")
    n = len(values)
    mean = statistics.fmean(values)
    if n == 1:
        return SeedStats(mean, math.nan, math.nan, math.nan, 1)
    std = statistics.stdev(values)
    half_width = t_quantile(0.975, n - 1) * std / math.sqrt(n)
    return SeedStats(mean, std, mean - half_width, mean + half_width, n)


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t with integer ``df`` degrees of freedom, to ~1e-12 relative.

    Inverts the exact closed-form CDF for integer df by bisection: no table, and no normal approximation for
    large df (at df=31 the normal quantile would already be off by 0.08).
    """
    if not 0.0 < q < 1.0 or df < 1:
        raise ValueError(f"t_quantile needs 0 < q < 1 and df >= 1, got q={q}, df={df}")
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    target = 2.0 * q - 1.0  # P(|T| <= t) at the q quantile
    low, high = 0.0, 1.0
    while _central_mass(high, df) < target:
        low, high = high, 2.0 * high
    while high - low > 1e-13 * high:
        middle = 0.5 * (low + high)
        if _central_mass(middle, df) < target:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def _central_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df``: Abramowitz & Stegun 26.7.3 (odd df) and 26.7.4 (even)."""
    theta = math.atan(t / math.sqrt(df))
    sin, cos = math.sin(theta), math.cos(theta)
    if df % 2 == 0:
        # sin(theta) * (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ... + cos^(df-2) term)
        term = total = 1.0
        for k in range(1, df // 2):
            term *= cos * cos * (2 * k - 1) / (2 * k)
            total += term
        return sin * total
    if df == 1:
        return 2.0 * theta / math.pi
    # 2/pi * (theta + sin(theta) * (cos + 2/3 cos^3 + ... + cos^(df-2) term))
    term = total = cos
    for k in range(1, (df - 1) // 2):
        term *= cos * cos * (2 * k) / (2 * k + 1)
        total += term
    return 2.0 / math.pi * (theta + sin * total)


COST_FIELDS = ("wall_time_s", "train_s_per_step", "peak_memory_mb")


def summarize(cells: Iterable[CellRecord]) -> list[SummaryRow]:
    """One row per (task, pair, method, metric), sorted by those keys as plain strings."""
    values: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    costs: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for cell in cells:
        for metric, value in cell.metrics.items():
            values[cell.task, cell.pair, cell.method, metric].append(value)
        for name in COST_FIELDS:
            if (cost := getattr(cell, name)) is not None:
                costs[cell.task, cell.pair, cell.method, name].append(cost)
    rows = []
    for (task, pair, method, metric), metric_values in sorted(values.items()):
        wall, step, memory = (_mean_or_nan(costs.get((task, pair, method, name))) for name in COST_FIELDS)
        rows.append(SummaryRow(task, pair, method, metric, seed_stats(metric_values), wall, step, memory))
    return rows


def _mean_or_nan(values: list[float] | None) -> float:
    return statistics.fmean(values) if values else math.nan
