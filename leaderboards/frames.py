"""Result stores as pandas DataFrames, for notebooks and for the CSV files."""
from __future__ import annotations

import os

import pandas as pd

from benchmark.store import StoreScan, scan_store
from leaderboards.tables import method_sort_key

CELL_COLUMNS = ("task", "pair", "method", "seed", "metric", "value", "headline", "config_hash", "wall_time_s",
                "train_s_per_step", "peak_memory_mb")


def load(runs_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Every complete cell of the result store under ``runs_dir``, one row per cell × metric.

    Columns: ``task``, ``pair``, ``method``, ``seed``, ``metric``, ``value`` (0-100, as in ``metrics.json``),
    ``headline`` (True for the task's headline metric), ``config_hash`` (the cell's resolved-config hash),
    ``wall_time_s``, ``train_s_per_step`` and ``peak_memory_mb`` (the cell's costs from ``run.json``; NaN where not
    recorded, and ``train_s_per_step`` NaN for the teacher and untrained rows, which do not train). Rows are sorted
    by task, pair, method (teacher, untrained, sft, then by name), seed and metric. Failed and unfinished cells are
    not included. For example, the mean headline score per method over seeds::

        frame = leaderboards.load("runs")
        frame[frame.headline].groupby(["task", "pair", "method"])["value"].mean()
    """
    return cells_frame(scan_store(runs_dir))


def cells_frame(scan: StoreScan) -> pd.DataFrame:
    rows = [
        (c.task, c.pair, c.method, c.seed, metric, value, metric == c.headline_metric, c.config_hash, c.wall_time_s,
         c.train_s_per_step, c.peak_memory_mb)
        for c in scan.cells
        for metric, value in c.metrics.items()
    ]
    frame = pd.DataFrame(rows, columns=list(CELL_COLUMNS)).astype(
        {"seed": "int64", "value": "float64", "headline": "bool", "wall_time_s": "float64",
         "train_s_per_step": "float64", "peak_memory_mb": "float64"}
    )
    return sort_rows(frame, ["task", "pair", "method", "seed", "metric"])


def sort_rows(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``frame`` sorted by ``keys``, methods in leaderboard order (teacher, untrained, sft, then by name)."""
    rank = frame["method"].map(lambda method: method_sort_key(method)[0])
    at = keys.index("method")
    ordered = frame.assign(_method_rank=rank).sort_values([*keys[:at], "_method_rank", *keys[at:]], kind="stable")
    return ordered.drop(columns="_method_rank").reset_index(drop=True)
