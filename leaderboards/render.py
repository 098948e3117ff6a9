"""Render the leaderboard texts: ``leaderboard.csv`` (long), ``summary.csv`` and ``leaderboard.md``.

Pure functions from records to text; writing files is :func:`leaderboards.render_leaderboards`' job. CSVs hold
raw, unrounded floats (``nan`` where undefined); only the Markdown rounds.

Markdown choices:
- Rows: teacher, untrained, sft, then the other methods by name. Name order (not score order) keeps a method on
  the same row in every task, and a single "by mean" order does not exist when a table has several pairs.
- Bold: the best mean per pair among student methods (ties all bold). The teacher is a reference, not a
  competitor, so it is never bold, even when it scores below a student. "Best" follows the direction the
  task's headline metric declares (higher for F1, EM and ROUGE).
- "vs SFT" table, one per task that has an ``sft`` row: a cell reads ``gain (gap closed)`` with
  gain = method - sft in points and gap closed = (method - sft) / (teacher - sft), defined only when the teacher
  scores above sft; one column per pair keeps it
  as wide as the score table. Undefined values (no sft or teacher cell, teacher == sft) show as ``–``.
- "cost" table, one per task: seconds per training step, cell wall time and peak memory, so that a score is
  always read beside what it cost.
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from typing import Iterable, Sequence

from leaderboards.aggregate import SeedStats, SummaryRow
from benchmark.store import SFT, TEACHER, UNTRAINED, CellRecord, StoreScan

MISSING = "–"
_BASELINES = (TEACHER, UNTRAINED, SFT)


def method_sort_key(method: str) -> tuple[int, str]:
    """Baselines first (teacher, untrained, sft), then the other methods by name."""
    return (_BASELINES.index(method), "") if method in _BASELINES else (len(_BASELINES), method)


def ordered_methods(methods: Iterable[str]) -> list[str]:
    return sorted(set(methods), key=method_sort_key)


def leaderboard_csv(cells: Iterable[CellRecord]) -> str:
    """Long format: one row per complete cell and metric."""
    rows = [
        (c.task, c.pair, c.method, c.seed, metric, value, c.config_hash)
        for c in cells
        for metric, value in c.metrics.items()
    ]
    rows.sort(key=lambda r: (r[0], r[1], method_sort_key(r[2]), r[3], r[4]))
    return _csv(("task", "pair", "method", "seed", "metric", "value", "config_hash"), rows)


def summary_csv(rows: Iterable[SummaryRow]) -> str:
    """One row per task, pair, method and metric, with the statistics over seeds."""
    header = ("task", "pair", "method", "metric", "mean", "std", "ci95_low", "ci95_high", "n_seeds", "mean_wall_time_s",
              "mean_train_s_per_step", "mean_peak_memory_mb")
    ordered = sorted(rows, key=lambda r: (r.task, r.pair, method_sort_key(r.method), r.metric))
    return _csv(header, [
        (r.task, r.pair, r.method, r.metric, r.stats.mean, r.stats.std, r.stats.ci95_low, r.stats.ci95_high,
         r.stats.n, r.mean_wall_time_s, r.mean_train_s_per_step, r.mean_peak_memory_mb)
        for r in ordered
    ])


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)  # floats go through repr: raw, round-trippable
    return buffer.getvalue()


def headline_rows(scan: StoreScan, rows: Iterable[SummaryRow]) -> dict[str, dict[tuple[str, str], SummaryRow]]:
    """task -> (pair, method) -> the summary row of the task's headline metric."""
    table: dict[str, dict[tuple[str, str], SummaryRow]] = defaultdict(dict)
    for row in rows:
        if row.metric == scan.headline_metrics.get(row.task):
            table[row.task][row.pair, row.method] = row
    return dict(table)


def headline_table(scan: StoreScan, rows: Iterable[SummaryRow]) -> dict[str, dict[tuple[str, str], SeedStats]]:
    """task -> (pair, method) -> statistics of the task's headline metric."""
    return {task: {key: row.stats for key, row in cells.items()} for task, cells in headline_rows(scan, rows).items()}


def leaderboard_markdown(scan: StoreScan, rows: Iterable[SummaryRow]) -> str:
    table = headline_rows(scan, rows)
    lines = [
        "# CTKD-Bench leaderboard",
        "",
        "Each cell is the mean over seeds of the task's headline metric (0–100, higher is better), ± the sample "
        "standard deviation (ddof=1) when the cell has more than one seed; – marks a missing cell. **Bold** marks "
        "the best student method per pair; the teacher is a reference and is never bold. Means, standard deviations "
        "and 95% confidence intervals of every metric are in `summary.csv`.",
    ]
    for task, cells in table.items():
        lines += _task_section(task, scan.headline_metrics[task], cells, scan.higher_is_better(task))
    lines += _failed_section(scan)
    lines += _damaged_section(scan)
    lines += _skipped_section(scan)
    return "\n".join(lines) + "\n"


