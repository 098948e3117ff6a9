"""From a scanned store to the numbers every leaderboard output shows.

A *table* is one task × pair: its cells share the evaluation examples, so one draw of clusters (and one per seed
set) serves every statistic of the table, which is what makes differences paired and ranks joint. Per table:
a 95 % interval for every cell and metric (clipped to the metric's 0–100 range), every method's headline
difference from ``sft`` with its interval and p-value, which rows made identical predictions, the share of the
teacher–sft gap closed, rank ranges and the minimal detectable difference. Across the leaderboard: Holm's
correction over the comparisons with ``sft`` paired on two or more seeds (the family), which decides the marks and
whether a gap is defined. One seed cannot tell a method from its training seed's luck, so a comparison on one seed
gets no mark and a table with a one-seed trained row no rank ranges. See :mod:`leaderboards.stats` for the
resampling and ``docs/statistics.md`` for readers.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Mapping

import numpy as np

from benchmark.store import (
    SFT,
    TEACHER,
    UNTRAINED,
    CellKey,
    CellRecord,
    StoreError,
    StoreScan,
)
from leaderboards.examples import ExampleScores, ExampleTexts, read_examples
from leaderboards.stats import (
    BootstrapConfig,
    PairedSpread,
    agreement_bound,
    bootstrap_means,
    bootstrap_p_value,
    detectable_difference,
    draw_clusters,
    generator,
    holm,
    paired_spread,
    percentile_interval,
    pooled_spread,
    rank_ranges,
    seed_multipliers,
)

REFERENCES = (TEACHER, UNTRAINED)  # seed-independent rows (greedy decoding), stored once as seed 0
Mark = Literal["better", "worse", "n.d.", ""]
# Why a comparison or a gap share is undefined; the renderers turn these into footnotes.
GapNote = Literal["", "teacher-row", "no-teacher", "teacher-not-above", "no-comparison", "one-seed"]
METRIC_RANGE = (0.0, 100.0)  # every metric's per-example values (examples.ExampleScores): intervals stay inside
COST_FIELDS = ("wall_time_s", "train_s_per_step", "peak_memory_mb", "cpu_time_s")


@dataclass(frozen=True)
class CellStats:
    """One task × pair × method × metric over its complete seeds."""

    task: str
    pair: str
    method: str
    metric: str
    mean: float
    ci_low: float
    ci_high: float
    seed_std: float  # sample std (ddof=1) of the per-seed values; NaN for one seed
    n_seeds: int
    n_examples: int
    n_clusters: int
    mean_wall_time_s: float  # over the seeds whose run.json records it; NaN when none does
    mean_train_s_per_step: float  # likewise; NaN for cells that do not train
    mean_peak_memory_mb: float
    mean_cpu_time_s: float  # process CPU seconds, all threads; NaN in stores before run.json recorded it
    rank: int | None = None  # headline metric, student rows (the teacher is a reference): 1 = best
    rank_low: int | None = None
    rank_high: int | None = None


@dataclass(frozen=True)
class Comparison:
    """A method's headline score minus sft's, on the seeds and examples both have."""

    task: str
    pair: str
    method: str
    seeds: tuple[int, ...]  # the sft seeds paired with it (a reference row pairs with every sft seed)
    n_examples: int
    n_clusters: int
    diff: float
    ci_low: float
    ci_high: float
    p: float  # two-sided paired bootstrap p-value; NaN when the comparison is undefined
    identical: int = 0  # examples on which the two rows made the same prediction on every paired seed
    agreement: bool = False  # scored as sft on every example: the interval is the agreement bound's
    p_holm: float = math.nan  # NaN outside the Holm family (one paired seed, or no comparison)
    mark: Mark = ""  # "" with ``one_seed``: a single paired seed cannot support a mark
    gap: float = math.nan  # (method - sft) / (teacher - sft), only where the teacher is significantly above sft
    gap_low: float = math.nan
    gap_high: float = math.nan
    gap_note: GapNote = ""

    @property
    def one_seed(self) -> bool:
        """Paired on one seed: the difference is between two trained models, not two training procedures."""
        return not math.isnan(self.p) and len(self.seeds) < 2


@dataclass(frozen=True)
class TableInfo:
    """What one task × pair's header reports."""

    task: str
    pair: str
    metric: str
    n_examples: int
    n_clusters: int
    cells_with_clusters: int  # cells whose predictions record cluster ids (older stores have none)
    n_cells: int
    spread: PairedSpread | None  # pooled over the trained methods' differences from sft that are not all zero
    spread_methods: int
    power_examples: int
    power_seeds: int
    power_clusters: int
    identical_to_sft: tuple[str, ...]  # trained methods scoring as sft on every example: left out of the spread
    identical_groups: tuple[tuple[str, ...], ...]  # rows with the same predictions on every example and paired seed
    rank_ranges: bool  # False when a trained row has one seed: its rank range would omit training-seed variance
    mde: float = math.nan  # minimal detectable difference at the table's size, at power_alpha; NaN without a spread
    power_alpha: float = math.nan  # the level the power line tests at: Holm's first step, alpha / family size


