"""The leaderboard as a document of tables, built once and written as Markdown (:mod:`leaderboards.render`) and as
a page (:mod:`leaderboards.html`), so both always show the same numbers.

Choices:
- Rows: teacher, untrained, sft, then the other methods by name. Name order (not score order) keeps a method on
  the same row in every task, and a single "by mean" order does not exist when a table has several pairs.
- Bold: the best mean per pair among student rows, in the direction the metric declares, only when one row holds
  it (a tie is no winner: often the tied rows made the same predictions). The teacher is a reference, not a
  competitor, so it is never bold and has no rank. Higher is better for every metric the suite reports (F1, EM,
  ROUGE).
- A cell reads ``mean [low, high]``: the 95 % interval of :mod:`leaderboards.stats`, one decimal (the intervals
  of any store this suite produces are wider than a tenth of a point).
- "vs SFT" lists every comparison with its pair, so a row carries its difference, interval, corrected p, mark and
  gap share side by side. Every ``–`` there has a numbered footnote saying why.
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping

from benchmark.store import SFT, TEACHER, StoreScan
from leaderboards.analysis import REFERENCES, Analysis, CellStats, Comparison, TableInfo

MISSING = "–"
_BASELINES = (*REFERENCES, SFT)
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def method_sort_key(method: str) -> tuple[int, str]:
    """Baselines first (teacher, untrained, sft), then the other methods by name."""
    return (_BASELINES.index(method), "") if method in _BASELINES else (len(_BASELINES), method)


def ordered_methods(methods: Iterable[str]) -> list[str]:
    return sorted(set(methods), key=method_sort_key)


@dataclass(frozen=True)
class Cell:
    text: str
    sort: float | str | None = None  # what the page sorts the column by; None sorts last
    interval: tuple[float, float, float] | None = None  # (estimate, low, high), drawn as a bar on the page
    bold: bool = False


@dataclass(frozen=True)
class Table:
    title: str  # "" for a section's first table, which its section's heading introduces
    intro: str
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    notes: tuple[str, ...] = ()
    numeric: bool = True  # right-align every column after the first ``label_columns``
    label_columns: int = 1
    bars: Literal["score", "difference", None] = None  # how interval cells are drawn on the page


@dataclass(frozen=True)
class Section:
    title: str
    lines: tuple[str, ...]
    tables: tuple[Table, ...]
    comparisons: tuple[Comparison, ...] = ()  # drawn as a forest plot on the page


@dataclass(frozen=True)
class Document:
    title: str
    intro: tuple[str, ...]
    sections: tuple[Section, ...]
    appendix: tuple[Table, ...] = field(default=())


def build_document(scan: StoreScan, analysis: Analysis) -> Document:
    cells: dict[str, dict[tuple[str, str], CellStats]] = defaultdict(dict)
    for stats in analysis.cells:
        if stats.metric == scan.headline_metrics.get(stats.task):
            cells[stats.task][stats.pair, stats.method] = stats
    comparisons: dict[str, list[Comparison]] = defaultdict(list)
    for comparison in analysis.comparisons:
        comparisons[comparison.task].append(comparison)
    infos: dict[str, list[TableInfo]] = defaultdict(list)
    for info in analysis.tables:
        infos[info.task].append(info)
    sections = tuple(
        _task_section(task, scan.headline_metrics[task], cells[task], comparisons[task], infos[task], analysis,
                      scan.changed_configs(task), scan.overlaps(task), scan.pair_labels(task))
        for task in sorted(cells)
    )
    appendix = (_failed(scan), *((_damaged(scan),) if scan.damaged else ()), _skipped(scan))
    return Document("CTKD-Bench leaderboard", (*_intro(analysis), *_store_cost(scan)), sections, appendix)


def _store_cost(scan: StoreScan) -> tuple[str, ...]:
    """The whole store's cost in one line: CPU-hours and wall hours summed over its complete cells, and the CPUs."""
    if not scan.cells:
        return ()
    cpu = [c.cpu_time_s for c in scan.cells if c.cpu_time_s is not None]
    wall = [c.wall_time_s for c in scan.cells if c.wall_time_s is not None]
    machines = sorted({c.cpu for c in scan.cells if c.cpu})
    unrecorded = len(scan.cells) - len(cpu)
    return (f"Cost of the {len(scan.cells)} complete cells: {sum(cpu) / 3600:.2f} CPU-hours"
            + (f" ({unrecorded} cells do not record CPU time)" if unrecorded else "")
            + f", {sum(wall) / 3600:.2f} hours of wall time"
            + (f"; CPU: {' / '.join(machines)}" if machines else "") + ".",)


