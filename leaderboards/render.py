"""Render the leaderboard texts: ``leaderboard.csv`` (long), ``summary.csv``, ``vs_sft.csv`` and ``leaderboard.md``.

Pure functions from records to text; writing files is :func:`leaderboards.render_leaderboards`' job. CSVs hold
raw, unrounded floats (``nan`` where undefined) and are written by pandas; only the Markdown rounds. What the
Markdown shows, and why, is decided in :mod:`leaderboards.tables`.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from benchmark.store import StoreScan
from leaderboards.analysis import Analysis
from leaderboards.frames import cells_frame, sort_rows
from leaderboards.tables import Document, Table


def leaderboard_csv(scan: StoreScan) -> str:
    """Long format: one row per complete cell and metric, with its config hash and costs (:func:`leaderboards.load`)."""
    return _csv(cells_frame(scan))


def summary_csv(analysis: Analysis) -> str:
    """One row per task, pair, method and metric: mean, interval, spread over seeds, sizes, rank range, costs."""
    frame = pd.DataFrame([dataclasses.asdict(c) for c in analysis.cells], columns=[
        "task", "pair", "method", "metric", "mean", "ci_low", "ci_high", "seed_std", "n_seeds", "n_examples",
        "n_clusters", "rank", "rank_low", "rank_high", "mean_wall_time_s", "mean_train_s_per_step",
        "mean_peak_memory_mb", "mean_cpu_time_s",
    ])
    frame[["rank", "rank_low", "rank_high"]] = frame[["rank", "rank_low", "rank_high"]].astype("Int64")
    return _csv(_with_config(_sorted(frame), analysis))


def vs_sft_csv(analysis: Analysis) -> str:
    """One row per comparison with sft (headline metric): difference, interval, p before and after Holm, mark,
    examples predicted as sft did (``identical``; ``agreement``: the interval is the agreement bound's) and gap
    share; ``seeds`` lists the paired sft seeds, space-separated."""
    rows = [{**dataclasses.asdict(c), "seeds": " ".join(map(str, c.seeds))} for c in analysis.comparisons]
    frame = pd.DataFrame(rows, columns=[
        "task", "pair", "method", "seeds", "n_examples", "n_clusters", "diff", "ci_low", "ci_high", "p", "p_holm",
        "mark", "identical", "agreement", "gap", "gap_low", "gap_high", "gap_note",
    ])
    frame.insert(frame.columns.get_loc("p_holm") + 1, "holm_family_size", analysis.family_size)
    return _csv(_with_config(_sorted(frame), analysis))


def _with_config(frame: pd.DataFrame, analysis: Analysis) -> pd.DataFrame:
    """Every resampled number carries the resampling that produced it."""
    config = analysis.config
    return frame.assign(ci_level=config.level, bootstrap_resamples=config.resamples, bootstrap_seed=config.seed)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return sort_rows(frame, [key for key in ("task", "pair", "method", "metric") if key in frame.columns])


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n", na_rep="nan")


def markdown(document: Document) -> str:
    lines = [f"# {document.title}"]
    for paragraph in document.intro:
        lines += ["", paragraph]
    for section in document.sections:
        lines += ["", f"## {_md(section.title)}", "", section.lines[0], ""]
        lines += [f"- {line}" for line in section.lines[1:]]
        for table in section.tables:
            lines += _md_table_block(table, "###")
    for table in document.appendix:
        lines += _md_table_block(table, "##")
    return "\n".join(lines) + "\n"


def _md_table_block(table: Table, level: str) -> list[str]:
    lines = [""]
    if table.title:
        lines += [f"{level} {_md(table.title)}", ""]
    if table.intro:
        lines += [table.intro, ""]
    if not table.rows:
        return lines + ["None."]
    align = ["---"] * table.label_columns + [("---:" if table.numeric else "---")] * (len(table.header) - table.label_columns)
    lines += [_md_row(table.header), "| " + " | ".join(align) + " |"]
    lines += [_md_row(f"**{c.text}**" if c.bold else c.text for c in row) for row in table.rows]
    return lines + ([""] + list(table.notes) if table.notes else [])


def _md_row(cells) -> str:
    return "| " + " | ".join(_md(c) for c in cells) + " |"


def _md(text: str) -> str:
    """Keep free text (names, failure reasons) from breaking a table row."""
    return " ".join(text.split()).replace("|", "\\|")
