"""Resampling statistics for the leaderboards: a two-level (seeds, clusters) bootstrap, paired tests, Holm,
rank ranges and power. Pure functions of arrays; reading a store and rendering are elsewhere
(``docs/statistics.md`` explains the choices to readers of the leaderboard).

**The statistic.** The per-example scores of one statistic form a matrix ``values[seed, example]``; it uses the
examples evaluated on all of its seeds (NaN marks the others). Its estimate is the mean over examples and seeds:
the cell's metric averaged over seeds. A paired difference is the same statistic of ``method − sft`` on the
seeds and examples both have.

**Variance.** Every seed is evaluated on the same examples (seeds and examples are crossed), so with k seeds and n
examples ``Var(estimate) = seed/k + example/n + interaction/(nk)``: a training-seed effect, an example effect
(clustered: examples that share a source vary together), and the seed × example interaction (which examples a
given seed happens to get right). A replicate adds two independent parts, one per level, that together carry each
component once:

1. **Seeds.** Given the examples, the k per-seed means are independent draws around the estimate; their spread
   (seed + interaction/n) is known to k−1 degrees of freedom. A replicate weighs the k per-seed deviations with one
   shared Gaussian draw per seed (a multiplier bootstrap, so statistics over the same seeds stay paired) scaled by
   sqrt((k−1)/χ²_{k−1}): the seed part of every statistic is then Student t with k−1 degrees of freedom around
   zero, the exact law of a mean of k normal seed effects whose spread is estimated.
2. **Clusters.** C of the C clusters drawn with replacement, one draw shared by every statistic of a table; the
   replicate's mean of the seed-averaged per-example values. Its deviation from the estimate is rescaled by
   sqrt(C/(C−1)) (the plain bootstrap variance of a mean over C units is (C−1)/C of the unbiased one), shrunk by the
   interaction's share interaction/(nk), which the seed part already carries, and multiplied by a per-replicate
   sqrt((C−1)/χ²_{C−1}), which gives it Student-t tails with C−1 degrees of freedom (about 1 for hundreds of
   clusters; SQuAD's test set has 10 articles). Clusters keep examples that share a source together.

Why not resample plainly at both levels: on the calibration experiments of ``tests/leaderboards/test_calibration.py``
(five methods equal to sft, Holm over the five, 8 % of families allowed), resampling 3 seeds with replacement (10
distinct means, no tails) rejected a true null in 12.5 % of families (7.5 % of single comparisons), and the plain
cluster bootstrap over 15 clusters in 11.5 % (7.4 %); with the t tails, 1.0 % of families with 3 seeds and 6.0 %
with one seed over 15 clusters.

Intervals are percentile intervals; a p-value is the two-sided level at which the percentile interval just
reaches zero, so ``p < 1 − level`` exactly when the interval excludes zero.
"""
from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr
from scipy.stats import beta, chi2, norm, rankdata
from scipy.stats import t as student_t


@dataclass(frozen=True)
class BootstrapConfig:
    """How the leaderboard resamples; recorded in every output that uses it."""

    resamples: int = 10_000  # [suite] p-values resolve to 2/(resamples+1): Holm can still reject among ~250 comparisons
    seed: int = 20_240_611  # [suite] fixed: re-rendering a store gives byte-identical files
    level: float = 0.95  # [suite] intervals; marks test at alpha = 1 - level after Holm
    power: float = 0.80  # [suite] for the minimal detectable difference

    def __post_init__(self) -> None:
        if self.resamples < 100:
            raise ValueError(f"resamples must be at least 100, got {self.resamples}")
        if not 0.5 < self.level < 1.0:
            raise ValueError(f"level must be in (0.5, 1), got {self.level}")
        if not 0.0 < self.power < 1.0:
            raise ValueError(f"power must be in (0, 1), got {self.power}")

    @property
    def alpha(self) -> float:
        return 1.0 - self.level


def generator(config: BootstrapConfig, *names: str | int) -> np.random.Generator:
    """An independent stream for one table and purpose: the same names give the same draws whatever else the store
    holds, so adding a task never moves another task's intervals."""
    return np.random.default_rng([config.seed, *(zlib.crc32(str(name).encode("utf-8")) for name in names)])


@dataclass(frozen=True)
class ClusterDraws:
    """One table's draw of clusters: ``counts[b, c]`` (how often replicate b drew cluster c, C draws with
    replacement) and a per-replicate ``scale`` that gives the resampled means Student-t tails with C−1 degrees of
    freedom (1 for many clusters; see :func:`t_scale`)."""

    counts: np.ndarray
    scale: np.ndarray