@dataclass(frozen=True)
class Analysis:
    root: Path
    config: BootstrapConfig
    cells: tuple[CellStats, ...]
    comparisons: tuple[Comparison, ...]
    tables: tuple[TableInfo, ...]
    higher_is_better: dict[str, bool]  # task -> its headline metric's direction (what "better" and rank 1 mean)

    @property
    def family_size(self) -> int:
        """The number of comparisons Holm's correction runs over (paired on two or more seeds)."""
        return sum(not math.isnan(c.p_holm) for c in self.comparisons)

    @property
    def testable(self) -> int:
        """The comparisons with sft this leaderboard makes: the Holm family of the same grid with 2+ seeds."""
        return sum(not math.isnan(c.p) for c in self.comparisons)

    @property
    def power_family(self) -> int:
        """The m of the power line's α/m: the Holm family, or where it is empty (one seed) the testable comparisons."""
        return self.family_size or self.testable


def analyze(
    scan: StoreScan, config: BootstrapConfig = BootstrapConfig(),
    examples: Mapping[CellKey, tuple[ExampleScores, ExampleTexts]] | None = None,
) -> Analysis:
    """Every statistic of the leaderboard of ``scan``, from each cell's per-example scores and predictions as the
    store was read once (:func:`leaderboards.reading.read_store`); without them, reads each cell's
    ``predictions.jsonl`` here."""
    if examples is None:
        examples = {cell.key: read_examples(scan.root, cell) for cell in scan.cells}
    groups: dict[tuple[str, str], list[CellRecord]] = defaultdict(list)
    for cell in scan.cells:
        groups[cell.task, cell.pair].append(cell)
    cells: list[CellStats] = []
    comparisons: list[Comparison] = []
    tables: list[TableInfo] = []
    directions = {task: scan.higher_is_better(task) for task in scan.headline_metrics}
    for (task, pair), records in sorted(groups.items()):
        table_examples = {(r.method, r.seed): examples[r.key] for r in records}
        table_cells, table_comparisons, info = _Table(table_examples, task, pair, scan.headline_metrics[task], records,
                                                      config, directions[task]).analyze()
        cells += table_cells
        comparisons += table_comparisons
        tables.append(info)
    decided = _decide(comparisons, config.alpha, directions)
    analysis = Analysis(scan.root, config, tuple(cells), decided, tuple(tables), directions)
    power = tuple(_with_power(info, config, analysis.power_family) for info in tables)
    return dataclasses.replace(analysis, tables=power)


def _with_power(info: TableInfo, config: BootstrapConfig, family: int) -> TableInfo:
    """The minimal detectable difference at Holm's first step, alpha / family."""
    if info.spread is None:
        return info
    alpha = config.alpha / max(family, 1)
    mde = detectable_difference(info.spread, info.power_examples, info.power_seeds, info.power_clusters, alpha,
                                config.power)
    return dataclasses.replace(info, mde=mde, power_alpha=alpha)


