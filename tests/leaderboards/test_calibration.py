"""Calibration of the paired, clustered bootstrap on synthetic experiments with a known truth.

Each experiment simulates per-example scores of sft and of methods on the same examples and seeds: a shared
example difficulty (which pairing cancels), a story effect shared by the examples of one cluster, seed effects,
and per-(seed, example) noise. What an interval claims to cover decides the truth: with several seeds, the
difference between two training procedures (seed effects are part of the noise); with one seed, the difference
between the two trained models over the population of examples (one seed cannot tell the seed's luck from the
method, as the leaderboard's header says), so one-seed experiments draw no seed effects. All random numbers come from fixed seeds, so every count below is the same on
every run: the bounds are checked against one fixed outcome, never re-drawn, and the tests are not flaky.
"""
from __future__ import annotations

import numpy as np
import pytest

from leaderboards.stats import (
    bootstrap_means,
    bootstrap_p_value,
    draw_clusters,
    holm,
    percentile_interval,
    seed_multipliers,
)

EXPERIMENTS = 200
RESAMPLES = 1000


def simulate(rng: np.random.Generator, methods: int, seeds: int, examples: int, clusters: int,
             true_difference: float) -> tuple[np.ndarray, np.ndarray]:
    """``[methods, seeds, examples]`` paired differences from sft, and the examples' cluster codes."""
    codes = np.sort(np.arange(examples) % clusters)
    difficulty = rng.uniform(20, 80, examples) + rng.normal(0, 10, clusters)[codes]

    def scores(shift: float) -> np.ndarray:
        cluster_effect = rng.normal(0, 5, clusters)[codes]  # this model's luck with each story
        seed_effect = rng.normal(0, 1.5 if seeds > 1 else 0.0, (seeds, 1))
        return difficulty + shift + cluster_effect + seed_effect + rng.normal(0, 12, (seeds, examples))

    sft = scores(0.0)
    return np.stack([scores(true_difference) - sft for _ in range(methods)]), codes


def run(true_difference: float, methods: int, seeds: int, *, ignore_clusters: bool = False, seed: int = 0):
    """Intervals and p-values of every experiment: ``[EXPERIMENTS, methods]`` arrays (low, high, p)."""
    rng = np.random.default_rng(seed)
    lows, highs, ps = [], [], []
    for _ in range(EXPERIMENTS):
        differences, codes = simulate(rng, methods, seeds, examples=120, clusters=15, true_difference=true_difference)
        if ignore_clusters:
            codes = np.arange(len(codes))
        cluster_draws = draw_clusters(rng, int(codes.max()) + 1, RESAMPLES)
        replicates = bootstrap_means(differences, codes, cluster_draws, seed_multipliers(rng, seeds, RESAMPLES))
        low, high = percentile_interval(replicates.draws, 0.95)
        lows.append(low), highs.append(high), ps.append(bootstrap_p_value(replicates.draws))
    return np.array(lows), np.array(highs), np.array(ps)


@pytest.mark.parametrize("seeds", [1, 3])
def test_interval_covers_the_true_difference(seeds: int) -> None:
    low, high, _ = run(true_difference=2.0, methods=1, seeds=seeds)
    coverage = ((low <= 2.0) & (2.0 <= high)).mean()
    print(f"coverage of the 95 % interval, {seeds} seed(s): {coverage:.1%}")
    assert 0.90 <= coverage <= 0.99


def test_ignoring_the_clusters_undercovers() -> None:
    """The negative control: the same experiments resampled example by example miss the story effect."""
    low, high, _ = run(true_difference=2.0, methods=1, seeds=1, ignore_clusters=True)
    coverage = ((low <= 2.0) & (2.0 <= high)).mean()
    print(f"coverage when clusters are ignored: {coverage:.1%}")
    assert coverage < 0.90


@pytest.mark.parametrize("seeds", [1, 3])
def test_holm_keeps_the_family_wise_error_under_a_true_null(seeds: int) -> None:
    """Five methods equal to sft in truth, tested together. The bound checked is 8 % of 200 experiments with any
    rejection: the nominal 5 % plus two binomial standard deviations (sqrt(0.05 * 0.95 / 200) = 1.5 %). Without
    the correction the same p-values exceed that bound (up to 1 - 0.95^5 = 23 % for independent tests), which the
    test checks too, so it fails if Holm is skipped."""
    _, _, p = run(true_difference=0.0, methods=5, seeds=seeds, seed=1)
    family_error = np.mean([(holm(row) < 0.05).any() for row in p])
    uncorrected = (p < 0.05).any(axis=1).mean()
    print(f"under the null, {seeds} seed(s): family-wise rejections {family_error:.1%} with Holm, {uncorrected:.1%} without; "
          f"single comparisons rejected {(p < 0.05).mean():.1%}")
    assert family_error <= 0.08
    assert uncorrected > 0.08
