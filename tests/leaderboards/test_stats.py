"""Hand-computed cases and properties of leaderboards.stats; references are written from the formulas here."""
import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import nct
from scipy.stats import t as student_t

from leaderboards.stats import (
    BootstrapConfig,
    ClusterDraws,
    PairedSpread,
    agreement_bound,
    bootstrap_means,
    bootstrap_p_value,
    detectable_difference,
    draw_clusters,
    examples_lower_bound,
    examples_needed,
    generator,
    holm,
    paired_spread,
    percentile_interval,
    pooled_spread,
    rank_ranges,
    rejection_rate,
    seed_multipliers,
    z_sum,
)

ROOT2 = math.sqrt(2.0)


def fixed(counts: list[list[float]]) -> ClusterDraws:
    """Hand-picked cluster draws without the t scale."""
    return ClusterDraws(np.array(counts), np.ones(len(counts)))


def test_draw_clusters_draw_every_cluster_count_times_and_repeat_with_the_seed() -> None:
    config = BootstrapConfig(resamples=500)
    draws = draw_clusters(generator(config, "qed", "p"), 7, 500)
    assert draws.counts.shape == (500, 7) and (draws.counts.sum(axis=1) == 7).all()
    assert (draws.counts == draw_clusters(generator(config, "qed", "p"), 7, 500).counts).all()
    assert (draws.counts != draw_clusters(generator(config, "qed", "q"), 7, 500).counts).any()
    assert draws.counts[:, 0].mean() == pytest.approx(1.0, abs=0.1)  # each cluster drawn once on average
    assert (draw_clusters(np.random.default_rng(0), 1, 5).scale == 1).all()  # one cluster: nothing to scale


def test_cluster_resampling_keeps_a_clusters_examples_together() -> None:
    """Cluster a = examples 0, 3 (both 0), cluster b = examples 1, 2 (both 10). Drawing (a, a), (b, b), (a, b)
    gives means 0, 10, 5 before the sqrt(C/(C-1)) = sqrt(2) rescaling around the estimate 5."""
    values = np.array([[[0.0, 10.0, 10.0, 0.0]]])
    clusters = np.array([0, 1, 1, 0])
    draws = bootstrap_means(values, clusters, fixed([[2, 0], [0, 2], [1, 1]]), None).draws[:, 0]
    assert draws == pytest.approx([5 - 5 * ROOT2, 5 + 5 * ROOT2, 5.0])
    # Random draws never split a cluster: a per-example bootstrap would also give means of 2.5 and 7.5.
    random = draw_clusters(np.random.default_rng(0), 2, 400)
    draws = bootstrap_means(values, clusters, ClusterDraws(random.counts, np.ones(400)), None).draws[:, 0]
    assert set(np.round(draws, 9)) == set(np.round([5 - 5 * ROOT2, 5.0, 5 + 5 * ROOT2], 9))
    # The t scale stretches each replicate's deviation from the estimate, the clusters drawn stay the same.
    scaled = bootstrap_means(values, clusters, random, None).draws[:, 0]
    assert scaled - 5 == pytest.approx((draws - 5) * random.scale)


def test_cluster_means_weigh_clusters_by_their_size() -> None:
    """Cluster a has one example (0), cluster b three (10): drawing a and b once each averages 4 examples, 7.5."""
    values = np.array([[[0.0, 10.0, 10.0, 10.0]]])
    replicates = bootstrap_means(values, np.array([0, 1, 1, 1]), fixed([[1, 1], [2, 0]]), None)
    assert replicates.estimate == pytest.approx([7.5])
    assert replicates.draws[:, 0] == pytest.approx([7.5, 7.5 + ROOT2 * (0 - 7.5)])