def _decide(comparisons: list[Comparison], alpha: float, higher_is_better: dict[str, bool]) -> tuple[Comparison, ...]:
    """Holm over the comparisons paired on 2+ seeds, marks at the corrected level, and gap shares only where they
    mean something."""
    adjusted = holm([math.nan if c.one_seed else c.p for c in comparisons])
    decided = []
    for comparison, p_holm in zip(comparisons, adjusted):
        mark: Mark = ""
        if not math.isnan(p_holm):
            improved = comparison.diff > 0 if higher_is_better[comparison.task] else comparison.diff < 0
            mark = "n.d." if p_holm >= alpha else ("better" if improved else "worse")
        decided.append(dataclasses.replace(comparison, p_holm=float(p_holm), mark=mark))
    teachers = {(c.task, c.pair): c for c in decided if c.method == TEACHER}
    return tuple(_gate_gap(c, teachers.get((c.task, c.pair))) for c in decided)


def _gate_gap(comparison: Comparison, teacher: Comparison | None) -> Comparison:
    note: GapNote = ""
    if comparison.method == TEACHER:
        note = "teacher-row"
    elif teacher is None:
        note = "no-teacher"
    elif teacher.one_seed or comparison.one_seed:
        note = "one-seed"
    elif teacher.mark != "better":
        note = "teacher-not-above"
    elif math.isnan(comparison.p):
        note = "no-comparison"
    if not note:
        return comparison
    return dataclasses.replace(comparison, gap=math.nan, gap_low=math.nan, gap_high=math.nan, gap_note=note)


_Key = tuple[str, str, str]  # ("cell" or "diff", metric, method)
_WIDTH = METRIC_RANGE[1] - METRIC_RANGE[0]  # the most a difference of two means can be


@dataclass(frozen=True)
class _Resampled:
    """One statistic of a table: estimate, interval, p-value of "zero", and its replicates (a view, not a copy)."""

    estimate: float
    low: float
    high: float
    p: float
    draws: np.ndarray


