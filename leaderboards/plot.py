"""Render ``leaderboard.png`` (one subplot per task, pairs on x, a bar per student method) and
``leaderboard_curves.png`` (per task × pair, a row of the shared training-curve panels of :mod:`leaderboards.curves`).

Bars are headline-metric means with their 95 % bootstrap intervals as error bars (the intervals of the Markdown
tables). The teacher and the untrained student are references, not competitors: each is a short horizontal line
over its pair's bar group with its interval as a light band, which reads the same with one pair or many. Figures
are built on ``matplotlib.figure.Figure`` (Agg canvas) rather than pyplot, so rendering never touches global
backend state.
"""
from __future__ import annotations

import io
from collections import defaultdict

import matplotlib
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from benchmark.store import TEACHER, UNTRAINED, StoreScan
from leaderboards.analysis import Analysis, CellStats
from leaderboards.curves import SHARED_PANELS, PairCurves, Panel
from leaderboards.tables import ordered_methods

_REFERENCE_STYLE = {
    TEACHER: {"color": "black", "linestyles": "--", "linewidth": 1.8},
    UNTRAINED: {"color": "dimgray", "linestyles": ":", "linewidth": 1.8},
}
_GROUP_WIDTH = 0.8  # of the unit spacing between pairs
_MAX_BAR_WIDTH = 0.25  # so one or two methods do not give slabs


def leaderboard_png(scan: StoreScan, analysis: Analysis) -> bytes:
    """The PNG bytes; a store without complete cells gives a figure that says so."""
    table: dict[str, dict[tuple[str, str], CellStats]] = defaultdict(dict)
    for stats in analysis.cells:
        if stats.metric == scan.headline_metrics.get(stats.task):
            table[stats.task][stats.pair, stats.method] = stats
    students = [m for m in ordered_methods(m for s in table.values() for _, m in s) if m not in _REFERENCE_STYLE]
    # One colour per method across all tasks, so a method is recognisable from subplot to subplot.
    palette = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {m: palette[i % len(palette)] for i, m in enumerate(students)}
    most_pairs = max((len({p for p, _ in s}) for s in table.values()), default=1)
    figure = Figure(figsize=(max(6.0, 1.5 * most_pairs + 3.5), 3.8 * max(1, len(table))), layout="constrained")
    if table:
        axes = figure.subplots(len(table), 1, squeeze=False)[:, 0]
        for ax, task in zip(axes, sorted(table)):
            _task_axes(ax, task, scan.headline_metrics[task], table[task], colors)
    else:
        figure.text(0.5, 0.5, f"no completed cells under {scan.root}", ha="center", va="center")
    return _png(figure)


def curves_png(scan: StoreScan, curves: tuple[PairCurves, ...]) -> bytes:
    """The PNG bytes: one row per task × pair, one column per shared panel; seeds thin, their mean thick. A store
    without training logs gives a figure that says so; a pair's first title counts its cells without a readable log
    (the page names them). Lines are drawn as one collection per axes and the grid is laid out by hand: a store of
    a thousand cells gives thousands of lines, which matplotlib's per-line artists and constrained layout take
    minutes over."""
    columns, rows = len(SHARED_PANELS), max(1, len(curves))
    figure = Figure(figsize=(4.6 * columns, 3.3 * rows))
    if curves:
        figure.subplots_adjust(left=0.06, right=0.98, bottom=0.6 / (3.3 * rows), top=1 - 0.9 / (3.3 * rows),
                               wspace=0.25, hspace=0.55)
        axes = figure.subplots(rows, columns, squeeze=False)
        for row, pair in zip(axes, curves):
            shared = {panel.title: panel for panel in pair.panels if panel.shared}
            missing = f" ({len(pair.problems)} cells without a readable log)" if pair.problems else ""
            for column, (ax, (_, title)) in enumerate(zip(row, SHARED_PANELS)):
                _curve_axes(ax, f"{pair.task} · {pair.pair}: {title}{missing if column == 0 else ''}",
                            shared.get(title))
        # One legend for the figure: a method has one colour in every panel (:func:`leaderboards.curves.method_colors`).
        named = {s.name: s.color for pair in curves for panel in pair.panels if panel.shared for s in panel.series}
        figure.legend(handles=[Line2D([], [], color=color, label=name) for name, color in named.items()],
                      loc="upper center", ncols=min(len(named), 8), fontsize="small", frameon=False)
    else:
        figure.text(0.5, 0.5, f"no training logs under {scan.root}", ha="center", va="center")
    return _png(figure, dpi=80)


def _curve_axes(ax: Axes, title: str, panel: Panel | None) -> None:
    ax.set_title(title, fontsize="small")
    ax.set_xlabel("optimizer step", fontsize="small")
    ax.grid(alpha=0.3)
    if panel is None:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        return
    thin, thick = [], []
    for series in panel.series:
        many = len(series.seeds) > 1
        for _, line in series.seeds:
            (thin if many else thick).append((list(zip(line.steps, line.values)), series.color))
        if many:
            thick.append((list(zip(series.mean.steps, series.mean.values)), series.color))
    for lines, width, alpha in ((thin, 0.8, 0.35), (thick, 1.8, 1.0)):
        if lines:
            ax.add_collection(LineCollection([points for points, _ in lines], colors=[c for _, c in lines],
                                             linewidths=width, alpha=alpha))
    ax.autoscale_view()


def _png(figure: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    # No "Software" metadata: the bytes depend on the data, not on the matplotlib version.
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def _task_axes(ax: Axes, task: str, metric: str, scores: dict[tuple[str, str], CellStats], colors: dict[str, str]) -> None:
    pairs = sorted({pair for pair, _ in scores})
    methods = [m for m in ordered_methods(m for _, m in scores) if m in colors]
    width = min(_MAX_BAR_WIDTH, _GROUP_WIDTH / max(1, len(methods)))
    for i, method in enumerate(methods):
        offset = width * (i + 0.5 - len(methods) / 2)
        present = [(x + offset, scores[pair, method]) for x, pair in enumerate(pairs) if (pair, method) in scores]
        xs, stats = [x for x, _ in present], [s for _, s in present]
        ax.bar(xs, [s.mean for s in stats], width, color=colors[method], label=method)
        errors = [[s.mean - s.ci_low for s in stats], [s.ci_high - s.mean for s in stats]]
        ax.errorbar(xs, [s.mean for s in stats], yerr=errors, fmt="none", ecolor="black", capsize=3, linewidth=1)
    for reference, style in _REFERENCE_STYLE.items():
        present = [(x, scores[pair, reference]) for x, pair in enumerate(pairs) if (pair, reference) in scores]
        for x, stats in present:
            ax.fill_between([x - 0.45, x + 0.45], stats.ci_low, stats.ci_high, color=style["color"], alpha=0.1,
                            linewidth=0)
        if present:
            ax.hlines([s.mean for _, s in present], [x - 0.45 for x, _ in present], [x + 0.45 for x, _ in present],
                      label=reference, **style)
    ax.set_xticks(range(len(pairs)), pairs, rotation=15, ha="right")
    ax.set_xlim(-0.6, len(pairs) - 0.4)
    ax.set_title(task)
    ax.set_ylabel(f"{metric} (mean, 95 % interval)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