def test_seed_level_hand_case() -> None:
    """Seed 1 scores 0 everywhere, seed 2 scores 10: no example effect and no interaction, so a replicate is the
    estimate plus the multipliers times the seed deviations (-5, +5)."""
    values = np.array([[[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]]])
    multipliers = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.3, -0.1]])
    replicates = bootstrap_means(values, np.arange(3), draw_clusters(np.random.default_rng(1), 3, 4), multipliers)
    assert replicates.estimate == pytest.approx([5.0])
    assert replicates.draws[:, 0] == pytest.approx([0.0, 10.0, 5.0, 3.0])


def test_seed_part_is_student_t_with_k_minus_1_degrees_of_freedom() -> None:
    """Per-seed means 40, 43, 50 and nothing else varying: replicates / standard error follow t with 2 df."""
    values = np.array([[[40.0] * 5, [43.0] * 5, [50.0] * 5]])
    multipliers = seed_multipliers(np.random.default_rng(2), 3, 200_000)
    draws = bootstrap_means(values, np.arange(5), draw_clusters(np.random.default_rng(3), 5, 200_000), multipliers).draws
    standard_error = np.std([40.0, 43.0, 50.0], ddof=1) / math.sqrt(3)
    quantiles = np.quantile((draws[:, 0] - 133 / 3) / standard_error, [0.9, 0.975, 0.995])
    assert quantiles == pytest.approx(student_t.ppf([0.9, 0.975, 0.995], 2), rel=0.04)  # 1.886, 4.303, 9.925
    assert seed_multipliers(np.random.default_rng(0), 1, 10) is None


def _components(d: np.ndarray, clusters: np.ndarray) -> tuple[float, float, float]:
    """Reference two-way moments with explicit loops: (seed, example, interaction) as documented in stats."""
    k, n = d.shape
    grand = sum(d[s, i] for s in range(k) for i in range(n)) / (k * n)
    seed_means = [sum(d[s]) / n for s in range(k)]
    example_means = [sum(d[:, i]) / k for i in range(n)]
    residual = sum((d[s, i] - seed_means[s] - example_means[i] + grand) ** 2 for s in range(k) for i in range(n))
    interaction = residual / ((k - 1) * (n - 1))
    labels = sorted(set(clusters.tolist()))
    totals = [sum(example_means[i] - grand for i in range(n) if clusters[i] == c) for c in labels]
    c = len(labels)
    example_total = c / (c - 1) * sum(t * t for t in totals) / n
    seed_var = sum((m - grand) ** 2 for m in seed_means) / (k - 1)
    return max(0.0, seed_var - interaction / n), max(0.0, example_total - interaction / k), interaction