class _Table:
    """One task × pair: every cell's per-example scores on the table's examples, and the shared draws."""

    def __init__(
        self, examples: dict[tuple[str, int], tuple[ExampleScores, ExampleTexts]], task: str, pair: str, headline: str,
        records: list[CellRecord], config: BootstrapConfig,
        higher_is_better: bool,
    ) -> None:
        self.task, self.pair, self.headline, self.config = task, pair, headline, config
        self.sign = 1.0 if higher_is_better else -1.0  # ranks order by sign * score: rank 1 is the best
        by_method: dict[str, list[CellRecord]] = defaultdict(list)
        for record in sorted(records, key=lambda r: (r.method, r.seed)):
            by_method[record.method].append(record)
        self.records = dict(sorted(by_method.items()))
        self.seeds = {method: tuple(r.seed for r in cells) for method, cells in self.records.items()}
        scores = {key: cell_scores for key, (cell_scores, _) in examples.items()}
        ids, cluster_of, self.cells_with_clusters = _examples(scores, task, pair)
        self.n_examples = len(ids)
        cluster_names, self.codes = np.unique([cluster_of[i] for i in ids], return_inverse=True)
        self.n_clusters = len(cluster_names)
        position = {example_id: j for j, example_id in enumerate(ids)}
        metrics = sorted({m for cells in self.records.values() for r in cells for m in r.metrics})
        # metric -> method -> [k, n] values, NaN where a seed did not evaluate an example
        self.values: dict[str, dict[str, np.ndarray]] = {metric: {} for metric in metrics}
        for method, cells in self.records.items():
            columns = [[position[i] for i in scores[method, r.seed].ids] for r in cells]
            for metric in metrics:
                matrix = np.full((len(cells), len(ids)), np.nan)
                for row, (record, where) in enumerate(zip(cells, columns)):
                    if metric in record.metrics:
                        matrix[row, where] = scores[method, record.seed].scores[metric]
                self.values[metric][method] = matrix
        # method -> [k, n] predictions ("" where a seed did not evaluate an example), to name identical rows
        self.predictions = {method: _prediction_matrix([examples[method, r.seed] for r in cells], position)
                            for method, cells in self.records.items()}
        self.cluster_draws = draw_clusters(generator(config, task, pair, "clusters"), self.n_clusters, config.resamples)

    def analyze(self) -> tuple[list[CellStats], list[Comparison], TableInfo]:
        named: dict[_Key, tuple[tuple[int, ...], np.ndarray]] = {}
        for metric, by_method in self.values.items():
            for method, matrix in by_method.items():
                if not np.isnan(matrix).all():
                    named["cell", metric, method] = (self.seeds[method], matrix)
        paired = self._paired_with_sft()
        for method, (seeds, differences) in paired.items():
            if differences is not None:
                named["diff", self.headline, method] = (seeds, differences)
        resampled = self._resample(named)
        cells = self._cell_stats(resampled)
        comparisons, info = self._comparisons(resampled, paired)
        return cells, comparisons, info

    def _resample(self, named: dict[_Key, tuple[tuple[int, ...], np.ndarray]]) -> dict[_Key, _Resampled]:
        """Every statistic of the table in one bootstrap call per seed set (one draw of seed weights per set:
        statistics over the same seeds are paired)."""
        by_seeds: dict[tuple[int, ...], list[_Key]] = defaultdict(list)
        for key, (seeds, _) in named.items():
            by_seeds[seeds].append(key)
        out: dict[_Key, _Resampled] = {}
        for seeds, keys in sorted(by_seeds.items()):
            multipliers = seed_multipliers(generator(self.config, self.task, self.pair, "seeds", *seeds), len(seeds),
                                           self.config.resamples)
            replicates = bootstrap_means(np.stack([named[key][1] for key in keys]), self.codes, self.cluster_draws,
                                         multipliers)
            low, high = percentile_interval(replicates.draws, self.config.level)
            p = bootstrap_p_value(replicates.draws)
            for j, key in enumerate(keys):
                # Clipped to the range a mean (or a difference of means) of 0-100 values can take: the same as the
                # percentiles of replicates clipped there, since percentiles commute with monotone maps.
                bound = METRIC_RANGE if key[0] == "cell" else (-_WIDTH, _WIDTH)
                out[key] = _Resampled(float(replicates.estimate[j]), float(np.clip(low[j], *bound)),
                                      float(np.clip(high[j], *bound)), float(p[j]), replicates.draws[:, j])
        return out

    def _cell_stats(self, resampled: dict[_Key, _Resampled]) -> list[CellStats]:
        stats: list[CellStats] = []
        for metric, by_method in self.values.items():
            ranks = self._ranks(resampled) if metric == self.headline else {}
            for method, matrix in by_method.items():
                if ("cell", metric, method) not in resampled:
                    continue
                result = resampled["cell", metric, method]
                used = ~np.isnan(matrix).any(axis=0)
                per_seed = matrix[:, used].mean(axis=1)
                stats.append(CellStats(
                    self.task, self.pair, method, metric, result.estimate, result.low, result.high,
                    float(per_seed.std(ddof=1)) if len(per_seed) > 1 else math.nan, len(per_seed), int(used.sum()),
                    len(np.unique(self.codes[used])), *_mean_costs(self.records[method]),
                    *ranks.get(method, (None, None, None)),
                ))
        return stats

    @property
    def rank_ranges(self) -> bool:
        """Rank ranges need every trained row on two or more seeds: with one, a row's range would leave out its
        training seed's luck, and every other row's range depends on it."""
        return all(len(self.seeds[m]) >= 2 for m in self.records if m not in REFERENCES)

    def _ranks(self, resampled: dict[_Key, _Resampled]) -> dict[str, tuple[int, int | None, int | None]]:
        students = [m for m in self.records if m != TEACHER and ("cell", self.headline, m) in resampled]
        if not students:
            return {}
        results = [resampled["cell", self.headline, m] for m in students]
        estimate = self.sign * np.array([r.estimate for r in results])
        draws = self.sign * np.stack([r.draws for r in results], axis=1)
        rank, low, high = rank_ranges(estimate, draws, self.config.level)
        if not self.rank_ranges:
            return {m: (int(rank[j]), None, None) for j, m in enumerate(students)}
        return {m: (int(rank[j]), int(low[j]), int(high[j])) for j, m in enumerate(students)}

    def _paired_rows(self, method: str, other: str) -> list[tuple[int, int]]:
        """(row of ``method``, row of ``other``) per paired seed: the common seeds, or every seed of the other row
        when one is a seed-independent reference stored once."""
        own, theirs = self.seeds[method], self.seeds[other]
        if method in REFERENCES and len(own) == 1:
            return [(0, j) for j in range(len(theirs))]
        if other in REFERENCES and len(theirs) == 1:
            return [(i, 0) for i in range(len(own))]
        return [(own.index(s), theirs.index(s)) for s in own if s in theirs]

    def _identical(self, method: str, other: str) -> np.ndarray:
        """[n] True where both rows evaluated the example and predicted the same text on every paired seed."""
        rows = self._paired_rows(method, other)
        if not rows:
            return np.zeros(self.n_examples, dtype=bool)
        a, b = self.predictions[method], self.predictions[other]
        return np.all([(a[i] == b[j]) & (a[i] != "") for i, j in rows], axis=0)

    def _identical_groups(self) -> tuple[tuple[str, ...], ...]:
        """Rows that made the same predictions on every example and paired seed, grouped (each group sorted)."""
        group = {m: m for m in self.records}
        methods = list(self.records)
        for i, method in enumerate(methods):
            for other in methods[i + 1:]:
                if group[other] == other and self._identical(method, other).all():
                    group[other] = group[method]
        members: dict[str, list[str]] = defaultdict(list)
        for method in methods:
            members[group[method]].append(method)
        return tuple(tuple(m) for m in members.values() if len(m) > 1)

    def _paired_with_sft(self) -> dict[str, tuple[tuple[int, ...], np.ndarray | None]]:
        """method -> the sft seeds it pairs with and its ``[k, n]`` differences from sft (None: no seed in common).
        A seed-independent reference row pairs with every sft seed."""
        values = self.values[self.headline]
        if SFT not in values:
            return {}
        sft_seeds, paired = self.seeds[SFT], {}
        for method, own in values.items():
            if method == SFT:
                continue
            if method in REFERENCES and len(self.seeds[method]) == 1:
                paired[method] = (sft_seeds, own - values[SFT])
                continue
            common = tuple(s for s in self.seeds[method] if s in sft_seeds)
            rows, sft_rows = [self.seeds[method].index(s) for s in common], [sft_seeds.index(s) for s in common]
            paired[method] = (common, own[rows] - values[SFT][sft_rows] if common else None)
        return paired

    def _comparisons(
        self,
        resampled: dict[_Key, _Resampled],
        paired: dict[str, tuple[tuple[int, ...], np.ndarray | None]],
    ) -> tuple[list[Comparison], TableInfo]:
        teacher = resampled.get(("diff", self.headline, TEACHER))
        results: list[Comparison] = []
        spreads: list[tuple[int, int, PairedSpread]] = []
        for method, (seeds, differences) in paired.items():
            if differences is None:
                results.append(Comparison(self.task, self.pair, method, (), 0, 0, *(math.nan,) * 4,
                                          gap_note="no-comparison"))
                continue
            result = resampled["diff", self.headline, method]
            used = ~np.isnan(differences).any(axis=0)
            clusters = len(np.unique(self.codes[used]))
            low, high = result.low, result.high
            agreement = not differences[:, used].any()
            if agreement:
                # Scored as sft on every example: no bootstrap spread, but agreement on C clusters still allows a
                # disagreement rate up to the exact binomial bound, each disagreement moving Δ by up to the range.
                high = _WIDTH * agreement_bound(clusters, self.config.level)
                low = -high
            results.append(Comparison(
                self.task, self.pair, method, seeds, int(used.sum()), clusters, result.estimate, low, high, result.p,
                int((self._identical(method, SFT) & used).sum()), agreement, **self._gap(result, teacher),
            ))
            if method not in REFERENCES:
                spreads.append((method, int(used.sum()), len(seeds), clusters, paired_spread(differences, self.codes),
                                bool(differences[:, used].any())))
        return results, self._info(spreads)

    def _gap(self, result: _Resampled, teacher: _Resampled | None) -> dict[str, float]:
        """The share of the teacher-sft gap closed and its interval, from the same replicates as both differences.
        Computed wherever the teacher's point estimate is above sft; whether it is shown is decided after Holm."""
        if teacher is None or teacher.estimate <= 0:
            return {}
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = result.draws / teacher.draws
        low, high = percentile_interval(shares[:, None], self.config.level)
        return {"gap": result.estimate / teacher.estimate, "gap_low": float(low[0]), "gap_high": float(high[0])}

    def _info(self, spreads: list[tuple[str, int, int, int, PairedSpread, bool]]) -> TableInfo:
        """The spread pooled over the trained methods' comparisons that can differ: a method scoring as sft on
        every example has a zero spread that says nothing about the methods that do differ, so it is left out and
        named."""
        spread, n, k, clusters = None, 0, 0, 0
        identical = tuple(method for method, *_, differs in spreads if not differs)
        usable = [s for s in spreads if s[5] and not math.isnan(s[4].example)]
        if usable:
            # Pool the comparisons made over the most common number of seeds (normally all of them).
            k = max(Counter(s[2] for s in usable).most_common(), key=lambda item: (item[1], item[0]))[0]
            group = [s for s in usable if s[2] == k]
            spread = pooled_spread(s[4] for s in group)
            n = int(statistics.median_low(s[1] for s in group))
            clusters = int(statistics.median_low(s[3] for s in group))
        return TableInfo(
            self.task, self.pair, self.headline, self.n_examples, self.n_clusters, self.cells_with_clusters,
            sum(len(cells) for cells in self.records.values()), spread, len(usable) if spread else 0, n, k, clusters,
            identical, self._identical_groups(), self.rank_ranges,
        )