def _intro(analysis: Analysis) -> tuple[str, ...]:
    config = analysis.config
    level = f"{config.level:.0%}".replace("%", " %")
    lines = [
        f"Each cell is the task's headline metric (0–100, higher is better) averaged over evaluation examples and "
        f"seeds, with its {level} bootstrap interval in brackets; – marks a missing cell. **Bold** marks the best "
        f"student method per pair; the teacher is a reference and is never bold. Intervals resample clusters of "
        f"examples that share a source (and seeds, where a cell has several); \"vs SFT\" compares each method with "
        f"sft on the same examples and seeds. How to read intervals, marks, the power line and rank ranges: "
        f"`docs/statistics.md`. Every metric's interval is in `summary.csv`, every comparison in `vs_sft.csv`.",
        f"Bootstrap: {config.resamples:,} resamples, seed {config.seed}. Holm family: the "
        f"{analysis.family_size} comparisons with sft in this leaderboard paired on two or more seeds (every task, "
        f"pair and method, headline metric), corrected together at α = {config.alpha:.2g}; a comparison on one "
        f"seed gets no mark.",
    ]
    if not analysis.family_size and analysis.testable:
        lines[1] = (f"Bootstrap: {config.resamples:,} resamples, seed {config.seed}. No better/worse marks: every "
                    f"comparison with sft is paired on one seed, which cannot tell a method from its training "
                    f"seed's luck; run two or more seeds (`--seeds 1 2 3`).")
    smallest_p = 2 / (config.resamples + 1)
    if analysis.family_size and smallest_p * analysis.family_size >= config.alpha:
        lines.append(
            f"With {config.resamples:,} resamples no p-value is below {smallest_p:.1g}, so among "
            f"{analysis.family_size} comparisons Holm's first threshold ({config.alpha / analysis.family_size:.1g}) "
            f"cannot be met: every mark reads n.d. Render with more resamples."
        )
    return tuple(lines)


def _task_section(
    task: str,
    metric: str,
    cells: dict[tuple[str, str], CellStats],
    comparisons: list[Comparison],
    infos: list[TableInfo],
    analysis: Analysis,
    changed: dict[str, list[str]],
    overlaps: dict[str, tuple[float | None, float | None]],
    labels: Mapping[str, str] | None = None,
) -> Section:
    """``labels``: pair -> its column header and row label (the name, or the name with its prompt protocol)."""
    pairs = sorted({pair for pair, _ in cells})
    methods = ordered_methods(method for _, method in cells)
    seed_counts = sorted({stats.n_seeds for stats in cells.values()})
    seeds = str(seed_counts[0]) if len(seed_counts) == 1 else f"{seed_counts[0]}–{seed_counts[-1]}"
    lines = [f"Headline metric: `{metric}`; seeds per cell: {seeds}."]
    if seed_counts[-1] == 1:
        lines[0] += " One seed: the intervals cover the sampling of evaluation examples, not training-seed variance."
    if any(c.one_seed for c in comparisons) or not all(info.rank_ranges for info in infos):
        lines[0] += (" A comparison paired on one seed gets no better/worse mark and a table with a one-seed trained "
                     "row no rank ranges: one training run cannot tell a method from its seed's luck; a second seed "
                     "is needed.")
    lines += [_table_line(info, analysis) for info in infos]
    lines += [f"{info.pair}: identical predictions on every example{'' if info.power_seeds < 2 else ' and seed'}: "
              + "; ".join(sorted((" = ".join(ordered_methods(group)) for group in info.identical_groups),
                                 key=lambda text: method_sort_key(text.split(" = ")[0]))) + "."
              for info in infos if info.identical_groups]
    lines += [_overlap_line(pair, *values) for pair, values in overlaps.items()]
    if changed:
        lines.append("Trained with settings other than the method's defaults: "
                     + "; ".join(f"{method}: {' | '.join(variants)}" for method, variants in sorted(changed.items()))
                     + ".")
    labels = labels or {}
    header = ("method", *(labels.get(pair, pair) for pair in pairs))
    tables = [_score_table(task, pairs, methods, cells, analysis.higher_is_better[task]),
              _rank_table(task, pairs, methods, cells)]
    if comparisons:
        tables.append(_vs_sft_table(task, comparisons, analysis, labels))
    tables.append(_cost_table(task, pairs, methods, cells))
    tables = [dataclasses.replace(t, header=header) if t.header[0] == "method" else t for t in tables]
    ordered = sorted(comparisons, key=lambda c: (c.pair, method_sort_key(c.method)))
    return Section(task, tuple(lines), tuple(tables), tuple(ordered))