def _task_section(task: str, metric: str, cells: dict[tuple[str, str], SummaryRow], higher_is_better: bool) -> list[str]:
    scores = {key: row.stats for key, row in cells.items()}
    pairs = sorted({pair for pair, _ in scores})
    methods = ordered_methods(method for _, method in scores)
    seed_counts = sorted({stats.n for stats in scores.values()})
    seeds = str(seed_counts[0]) if len(seed_counts) == 1 else f"{seed_counts[0]}–{seed_counts[-1]}"
    best = {pair: _best_student_mean(pair, methods, scores, higher_is_better) for pair in pairs}
    body = []
    for method in methods:
        row_cells = []
        for pair in pairs:
            stats = scores.get((pair, method))
            text = MISSING if stats is None else _format_score(stats)
            bold = stats is not None and method != TEACHER and stats.mean == best[pair]
            row_cells.append(f"**{text}**" if bold else text)
        body.append([method, *row_cells])
    lines = ["", f"## {_md(task)}", "", f"Headline metric: `{metric}`; seeds per cell: {seeds}.", ""]
    lines += _md_table(["method", *pairs], body)
    if SFT in methods:
        lines += _vs_sft_section(task, pairs, methods, scores)
    return lines + _cost_section(task, pairs, methods, cells)


def _cost_section(task: str, pairs: list[str], methods: list[str], cells: dict[tuple[str, str], SummaryRow]) -> list[str]:
    body = [[method, *(_cost_cell(cells.get((pair, method))) for pair in pairs)] for method in methods]
    lines = [
        "",
        f"### {_md(task)} — cost",
        "",
        "Training seconds per optimizer step, the cell's wall time (teacher-cache building, training and evaluation) "
        "and its peak memory (GPU allocated or CPU resident, see `run.json`), means over seeds.",
        "",
    ]
    return lines + _md_table(["method", *pairs], body)


def _cost_cell(row: SummaryRow | None) -> str:
    if row is None:
        return MISSING
    values = (row.mean_train_s_per_step, row.mean_wall_time_s / 60, row.mean_peak_memory_mb / 1024)
    if all(math.isnan(v) for v in values):
        return MISSING
    return " · ".join(MISSING if math.isnan(v) else f"{v:.{digits}f} {unit}"
                      for v, (digits, unit) in zip(values, ((2, "s/step"), (1, "min"), (1, "GiB"))))


def _best_student_mean(pair: str, methods: list[str], scores: dict[tuple[str, str], SeedStats],
                       higher_is_better: bool) -> float | None:
    means = [scores[pair, m].mean for m in methods if m != TEACHER and (pair, m) in scores]
    return (max if higher_is_better else min)(means) if means else None


def _format_score(stats: SeedStats) -> str:
    return f"{stats.mean:.2f}" if stats.n == 1 else f"{stats.mean:.2f} ± {stats.std:.2f}"


def _vs_sft_section(
    task: str, pairs: list[str], methods: list[str], scores: dict[tuple[str, str], SeedStats]
) -> list[str]:
    body = []
    for method in methods:
        if method in (TEACHER, SFT):
            continue
        body.append([method, *(_vs_sft_cell(scores, pair, method) for pair in pairs)])
    lines = [
        "",
        f"### {_md(task)} — vs SFT",
        "",
        "Gain over sft in points, and in brackets the share of the teacher–sft gap closed, "
        "(method − sft) / (teacher − sft); – where the teacher does not score above sft (no gap to close).",
        "",
    ]
    return lines + _md_table(["method", *pairs], body)


def _vs_sft_cell(scores: dict[tuple[str, str], SeedStats], pair: str, method: str) -> str:
    own, sft, teacher = (scores.get((pair, m)) for m in (method, SFT, TEACHER))
    if own is None or sft is None:
        return MISSING
    gain = own.mean - sft.mean
    gap = None if teacher is None else teacher.mean - sft.mean
    # Only a teacher above sft leaves a gap to close; a ratio over a zero or negative gap means nothing.
    share = f"{gain / gap:.1%}" if gap is not None and gap > 0 else MISSING
    return f"{gain:+.2f} ({share})"


def _failed_section(scan: StoreScan) -> list[str]:
    lines = ["", "## Failed cells", ""]
    if not scan.failed:
        return lines + ["None."]
    body = [[f.task, f.pair, f.method, str(f.seed), f.reason] for f in scan.failed]
    return lines + _md_table(["task", "pair", "method", "seed", "reason"], body, numeric=False)


def _damaged_section(scan: StoreScan) -> list[str]:
    """Finished cells whose files cannot be trusted (left out of every table above); a run re-runs them."""
    if not scan.damaged:
        return []
    lines = ["", "## Damaged cells", "", "Left out of the tables above; the next run of the grid re-runs them.", ""]
    return lines + _md_table(["cell", "problem"], [[d.where, d.reason] for d in scan.damaged], numeric=False)


def _skipped_section(scan: StoreScan) -> list[str]:
    lines = ["", "## Skipped pairs", ""]
    if not scan.skipped:
        return lines + ["None."]
    return lines + _md_table(["pair", "reason"], [[s.pair, s.reason] for s in scan.skipped], numeric=False)


def _md_table(header: list[str], body: list[list[str]], *, numeric: bool = True) -> list[str]:
    """A pipe table; with ``numeric`` every column after the first is right-aligned."""
    align = ["---"] + [("---:" if numeric else "---")] * (len(header) - 1)
    return [_md_row(header), _md_row(align, escape=False), *(_md_row(row) for row in body)]


def _md_row(cells: list[str], *, escape: bool = True) -> str:
    return "| " + " | ".join(_md(c) if escape else c for c in cells) + " |"


def _md(text: str) -> str:
    """Keep free text (names, failure reasons) from breaking a table row."""
    return " ".join(text.split()).replace("|", "\\|")