def draw_clusters(rng: np.random.Generator, n_clusters: int, resamples: int) -> ClusterDraws:
    drawn = rng.integers(0, n_clusters, size=(resamples, n_clusters))
    flat = (drawn + np.arange(resamples)[:, None] * n_clusters).ravel()
    counts = np.bincount(flat, minlength=resamples * n_clusters).reshape(resamples, n_clusters).astype(np.float64)
    return ClusterDraws(counts, t_scale(rng, n_clusters, resamples))


def t_scale(rng: np.random.Generator, n_units: int, resamples: int) -> np.ndarray:
    """sqrt((G−1)/χ²_{G−1}) per replicate: multiplying a normal deviation by it gives Student t with G−1 degrees of
    freedom, the law of a mean whose spread is estimated from G units (ones for G < 2)."""
    if n_units < 2:
        return np.ones(resamples)
    return np.sqrt((n_units - 1) / rng.chisquare(n_units - 1, resamples))


def seed_multipliers(rng: np.random.Generator, n_seeds: int, resamples: int) -> np.ndarray | None:
    """``weights[b, s]`` such that ``weights @ deviations`` (per-seed deviations from the mean, summing to zero) is
    Student t with ``n_seeds - 1`` degrees of freedom scaled by their standard error; None for one seed."""
    if n_seeds < 2:
        return None
    gaussian = rng.standard_normal((resamples, n_seeds))
    return gaussian * (t_scale(rng, n_seeds, resamples) / np.sqrt(n_seeds * (n_seeds - 1)))[:, None]


@dataclass(frozen=True)
class Replicates:
    """Point estimates ``[q]`` of q statistics and their bootstrap replicates ``[resamples, q]``."""

    estimate: np.ndarray
    draws: np.ndarray


@dataclass(frozen=True)
class _Parts:
    """The two-way decomposition of q statistics' ``[q, k, n]`` values (NaN columns: examples not used)."""

    per_seed: np.ndarray  # [q, k]
    per_example: np.ndarray  # [q, n], seed-averaged
    estimate: np.ndarray  # [q]
    interaction: np.ndarray  # [q] residual mean square of the two-way table (0 with one seed or one example)
    n_examples: np.ndarray  # [q]