def _table_line(info: TableInfo, analysis: Analysis) -> str:
    if info.cells_with_clusters == info.n_cells:
        clusters = f"{info.n_examples} evaluation examples in {info.n_clusters} clusters"
    elif info.cells_with_clusters == 0:
        clusters = (f"{info.n_examples} evaluation examples, each its own cluster (this store records no cluster "
                    f"ids: it was written before they were)")
    else:
        clusters = (f"{info.n_examples} evaluation examples in {info.n_clusters} clusters (cluster ids from "
                    f"{info.cells_with_clusters} of {info.n_cells} cells; examples no cell places count alone)")
    config = analysis.config
    left_out = (f"; {', '.join(info.identical_to_sft)} scored as sft on every example and "
                f"{'is' if len(info.identical_to_sft) == 1 else 'are'} left out") if info.identical_to_sft else ""
    if info.spread is None:
        power = "power: not estimated (needs sft and a trained method on the same examples that differs from it)"
        power += left_out
    else:
        methods = f"{info.spread_methods} methods'" if info.spread_methods > 1 else "1 method's"
        family = analysis.power_family
        power = (f"power: a true difference from sft of {info.mde:.1f} points is detected with {config.power:.0%} "
                 f"power by the paired test at α = {config.alpha:.2g}/{family} = {info.power_alpha:.2g} (Holm's "
                 f"first step over {family} comparisons) with t quantiles (spread of {methods} paired "
                 f"differences{left_out}; {info.power_examples} examples in {info.power_clusters} clusters, "
                 f"{info.power_seeds} seed{'s' if info.power_seeds > 1 else ''})").replace("%", " %")
        if info.power_seeds == 1:
            power += ("; at one seed: a lower bound (training-seed variance is not measured and adds to it; no marks "
                      "are given at one seed)")
    return f"{info.pair}: {clusters}; {power}."


def _overlap_line(pair: str, vocabulary: float | None, text: float | None) -> str:
    shown = " · ".join(f"{name} {MISSING if value is None else f'{value:.2f}'}"
                       for name, value in (("O_V", vocabulary), ("O_T", text)))
    return (f"{pair} overlap: {shown} (O_V: share of the student's vocabulary that a teacher token writes, "
            f"byte for byte; O_T: share of the student's answer tokens aligned 1:1 with a teacher token on this "
            f"task's training answers).")


def _score_table(
    task: str, pairs: list[str], methods: list[str], cells: dict[tuple[str, str], CellStats], higher_is_better: bool
) -> Table:
    pick = max if higher_is_better else min
    best = {}
    for pair in pairs:
        means = [s.mean for (p, m), s in cells.items() if p == pair and m != TEACHER]
        top = pick(means, default=None)
        best[pair] = top if means.count(top) == 1 else None  # a tie is no winner: no bold
    rows = []
    for method in methods:
        row = [Cell(method, method)]
        for pair in pairs:
            stats = cells.get((pair, method))
            if stats is None:
                row.append(Cell(MISSING))
                continue
            text = f"{stats.mean:.1f} [{stats.ci_low:.1f}, {stats.ci_high:.1f}]"
            bold = method != TEACHER and stats.mean == best[pair]
            row.append(Cell(text, stats.mean, (stats.mean, stats.ci_low, stats.ci_high), bold))
        rows.append(tuple(row))
    return Table("", "", ("method", *pairs), tuple(rows), bars="score")