def _examples(scores: dict[tuple[str, int], ExampleScores], task: str, pair: str) -> tuple[list[str], dict[str, str], int]:
    """The table's example ids (sorted), each example's cluster, and how many cells recorded clusters.

    An example whose cells record no cluster (a store written before cluster ids) is its own cluster; two cells
    that put one example in different clusters are a :class:`StoreError`.
    """
    cluster_of: dict[str, str] = {}
    with_clusters = 0
    for (method, seed), cell in sorted(scores.items()):
        if cell.clusters is None:
            continue
        with_clusters += 1
        for example_id, cluster in zip(cell.ids, cell.clusters):
            if cluster_of.setdefault(example_id, cluster) != cluster:
                raise StoreError(
                    f"{task}/{pair}/{method}/seed{seed}: example {example_id!r} is in cluster {cluster!r}, another "
                    f"cell of the table puts it in {cluster_of[example_id]!r}"
                )
    ids = sorted({example_id for cell in scores.values() for example_id in cell.ids})
    return ids, {i: cluster_of.get(i, i) for i in ids}, with_clusters


def _prediction_matrix(seeds: list[tuple[ExampleScores, ExampleTexts]], position: dict[str, int]) -> np.ndarray:
    """``[k, n]`` prediction texts of one method's seeds on the table's examples ("" where not evaluated)."""
    matrix = np.full((len(seeds), len(position)), "", dtype=object)
    for row, (scores, texts) in enumerate(seeds):
        for example_id, prediction in zip(scores.ids, texts.predictions):
            matrix[row, position[example_id]] = "\x00" + prediction
    return matrix


def _mean_costs(cells: Iterable[CellRecord]) -> tuple[float, ...]:
    """Mean of each of :data:`COST_FIELDS` over the seeds that record it; NaN where none does."""
    cells = list(cells)
    means = []
    for name in COST_FIELDS:
        recorded = [value for cell in cells if (value := getattr(cell, name)) is not None]
        means.append(statistics.fmean(recorded) if recorded else math.nan)
    return tuple(means)
