"""Leaderboards: read a result store and render CSV, Markdown and PNG tables; never trains or evaluates."""
from __future__ import annotations

import os
from pathlib import Path

from benchmark.files import write_atomic
from leaderboards.aggregate import summarize
from leaderboards.plot import leaderboard_png
from leaderboards.render import leaderboard_csv, leaderboard_markdown, summary_csv
from benchmark.store import scan_store

__all__ = ["render_leaderboards"]


def render_leaderboards(
    runs_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None
) -> dict[str, Path]:
    """Write leaderboard.csv, summary.csv, leaderboard.md and leaderboard.png; return their paths by file name.

    ``out_dir`` defaults to ``runs_dir``. A store with failed cells or skipped pairs but no complete cell still
    renders (its Markdown lists the failures); a store with nothing at all is a ValueError.
    """
    scan = scan_store(runs_dir)
    if not (scan.cells or scan.failed or scan.skipped or scan.damaged):
        raise ValueError(f"no completed cells under {scan.root} (and no failed cells or skipped pairs to report)")
    rows = summarize(scan.cells)
    outputs = {
        "leaderboard.csv": leaderboard_csv(scan.cells).encode("utf-8"),
        "summary.csv": summary_csv(rows).encode("utf-8"),
        "leaderboard.md": leaderboard_markdown(scan, rows).encode("utf-8"),
        "leaderboard.png": leaderboard_png(scan, rows),
    }
    out = Path(runs_dir if out_dir is None else out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, data in outputs.items():
        written[name] = out / name
        write_atomic(written[name], data)
    return written