def _decompose(values: np.ndarray) -> _Parts:
    values = np.where(np.isnan(values).any(axis=1, keepdims=True), np.nan, values)  # an example on every seed, or none
    per_example = values.mean(axis=1)
    n_examples = (~np.isnan(per_example)).sum(axis=1)
    if (n_examples == 0).any():
        raise ValueError("a statistic has no example evaluated on all of its seeds")
    per_seed = np.nanmean(values, axis=2)
    estimate = per_seed.mean(axis=1)
    k = values.shape[1]
    residual = values - per_seed[:, :, None] - per_example[:, None, :] + estimate[:, None, None]
    dof = (k - 1) * (n_examples - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        interaction = np.where(dof > 0, np.nansum(residual**2, axis=(1, 2)) / dof, 0.0)
    return _Parts(per_seed, per_example, estimate, interaction, n_examples)


def bootstrap_means(
    values: np.ndarray, clusters: np.ndarray, cluster_draws: ClusterDraws, multipliers: np.ndarray | None
) -> Replicates:
    """Estimates and two-level replicates of q statistics that share one set of k seeds.

    ``values``: ``[q, k, n]`` per-example scores (NaN: not evaluated); ``clusters``: ``[n]`` cluster codes covering
    ``0..C-1``; ``cluster_draws``: from :func:`draw_clusters`, shared by every statistic of a table;
    ``multipliers``: ``[B, k]`` from :func:`seed_multipliers`, shared by the statistics over these seeds (None for
    one seed).
    """
    parts = _decompose(values)
    cluster_counts = cluster_draws.counts
    sums, used_clusters, counts = _cluster_deviations(parts, clusters, cluster_counts.shape[1])
    if counts is None:  # the usual store: every statistic uses every example, one cluster-size vector serves all
        weights = (cluster_counts @ np.bincount(clusters).astype(np.float64))[:, None]
    else:
        weights = cluster_counts @ counts.T
    weights = weights / cluster_draws.scale[:, None]
    # 0/0 (NaN) only for a statistic with missing examples, in a replicate that drew none of the clusters it uses:
    # the other functions here leave such replicates out.
    with np.errstate(invalid="ignore", divide="ignore"):
        cluster_part = _inflation(used_clusters) * (cluster_counts @ sums.T) / weights
    k = values.shape[1]
    if k == 1 or multipliers is None:
        return Replicates(parts.estimate, parts.estimate + cluster_part)
    # The cluster part's variance is example/n + interaction/(nk); the seed part carries the interaction already.
    example_total = _example_total(sums, used_clusters, parts.n_examples)
    with np.errstate(invalid="ignore", divide="ignore"):
        shrink = np.sqrt(np.clip(1 - parts.interaction / (k * example_total), 0.0, 1.0))
    shrink = np.where(example_total > 0, shrink, 0.0)
    deviations = parts.per_seed - parts.estimate[:, None]  # [q, k]
    return Replicates(parts.estimate, parts.estimate + shrink * cluster_part + multipliers @ deviations.T)


def _cluster_deviations(
    parts: _Parts, clusters: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``[q, C]`` cluster totals of the seed-averaged deviations from the estimate, the number of clusters each
    statistic uses, and ``[q, C]`` examples per cluster (None when every statistic uses every example)."""
    present = ~np.isnan(parts.per_example)
    centred = np.where(present, parts.per_example - parts.estimate[:, None], 0.0)
    sums = _cluster_sums(centred, clusters, n_clusters)
    if present.all():
        return sums, np.full(len(sums), n_clusters), None
    counts = _cluster_sums(present.astype(np.float64), clusters, n_clusters)
    return sums, (counts > 0).sum(axis=1), counts


def _example_total(sums: np.ndarray, used_clusters: np.ndarray, n_examples: np.ndarray) -> np.ndarray:
    """n times the (unbiased, cluster-robust) variance of the mean of the seed-averaged values."""
    return _inflation(used_clusters) ** 2 * (sums**2).sum(axis=1) / n_examples


def _cluster_sums(rows: np.ndarray, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """``[r, C]`` sums of each row's entries per cluster (every code ``0..C-1`` must occur)."""
    order = np.argsort(clusters, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(clusters[order]) != 0])
    if len(starts) != n_clusters:
        raise ValueError(f"cluster codes must cover 0..{n_clusters - 1}; {len(starts)} distinct codes given")
    return np.add.reduceat(rows[:, order], starts, axis=1)


def _inflation(n_units: np.ndarray) -> np.ndarray:
    """sqrt(G/(G-1)): makes the bootstrap variance of a mean over G units unbiased (1 for G < 2: nothing varies)."""
    g = np.asarray(n_units, dtype=np.float64)
    return np.sqrt(np.where(g > 1, g / np.maximum(g - 1, 1), 1.0))


def percentile_interval(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper ``level`` percentile bounds of ``[B, q]`` replicates (NaN replicates left out)."""
    quantile = np.nanquantile if np.isnan(draws).any() else np.quantile
    low, high = quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return low, high


def bootstrap_p_value(draws: np.ndarray) -> np.ndarray:
    """Two-sided p-values ``[q]`` of "the difference is zero" from ``[B, q]`` replicates of the difference: twice the
    smaller share of replicates on either side of zero (replicates at zero count on both sides), with the +1 that
    keeps a resampling p-value from being 0; at least 2/(B+1), at most 1 (NaN replicates left out)."""
    resamples = (~np.isnan(draws)).sum(axis=0)
    below = 1 + (draws <= 0).sum(axis=0)
    above = 1 + (draws >= 0).sum(axis=0)
    return np.minimum(1.0, 2 * np.minimum(below, above) / (resamples + 1))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control); NaN entries are not part of the family."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    index = np.flatnonzero(~np.isnan(p))
    order = index[np.argsort(p[index], kind="stable")]
    stepped = np.minimum(1.0, (len(order) - np.arange(len(order))) * p[order])
    adjusted[order] = np.maximum.accumulate(stepped) if len(order) else stepped
    return adjusted


def rank_ranges(estimate: np.ndarray, draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank of each of M entries (1 = highest; ties share the better rank) and its ``level`` bootstrap range,
    from replicates ``[B, M]`` drawn together (the same clusters and seeds for every entry; replicates with a NaN
    left out)."""
    observed = rankdata(-estimate, method="min")
    ranks = rankdata(-draws[~np.isnan(draws).any(axis=1)], method="min", axis=1)
    low, high = np.quantile(ranks, [(1 - level) / 2, (1 + level) / 2], axis=0, method="inverted_cdf")
    return observed.astype(int), low.astype(int), high.astype(int)


@dataclass(frozen=True)
class PairedSpread:
    """Variance components of a paired mean difference, in points²:
    Var(difference averaged over n examples and k seeds) = seed / k + example / n + interaction / (n k).

    ``example`` carries the clustering's design effect at the measured cluster sizes. Measured on one seed, the
    seed and interaction parts cannot be told apart from the example part: they are NaN and ``example`` holds all
    the noise of a one-seed difference.
    """

    seed: float
    example: float
    interaction: float

    @property
    def seeds_measured(self) -> bool:
        return not math.isnan(self.seed)

    def variance(self, n_examples: int, n_seeds: int) -> float:
        """The variance of the difference with ``n_examples`` and ``n_seeds`` (NaN: more seeds than measured)."""
        if not self.seeds_measured:
            return self.example / n_examples if n_seeds == 1 else math.nan
        return self.seed / n_seeds + self.example / n_examples + self.interaction / (n_examples * n_seeds)


def paired_spread(differences: np.ndarray, clusters: np.ndarray) -> PairedSpread:
    """Method-of-moments components of ``[k, n]`` paired differences, the ones the bootstrap reproduces.

    Example part: n times the cluster-robust variance of the mean of the seed-averaged differences, less the
    interaction's share. Interaction: the two-way residual mean square. Seed part: the variance of the per-seed
    means less the interaction's share. NaN components where fewer than two clusters were evaluated.
    """
    parts = _decompose(differences[None])
    codes = np.unique(clusters, return_inverse=True)[1]
    sums, used_clusters, _ = _cluster_deviations(parts, codes, int(codes.max()) + 1)
    if used_clusters[0] < 2:
        return PairedSpread(math.nan, math.nan, math.nan)
    example = float(_example_total(sums, used_clusters, parts.n_examples)[0])
    k = differences.shape[0]
    if k == 1:
        return PairedSpread(math.nan, example, math.nan)
    interaction = float(parts.interaction[0])
    seed = max(0.0, float(parts.per_seed[0].var(ddof=1)) - interaction / float(parts.n_examples[0]))
    return PairedSpread(seed, max(0.0, example - interaction / k), interaction)


def pooled_spread(spreads: Iterable[PairedSpread]) -> PairedSpread:
    """Component-wise mean of several comparisons' spreads (one table's methods against the same sft)."""
    spreads = list(spreads)
    if not spreads:
        raise ValueError("pooled_spread needs at least one spread")
    parts = ("seed", "example", "interaction")
    return PairedSpread(*(float(np.mean([getattr(s, part) for s in spreads])) for part in parts))


def z_sum(alpha: float, power: float) -> float:
    """z_{1-alpha/2} + z_{power}: a two-sided test at ``alpha`` detects a true difference this many standard errors
    large with probability ``power`` under the normal law (a lower bound on the t test's multiple)."""
    return float(norm.ppf(1 - alpha / 2) + norm.ppf(power))


@functools.lru_cache(maxsize=256)
def _chi_nodes(dof: float) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature of sqrt(χ²_dof / dof), the ratio of an estimated standard error to the true one: the midpoints
    of equal-probability slices (256 below 8 degrees of freedom, where the law is skewed, 128 above), equal weights;
    one node at 1 beyond 2,000 degrees of freedom, where the ratio no longer varies."""
    if dof > 2000:
        return np.ones(1), np.ones(1)
    slices = 256 if dof < 8 else 128
    return np.sqrt(chi2.ppf((np.arange(slices) + 0.5) / slices, dof) / dof), np.full(slices, 1 / slices)


def rejection_rate(difference: float, seed_se: float, cluster_se: float, n_seeds: int, n_clusters: float,
                   alpha: float) -> float:
    """How often the paired bootstrap test at ``alpha`` rejects when the true difference is ``difference``, for an
    estimate whose error has a seed part (standard error ``seed_se``, estimated from k seeds: k−1 degrees of
    freedom) and a cluster part (``cluster_se``, C−1), normal in both.

    The test's replicates put Student-t tails on each part at its estimated size, so it rejects when |estimate|
    passes their (1 − α/2) quantile, taken as sqrt((q_s ŝ_s)² + (q_c ŝ_c)²) with q the t quantiles (exact for one
    part; for two, the tails of the heavier part dominate and the quadratic sum follows them). The rate averages
    P(|N(difference, seed_se² + cluster_se²)| > that) over the laws of ŝ_s and ŝ_c (scaled χ), by quadrature.
    With one part this is the power of the t test (the noncentral t law)."""
    seed_nodes, seed_weights = _chi_nodes(n_seeds - 1) if seed_se > 0 and n_seeds > 1 else (np.zeros(1), np.ones(1))
    cluster_dof = max(n_clusters - 1, 1.0)
    cluster_nodes, cluster_weights = _chi_nodes(cluster_dof)
    seed_q = float(student_t.ppf(1 - alpha / 2, n_seeds - 1)) if n_seeds > 1 else 0.0
    cluster_q = float(student_t.ppf(1 - alpha / 2, cluster_dof))
    critical = np.hypot(seed_q * seed_se * seed_nodes[:, None], cluster_q * cluster_se * cluster_nodes[None, :])
    sigma = math.hypot(seed_se, cluster_se)
    rejected = ndtr((difference - critical) / sigma) + ndtr((-critical - difference) / sigma)
    return float((seed_weights[:, None] * cluster_weights[None, :] * rejected).sum())


def detectable_difference(spread: PairedSpread, n_examples: int, n_seeds: int, n_clusters: float, alpha: float,
                          power: float) -> float:
    """The smallest true difference the marks' test (two-sided, at ``alpha``: Holm's first step α/m) detects with
    probability ``power`` (:func:`rejection_rate`). With k seeds the seed part's variance is (seed +
    interaction/n)/k and the cluster part's example/n; with one seed (or a spread measured on one) all of
    :meth:`PairedSpread.variance` is the cluster part."""
    if n_seeds > 1 and spread.seeds_measured:
        seed_se = math.sqrt((spread.seed + spread.interaction / n_examples) / n_seeds)
        cluster_se = math.sqrt(spread.example / n_examples)
    else:
        seed_se, cluster_se = 0.0, math.sqrt(spread.variance(n_examples, n_seeds))
    if seed_se == 0 and cluster_se == 0:
        return 0.0

    def shortfall(difference: float) -> float:
        return rejection_rate(difference, seed_se, cluster_se, n_seeds, n_clusters, alpha) - power

    high = math.hypot(seed_se, cluster_se)
    while shortfall(high) < 0:
        high *= 2
    return float(brentq(shortfall, 0.0, high, xtol=1e-7 * high))


def examples_needed(spread: PairedSpread, difference: float, n_seeds: int, clusters_per_example: float, alpha: float,
                    power: float) -> float:
    """Evaluation examples needed to detect ``difference`` with ``n_seeds`` seeds (the smallest n whose
    :func:`detectable_difference` is at most ``difference``; clusters grow with n at the measured
    ``clusters_per_example``); ``inf`` when no n is enough (the seed part alone is too large, or n would pass
    10⁹), NaN when the spread was measured on one seed and ``n_seeds`` > 1 (see :func:`examples_lower_bound`)."""
    if not spread.seeds_measured and n_seeds > 1:
        return math.nan

    def reached(n: int) -> bool:
        clusters = max(2.0, n * clusters_per_example)
        return detectable_difference(spread, n, n_seeds, clusters, alpha, power) <= difference

    if n_seeds > 1 and detectable_difference(spread, math.inf, n_seeds, math.inf, alpha, power) > difference:
        return math.inf  # the seed part alone, with infinitely many examples, is too large
    if reached(1):
        return 1.0
    low, high = 1, 2  # low is never enough, high is being tested
    while not reached(high):
        if high > 10**9:
            return math.inf
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if reached(middle) else (middle, high)
    return float(high)


def examples_lower_bound(spread: PairedSpread, difference: float, n_seeds: int, alpha: float, power: float) -> float:
    """From a spread measured on one seed: fewer examples than this cannot detect ``difference`` with ``n_seeds``
    seeds. One seed measures example + interaction = E; with k seeds the variance is at least E/(n k) (all of E
    interaction, no seed effect), and the t multiple is at least the normal one."""
    return _whole(spread.example / (n_seeds * (difference / z_sum(alpha, power)) ** 2))


def _whole(examples: float) -> float:
    """The next whole number of examples, ignoring rounding noise (199.99999999999997 is 200)."""
    return float(math.ceil(round(examples, 9)))


def agreement_bound(n_units: int, level: float) -> float:
    """The exact (Clopper–Pearson) upper ``level`` two-sided bound on a rate of disagreement observed 0 times in
    ``n_units`` independent units: 1 − ((1 − level)/2)^(1/n). 16 of 16 identical allows 20.6 % at 95 %."""
    return float(beta.ppf(1 - (1 - level) / 2, 1, n_units))
