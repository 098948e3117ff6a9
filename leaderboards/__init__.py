"""Leaderboards: read a result store and render CSV, Markdown, HTML and PNG; never trains or evaluates.

``load(runs_dir)`` gives the store as a pandas DataFrame (one row per cell × metric) for notebooks.
"""
from __future__ import annotations

import os
from pathlib import Path

from benchmark.core.files import write_atomic
from leaderboards.analysis import analyze
from leaderboards.browser import browser_data
from leaderboards.frames import load
from leaderboards.html import leaderboard_html
from leaderboards.plot import curves_png, leaderboard_png
from leaderboards.reading import read_store
from leaderboards.render import leaderboard_csv, markdown, summary_csv, vs_sft_csv
from leaderboards.stats import BootstrapConfig
from leaderboards.tables import build_document

__all__ = ["BootstrapConfig", "load", "render_leaderboards"]


def render_leaderboards(
    runs_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    config: BootstrapConfig = BootstrapConfig(),
) -> dict[str, Path]:
    """Write leaderboard.csv, summary.csv, vs_sft.csv, leaderboard.md, leaderboard.html, leaderboard.png and
    leaderboard_curves.png; return their paths by file name. The store is read once (:func:`read_store`).

    ``out_dir`` defaults to ``runs_dir``. A store's ``reading.md`` (a committed campaign's conclusions in words)
    opens its ``leaderboard.md``, above the tables. A store with failed cells or skipped pairs but no complete cell still
    renders (its Markdown lists the failures); a store with nothing at all is a ValueError. The same store and
    ``config`` always give byte-identical files (fixed resampling seed).
    """
    data = read_store(runs_dir)
    scan = data.scan
    if not (scan.cells or scan.failed or scan.skipped or scan.damaged):
        raise ValueError(f"no completed cells under {scan.root} (and no failed cells or skipped pairs to report)")
    analysis = analyze(scan, config, {key: (data.scores[key], data.texts[key]) for key in data.scores})
    document = build_document(scan, analysis)
    outputs = {
        "leaderboard.csv": leaderboard_csv(scan),
        "summary.csv": summary_csv(analysis),
        "vs_sft.csv": vs_sft_csv(analysis),
        "leaderboard.md": (data.reading.rstrip("\n") + "\n\n" if data.reading else "") + markdown(document),
        "leaderboard.html": leaderboard_html(document, data.curves, browser_data(data)),
        "leaderboard.png": leaderboard_png(scan, analysis),
        "leaderboard_curves.png": curves_png(scan, data.curves),
    }
    out = Path(runs_dir if out_dir is None else out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, data in outputs.items():
        written[name] = out / name
        write_atomic(written[name], data)
    return written
