"""Render ``leaderboard.html``: the Markdown's tables as one self-contained page.

No network: the CSS, the sorting script and the drawings (inline SVG) are in the file, so it opens offline and
can be mailed or archived as is. Every table sorts by a click on a column header (numbers first from the
highest, text from A; missing values always last). Intervals are drawn as bars on one scale per table; below each
task's "vs SFT" table a forest plot draws the differences from sft (the untrained row, far off the scale of trained
methods, is left out of the plot; the table has it). Per task, the training curves (:mod:`leaderboards.curves_html`)
and the example browser (:mod:`leaderboards.browser`) follow the tables; each score links to its examples.
"""
from __future__ import annotations

import html
import json
import math
import re
from typing import Any

from benchmark.store import UNTRAINED
from leaderboards import browser, curves_html
from leaderboards.analysis import Comparison
from leaderboards.curves import PairCurves
from leaderboards.tables import Cell, Document, Section, Table

_BAR_WIDTH, _BAR_HEIGHT = 120, 10
_MARK_COLORS = {"better": "#1a7f37", "worse": "#cf222e", "n.d.": "#57606a", "": "#57606a"}

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 2rem auto;
       max-width: 78rem; padding: 0 1rem; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2.5rem; }
table { border-collapse: collapse; margin: .6rem 0 .4rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .55rem; white-space: nowrap; }
th { background: #f6f8fa; cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " ▲"; }
th[aria-sort="descending"]::after { content: " ▼"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
svg.bar { vertical-align: middle; margin-left: .5rem; }
.notes { font-size: 90%; color: #57606a; margin: 0 0 1rem; padding-left: 0; list-style: none; }
figure { margin: 1rem 0; }
figcaption { font-size: 90%; color: #57606a; }
code { background: #f6f8fa; padding: 0 .25rem; border-radius: 3px; }
td a { color: inherit; text-decoration: none; }
td a:hover { text-decoration: underline; }
.hint { font-size: 90%; color: #57606a; }
.problems { color: #cf222e; }
details.curve-pair > summary { cursor: pointer; font-weight: 600; margin: .4rem 0; }
.panels { display: flex; flex-wrap: wrap; gap: .5rem 1rem; }
figure.panel { margin: 0; }
figure.panel figcaption { max-width: 380px; white-space: normal; }
.key { margin-right: .7rem; display: inline-block; }
.controls label { margin-right: .8rem; }
table.examples td { white-space: normal; vertical-align: top; max-width: 22rem; }
table.examples th { cursor: default; }
table.examples .context { white-space: pre-wrap; font-size: 90%; color: #57606a; max-height: 14rem; overflow: auto; }
table.examples .score { font-size: 90%; color: #57606a; }
table.examples td.id { font-size: 85%; color: #57606a; }
"""

_SCRIPT = """
(function () {
  function key(cell) {
    var value = cell.getAttribute("data-sort");
    if (value === null || value === "") return null;
    var number = Number(value);
    return isNaN(number) ? value : number;
  }
  function sortBy(table, header, column) {
    var current = header.getAttribute("aria-sort");
    var ascending = current ? current === "descending" : header.getAttribute("data-type") !== "number";
    table.querySelectorAll("thead th").forEach(function (other) { other.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[column]), y = key(b.cells[column]);
      if (x === null || y === null) return (x === null) - (y === null) || a.dataset.order - b.dataset.order;
      var order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return (ascending ? order : -order) || a.dataset.order - b.dataset.order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row, i) { row.dataset.order = i; });
    table.querySelectorAll("thead th").forEach(function (header, column) {
      header.tabIndex = 0;
      header.addEventListener("click", function () { sortBy(table, header, column); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(table, header, column); }
      });
    });
  });
})();
"""


def leaderboard_html(document: Document, curves: tuple[PairCurves, ...] = (),
                     examples: dict[str, dict[str, Any]] | None = None) -> str:
    """The page; ``curves`` (:func:`leaderboards.curves.read_curves`) and ``examples``
    (:func:`leaderboards.browser.browser_data`) add each task's curves and example browser."""
    examples = examples or {}
    trained = sum(len(series.seeds) for c in curves for p in c.panels[:1] for series in p.series)
    inside = {task: curves_html.curves_html(task, [c for c in curves if c.task == task],
                                            trained <= curves_html.OPEN_UP_TO)
                    + (browser.browser_html(task, _slug(task)) if task in examples else [])
              for task in {section.title for section in document.sections}}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(document.title)}</title><style>{_STYLE}</style></head>",
        "<body>",
        f"<h1>{html.escape(document.title)}</h1>",
        *(f"<p>{_inline(paragraph)}</p>" for paragraph in document.intro),
    ]
    for section in document.sections:
        parts += _section(section, inside[section.title])
    for table in document.appendix:
        parts += [f"<h2>{html.escape(table.title)}</h2>", *_table(table)]
    data = json.dumps({"curves": curves_html.curves_json(curves), "examples": examples}, separators=(",", ":"),
                      ensure_ascii=False)
    parts += [f'<script type="application/json" id="ctkd-data">{_script_safe(data)}</script>',
              f"<script>{_SCRIPT}{curves_html.SCRIPT}{browser.SCRIPT}</script>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _script_safe(data: str) -> str:
    """JSON that cannot end its <script> element (a prediction may hold "</script>" or "<!--"): "<" occurs only
    inside JSON strings, where its escape reads the same."""
    return data.replace("<", "\\u003c")


def _section(section: Section, inside: list[str]) -> list[str]:
    parts = [f'<section id="{_slug(section.title)}">', f"<h2>{html.escape(section.title)}</h2>",
             f"<p>{_inline(section.lines[0])}</p>"]
    if section.lines[1:]:
        parts += ["<ul>", *(f"<li>{_inline(line)}</li>" for line in section.lines[1:]), "</ul>"]
    plotted = [c for c in section.comparisons if c.method != UNTRAINED and not math.isnan(c.p)]
    for table in section.tables:
        if table.title:
            parts.append(f"<h3>{html.escape(table.title)}</h3>")
        parts += _table(table, section.title if table.bars == "score" else None)
        if table.bars == "difference" and plotted:
            parts += _forest(section.title, plotted)
    return parts + inside + ["</section>"]


def _table(table: Table, link_task: str | None = None) -> list[str]:
    """``link_task``: the table is that task's score table (a method per row, a pair per column); each score links
    to its examples."""
    if not table.rows:
        return ["<p>None.</p>"]
    scale = _scale(table) if table.bars else None
    numeric_columns = [all(isinstance(row[j].sort, float | int) or row[j].sort is None for row in table.rows)
                       and any(row[j].sort is not None for row in table.rows) for j in range(len(table.header))]
    head = "".join(
        f'<th scope="col" data-type="{"number" if numeric_columns[j] else "text"}">{html.escape(name)}</th>'
        for j, name in enumerate(table.header)
    )
    parts = []
    if table.intro:
        parts.append(f"<p>{_inline(table.intro)}</p>")
    parts += [f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>']
    for row in table.rows:
        cells = "".join(_cell(cell, table.numeric and j >= table.label_columns, scale,
                              f"#examples/{link_task}/{table.header[j]}/{row[0].sort}"
                              if link_task and cell.interval else None)
                        for j, cell in enumerate(row))
        parts.append(f"<tr>{cells}</tr>")
    parts.append("</tbody></table>")
    if table.notes:
        parts += ['<ul class="notes">', *(f"<li>{_inline(note)}</li>" for note in table.notes), "</ul>"]
    return parts


def _cell(cell: Cell, numeric: bool, scale: tuple[float, float, bool] | None, link: str | None = None) -> str:
    attributes = ' class="num"' if numeric else ""
    if cell.sort is not None and not (isinstance(cell.sort, float) and math.isnan(cell.sort)):
        attributes += f' data-sort="{html.escape(str(cell.sort))}"'
    text = html.escape(cell.text)
    if cell.bold:
        text = f"<strong>{text}</strong>"
    if link:
        text = f'<a href="{html.escape(link)}" title="examples">{text}</a>'
    if cell.interval is not None and scale is not None:
        text += _bar(cell.interval, scale)
    return f"<td{attributes}>{text}</td>"


def _scale(table: Table) -> tuple[float, float, bool]:
    """(low, high, draw zero) of one table's bars: every interval of the table fits, zero too for differences."""
    values = [v for row in table.rows for cell in row if cell.interval for v in cell.interval if math.isfinite(v)]
    differences = table.bars == "difference"
    values += [0.0] if differences or not values else []
    low, high = min(values), max(values)
    pad = 0.05 * (high - low) or 1.0
    return low - pad, high + pad, differences


def _x(value: float, low: float, high: float, width: float) -> float:
    return (value - low) / (high - low) * width


def _bar(interval: tuple[float, float, float], scale: tuple[float, float, bool]) -> str:
    estimate, low, high = interval
    start, end, zero = scale
    if not all(math.isfinite(v) for v in interval):
        return ""
    x0, x1, xm = (_x(v, start, end, _BAR_WIDTH) for v in (low, high, estimate))
    mid = _BAR_HEIGHT / 2
    parts = [
        f'<svg class="bar" width="{_BAR_WIDTH}" height="{_BAR_HEIGHT}" viewBox="0 0 {_BAR_WIDTH} {_BAR_HEIGHT}" '
        f'role="img" aria-label="95 % interval {low:.1f} to {high:.1f}">',
        f'<line x1="0" y1="{mid}" x2="{_BAR_WIDTH}" y2="{mid}" stroke="#eaeef2" stroke-width="2"/>',
    ]
    if zero:
        xz = _x(0.0, start, end, _BAR_WIDTH)
        parts.append(f'<line x1="{xz:.2f}" y1="0" x2="{xz:.2f}" y2="{_BAR_HEIGHT}" stroke="#8c959f"/>')
    parts += [
        f'<rect x="{x0:.2f}" y="2" width="{max(x1 - x0, 1.0):.2f}" height="{_BAR_HEIGHT - 4}" fill="#54aeff"/>',
        f'<circle cx="{xm:.2f}" cy="{mid}" r="2.5" fill="#0550ae"/>',
        "</svg>",
    ]
    return "".join(parts)


def _forest(task: str, comparisons: list[Comparison]) -> list[str]:
    """Differences from sft with their intervals, one row per pair · method, coloured by mark."""
    labels = [f"{c.pair} · {c.method}" for c in comparisons]
    # Wide enough for the longest label at 12 px (0.62 em per character covers digits and lowercase sans-serif).
    label_width = max(120, math.ceil(max(len(label) for label in labels) * 12 * 0.62) + 16)
    plot_width, row_height, top = 460, 22, 24
    values = [0.0] + [v for c in comparisons for v in (c.ci_low, c.ci_high) if math.isfinite(v)]
    low, high = min(values), max(values)
    pad = 0.05 * (high - low) or 1.0
    low, high = low - pad, high + pad
    height = top + row_height * len(comparisons) + 28
    width = label_width + plot_width + 20

    def x(value: float) -> float:
        return label_width + _x(value, low, high, plot_width)

    parts = [
        f'<figure><svg class="forest" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="forest plot of differences from sft for {html.escape(task)}">',
        f'<line x1="{x(0):.2f}" y1="{top - 8}" x2="{x(0):.2f}" y2="{height - 24}" stroke="#8c959f" stroke-dasharray="3 3"/>',
    ]
    for i, c in enumerate(comparisons):
        y = top + row_height * i + row_height / 2
        color = _MARK_COLORS[c.mark]
        label = html.escape(labels[i])
        parts += [
            f'<g><title>{label}: {c.diff:+.2f} [{c.ci_low:+.2f}, {c.ci_high:+.2f}], {html.escape(c.mark)}</title>',
            f'<text x="{label_width - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="12">{label}</text>',
            f'<line x1="{x(c.ci_low):.2f}" y1="{y:.1f}" x2="{x(c.ci_high):.2f}" y2="{y:.1f}" stroke="{color}" '
            f'stroke-width="2"/>',
            f'<circle cx="{x(c.diff):.2f}" cy="{y:.1f}" r="4" fill="{color}"/></g>',
        ]
    axis_y = height - 24
    parts.append(f'<line x1="{label_width}" y1="{axis_y}" x2="{label_width + plot_width}" y2="{axis_y}" stroke="#57606a"/>')
    for tick in _ticks(low, high):
        parts.append(f'<text x="{x(tick):.2f}" y="{axis_y + 16}" text-anchor="middle" font-size="11">{tick:g}</text>')
    parts += [
        "</svg>",
        f"<figcaption>{html.escape(task)}: difference from sft in points with its 95 % interval; green better, red "
        "worse, grey not distinguishable after Holm or not marked (paired on one seed); dashed line: no difference.</figcaption></figure>",
    ]
    return parts


def _ticks(low: float, high: float) -> list[float]:
    """About five round tick values inside [low, high]."""
    raw = (high - low) / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), default=10 * magnitude)
    first = math.ceil(low / step)
    return [round(k * step, 10) for k in range(first, math.floor(high / step) + 1)]


def _inline(text: str) -> str:
    """The Markdown the tables' texts use (``code``, **bold**) as HTML; everything else escaped."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def _slug(text: str) -> str:
    return "task-" + re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