def _crossed(rng: np.random.Generator, k: int, n: int, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    clusters = np.arange(n) % n_clusters
    d = (rng.normal(0, 2, (k, 1)) + rng.normal(0, 3, n_clusters)[clusters] + rng.normal(0, 5, n)
         + rng.normal(0, 6, (k, n)))
    return d, clusters


def test_paired_spread_matches_the_two_way_moments() -> None:
    d, clusters = _crossed(np.random.default_rng(3), 4, 30, 10)
    spread = paired_spread(d, clusters)
    assert (spread.seed, spread.example, spread.interaction) == pytest.approx(_components(d, clusters))
    one_seed = paired_spread(d[:1], clusters)
    assert math.isnan(one_seed.seed) and math.isnan(one_seed.interaction)
    assert one_seed.variance(30, 1) == pytest.approx(_components(np.vstack([d[:1], d[:1]]), clusters)[1] / 30)


def test_cluster_part_carries_the_example_effect_once() -> None:
    """Without the seed part and the t scale, the replicates' variance is example/n: the interaction, which the
    per-example means also carry, is left to the seed part (here a sixth more variance, which the 5 % tolerance
    would catch)."""
    d, clusters = _crossed(np.random.default_rng(4), 3, 60, 20)
    _, example, interaction = _components(d, clusters)
    counts = draw_clusters(np.random.default_rng(5), 20, 40_000).counts
    replicates = bootstrap_means(d[None], clusters, ClusterDraws(counts, np.ones(40_000)), np.zeros((40_000, 3)))
    assert replicates.estimate[0] == pytest.approx(d.mean())
    assert replicates.draws[:, 0].var() == pytest.approx(example / 60, rel=0.05)
    assert interaction / 180 > 0.1 * example / 60


def test_missing_examples_are_left_out_of_a_statistic() -> None:
    values = np.array([[[1.0, 2.0, np.nan, 4.0], [3.0, 4.0, 5.0, 6.0]]])  # example 2 misses on seed 1: not used
    replicates = bootstrap_means(values, np.arange(4), draw_clusters(np.random.default_rng(0), 4, 200),
                                 seed_multipliers(np.random.default_rng(1), 2, 200))
    assert replicates.estimate == pytest.approx([(7 / 3 + 13 / 3) / 2])
    # A replicate that draws only cluster 2 (probability 1/4^4 each) has no example of the statistic: NaN, and left
    # out of intervals and p-values.
    finite = np.isfinite(replicates.draws[:, 0])
    assert 190 < finite.sum() < 200
    low, high = percentile_interval(replicates.draws, 0.95)
    assert low[0] == pytest.approx(np.quantile(replicates.draws[finite, 0], 0.025))
    shifted = replicates.draws[finite, 0] - 3.0
    below, above = 1 + (shifted <= 0).sum(), 1 + (shifted >= 0).sum()
    assert bootstrap_p_value(replicates.draws - 3.0) == pytest.approx([2 * min(below, above) / (finite.sum() + 1)])


def test_percentile_interval_and_p_value_by_hand() -> None:
    draws = np.array([[-1.0], [1.0], [2.0], [3.0]])
    # Below or at zero: 1 (+1) of 4 (+1); at or above: 3 (+1): p = 2 * 2/5.
    assert bootstrap_p_value(draws) == pytest.approx([0.8])
    assert bootstrap_p_value(np.zeros((9, 1))) == pytest.approx([1.0])  # identical predictions: no evidence
    assert bootstrap_p_value(np.full((99, 1), 3.0)) == pytest.approx([2 / 100])  # the smallest p with 99 draws
    low, high = percentile_interval(np.arange(101.0)[:, None], 0.9)
    assert (low[0], high[0]) == pytest.approx((5.0, 95.0))


def test_holm_hand_example() -> None:
    # Sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> raised to 0.06 (monotone).
    adjusted = holm([0.01, 0.04, 0.03, math.nan, 0.005])
    assert adjusted[[0, 1, 2, 4]] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[3])  # not part of the family: m = 4
    assert list(adjusted[[0, 1, 2, 4]] < 0.05) == [True, False, False, True]
    assert holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]).shape == (0,)


def test_rank_ranges_by_hand() -> None:
    estimate = np.array([50.0, 60.0, 60.0])
    draws = np.array([[50.0, 60.0, 55.0]] * 3 + [[70.0, 60.0, 55.0]])  # entry 0 leads in 1 replicate of 4
    rank, low, high = rank_ranges(estimate, draws, 0.5)
    assert list(rank) == [3, 1, 1]  # ties share the better rank
    # Ranks per replicate: entry 0 -> 3, 3, 3, 1; entry 1 -> 1, 1, 1, 2; entry 2 -> 2, 2, 2, 3.
    # The central 50 % of [1, 3, 3, 3] runs from 1 to 3 (the lowest quarter is the 1).
    assert list(low) == [1, 1, 2] and list(high) == [3, 1, 2]
    assert list(rank_ranges(estimate, draws, 0.99)[2]) == [3, 2, 3]


def noncentral_t_multiple(alpha: float, power: float, dof: float) -> float:
    """The reference, from the definition: the δ at which a two-sided t test rejects with probability ``power``."""
    return brentq(lambda d: t_power(alpha, dof, d) - power, 0.0, 100.0)


def t_power(alpha: float, dof: float, delta: float) -> float:
    """P(|T| > t_{1-alpha/2}) for T noncentral t (scipy gives NaN for the far tail, which is 0 there)."""
    critical = student_t.ppf(1 - alpha / 2, dof)
    return float(nct.sf(critical, dof, delta) + np.nan_to_num(nct.cdf(-critical, dof, delta), nan=0.0))