def _rank_table(
    task: str, pairs: list[str], methods: list[str], cells: dict[tuple[str, str], CellStats]
) -> Table:
    rows, notes = [], []
    for method in methods:
        if method == TEACHER:
            continue
        row = [Cell(method, method)]
        for pair in pairs:
            stats = cells.get((pair, method))
            if stats is None or stats.rank is None:
                row.append(Cell(MISSING))
            elif stats.rank_low is None:
                row.append(Cell(f"{stats.rank} ({MISSING}¹)", stats.rank))
                notes = ["¹ a trained row of this pair has one seed: no rank range (a second seed is needed to tell a "
                         "method from its training seed's luck)."]
            else:
                row.append(Cell(f"{stats.rank} ({stats.rank_low}–{stats.rank_high})", stats.rank))
        rows.append(tuple(row))
    intro = ("Rank among the student rows by mean (1 = best, ties share a rank) and, in brackets, the range that "
             "holds 95 % of the ranks over bootstrap replicates of the whole table.")
    return Table(f"{task} — rank ranges", intro, ("method", *pairs), tuple(rows), tuple(notes))


def _vs_sft_table(task: str, comparisons: list[Comparison], analysis: Analysis,
                  labels: Mapping[str, str]) -> Table:
    teacher = {c.pair: c for c in comparisons if c.method == TEACHER}
    notes: list[str] = []

    def footnote(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return str(notes.index(text) + 1).translate(_SUPERSCRIPT)

    rows = []
    level = f"{analysis.config.level:.0%}".replace("%", " %")
    for c in sorted(comparisons, key=lambda c: (c.pair, method_sort_key(c.method))):
        label = (Cell(labels.get(c.pair, c.pair), c.pair), Cell(c.method, c.method))
        if math.isnan(c.p):
            rows.append((*label, Cell(f"{MISSING}{footnote(f'{c.pair} · {c.method}: no seed in common with sft.')}"),
                         Cell(MISSING), Cell(MISSING), Cell(MISSING), Cell(MISSING)))
            continue
        text = f"{c.diff:+.1f} [{c.ci_low:+.1f}, {c.ci_high:+.1f}]"
        if c.agreement:
            text += footnote(f"scored as sft on every example: the interval is the exact binomial {level} bound "
                             f"on the share of examples that could differ, times the metric's range (`docs/statistics.md`).")
        difference = Cell(text, c.diff, (c.diff, c.ci_low, c.ci_high))
        mark = Cell(f"{MISSING}{footnote(_ONE_SEED)}") if c.one_seed else Cell(c.mark, c.mark)
        if c.gap_note:
            gap = Cell(f"{MISSING}{footnote(_gap_reason(c, teacher.get(c.pair)))}")
        else:
            gap = Cell(f"{100 * c.gap:.1f} % [{100 * c.gap_low:.1f}, {100 * c.gap_high:.1f}]", c.gap)
        same = Cell(f"{c.identical}/{c.n_examples}", c.identical / c.n_examples)
        rows.append((*label, difference, Cell(format_p(c.p_holm), c.p_holm), mark, same, gap))
    alpha = f"{analysis.config.alpha:.2g}"
    intro = (f"Difference from sft in points on the same examples and seeds, with its 95 % interval; p from a paired "
             f"bootstrap test, Holm-corrected over the leaderboard's {analysis.family_size} comparisons paired on two "
             f"or more seeds; mark at α = {alpha} after correction: better, worse, or n.d. (not distinguishable from "
             f"sft). \"identical to sft\": examples on which the row made sft's prediction on every paired seed. Gap "
             f"closed = (method − sft) / (teacher − sft) with its interval from the same bootstrap, only where the "
             f"teacher is significantly above sft.")
    header = ("pair", "method", "Δ vs sft [95 % interval]", "p (Holm)", "mark", "identical to sft",
              "gap closed [95 % interval]")
    notes_text = tuple(f"{str(i).translate(_SUPERSCRIPT)} {note}" for i, note in enumerate(notes, start=1))
    return Table(f"{task} — vs SFT", intro, header, tuple(rows), notes_text, label_columns=2, bars="difference")


_ONE_SEED = ("paired on one seed: no mark, a second seed is needed (one training run cannot tell a method from its "
             "seed's luck).")


def _gap_reason(comparison: Comparison, teacher: Comparison | None) -> str:
    where = comparison.pair
    if comparison.gap_note == "teacher-row":
        return "the teacher row defines the gap."
    if comparison.gap_note == "no-teacher" or teacher is None:
        return f"{where}: no teacher row, so no gap to close."
    if comparison.gap_note == "one-seed":
        return (f"{where}: paired on one seed, so whether the teacher is above sft, and the share, would leave out "
                f"training-seed variance; a second seed is needed.")
    if comparison.gap_note == "teacher-not-above":
        verdict = "significantly below" if teacher.mark == "worse" else "not significantly above"
        p = format_p(teacher.p_holm)
        return (f"{where}: the teacher is {verdict} sft ({teacher.diff:+.1f} [{teacher.ci_low:+.1f}, "
                f"{teacher.ci_high:+.1f}], Holm p {p if p.startswith('<') else '= ' + p}), so there is no gap to "
                f"close.")
    return f"{where} · {comparison.method}: no comparison with sft."


def format_p(p: float) -> str:
    if math.isnan(p):
        return MISSING
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def _cost_table(task: str, pairs: list[str], methods: list[str], cells: dict[tuple[str, str], CellStats]) -> Table:
    rows = tuple((Cell(m, m), *(_cost_cell(cells.get((pair, m))) for pair in pairs)) for m in methods)
    intro = ("Training seconds per optimizer step, the cell's wall time (teacher-cache building, training and "
             "evaluation), its CPU time (the process's CPU seconds, all threads, in CPU-minutes) and its peak memory "
             "(GPU allocated or CPU resident, see `run.json`), means over seeds.")
    return Table(f"{task} — cost", intro, ("method", *pairs), rows)


def _cost_cell(stats: CellStats | None) -> Cell:
    if stats is None:
        return Cell(MISSING)
    values = (stats.mean_train_s_per_step, stats.mean_wall_time_s / 60, stats.mean_cpu_time_s / 60,
              stats.mean_peak_memory_mb / 1024)
    if all(math.isnan(v) for v in values):
        return Cell(MISSING)
    text = " · ".join(MISSING if math.isnan(v) else f"{v:.{digits}f} {unit}"
                      for v, (digits, unit) in zip(values, ((2, "s/step"), (1, "min"), (1, "CPU-min"), (1, "GiB"))))
    return Cell(text, None if math.isnan(stats.mean_wall_time_s) else stats.mean_wall_time_s)


def _failed(scan: StoreScan) -> Table:
    rows = tuple(tuple(Cell(v, v) for v in (f.task, f.pair, f.method, str(f.seed), f.reason)) for f in scan.failed)
    return Table("Failed cells", "", ("task", "pair", "method", "seed", "reason"), rows, numeric=False)


def _damaged(scan: StoreScan) -> Table:
    """Finished cells whose files cannot be trusted: left out of every table above; the next run re-runs them."""
    rows = tuple((Cell(d.where, d.where), Cell(d.reason, d.reason)) for d in scan.damaged)
    return Table("Damaged cells", "Left out of the tables above; the next run of the grid re-runs them.",
                 ("cell", "problem"), rows, numeric=False)


def _skipped(scan: StoreScan) -> Table:
    rows = tuple((Cell(s.pair, s.pair), Cell(s.reason, s.reason)) for s in scan.skipped)
    return Table("Skipped pairs", "", ("pair", "reason"), rows, numeric=False)