def test_power_formulas_are_inverse() -> None:
    assert z_sum(0.05, 0.8) == pytest.approx(1.959964 + 0.841621, abs=1e-6)
    spread = PairedSpread(seed=4.0, example=300.0, interaction=100.0)
    assert spread.variance(200, 3) == pytest.approx(4 / 3 + 300 / 200 + 100 / 600)
    mde = detectable_difference(spread, 200, 3, 200, 0.05, 0.8)
    # Seed part (4 + 100/200)/3 = 1.5 points² on 2 df, cluster part 300/200 = 1.5 on 199 df.
    assert rejection_rate(mde, math.sqrt(1.5), math.sqrt(1.5), 3, 200, 0.05) == pytest.approx(0.8, abs=1e-6)
    assert examples_needed(spread, mde, 3, 1.0, 0.05, 0.8) == 200
    assert examples_needed(spread, mde * 1.0001, 3, 1.0, 0.05, 0.8) == 200  # never fewer than needed
    assert examples_needed(spread, mde * 0.9999, 3, 1.0, 0.05, 0.8) == 201
    # With 3 seeds the seed part alone is 4/3 points² on 2 df: 2 points is out of reach for any n.
    assert examples_needed(spread, 2.0, 3, 1.0, 0.05, 0.8) == math.inf
    one_seed = PairedSpread(math.nan, 400.0, math.nan)
    # One seed: the t test on C - 1 degrees of freedom, its power from the noncentral t law.
    assert detectable_difference(one_seed, 100, 1, 30, 0.05, 0.8) == pytest.approx(
        2 * noncentral_t_multiple(0.05, 0.8, 29), rel=3e-4)  # the quadrature: within 0.03 %
    assert math.isnan(examples_needed(one_seed, 2.0, 3, 1.0, 0.05, 0.8))  # seed variance unknown
    # The lower bound from one seed: 400 / (n k) <= (d / z)^2 -> n >= 400 / (3 * (5.6 / z)^2).
    assert examples_lower_bound(one_seed, 5.6, 3, 0.05, 0.8) == math.ceil(400 / (3 * (5.6 / z_sum(0.05, 0.8)) ** 2))
    assert pooled_spread([spread, PairedSpread(2.0, 100.0, 0.0)]) == PairedSpread(3.0, 200.0, 50.0)


@pytest.mark.parametrize(("alpha", "dof", "difference"), [(0.05, 1, 5.0), (0.01, 2, 8.0), (0.01, 4, 5.0),
                                                         (0.002, 14, 5.0), (0.05, 199, 3.0)])
def test_rejection_rate_of_one_part_is_the_t_tests_power(alpha: float, dof: int, difference: float) -> None:
    """The seed part alone (k = dof + 1 seeds), then the cluster part alone (C = dof + 1 clusters), against the
    noncentral t law."""
    exact = t_power(alpha, dof, difference)
    assert rejection_rate(difference, 1.0, 0.0, dof + 1, 10**9, alpha) == pytest.approx(exact, abs=2e-4)
    assert rejection_rate(difference, 0.0, 1.0, 1, dof + 1, alpha) == pytest.approx(exact, abs=2e-4)


def test_agreement_bound_is_the_exact_binomial_bound() -> None:
    """0 disagreements in n: the upper 97.5 % Clopper-Pearson bound solves (1 - u)^n = 0.025."""
    assert agreement_bound(16, 0.95) == pytest.approx(1 - 0.025 ** (1 / 16))
    assert agreement_bound(16, 0.95) == pytest.approx(0.2059, abs=1e-4)
    assert agreement_bound(1000, 0.95) < 0.004


@pytest.mark.parametrize(("field", "value"), [("resamples", 10), ("level", 1.0), ("power", 0.0)])
def test_bootstrap_config_rejects_bad_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        BootstrapConfig(**{field: value})
