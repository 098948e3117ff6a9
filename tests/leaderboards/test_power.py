"""The power line against simulation: a true difference equal to the printed minimal detectable difference is
detected by the marks' test (the paired bootstrap p-value at Holm's first step, α/m) about 80 % of the time.

The experiments have a known spread: paired differences d[s, e] = Δ + u_s + c_cluster(e) + ε_{s,e} with seed,
cluster and per-(seed, example) parts. The leaderboard's line is checked two ways: its number from a store built
with that spread is :func:`detectable_difference` of the spread it measures (by the documented method of moments,
on the methods that differ from sft), and the number of the true spread, simulated, is detected in 75–85 % of
experiments. Fixed seeds: the counts never change.
"""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.store import scan_store
from leaderboards.analysis import analyze
from leaderboards.stats import (
    PairedSpread,
    bootstrap_means,
    bootstrap_p_value,
    detectable_difference,
    draw_clusters,
    seed_multipliers,
)
from tests.leaderboards.test_calibration import SEED_SD

EXAMPLES, CLUSTERS, FAMILY, ALPHA = 120, 15, 5, 0.05
CLUSTER_SD, NOISE_SD = 3.0, 12.0  # of a difference: per cluster, and per seed and example


def true_spread(seed_sd: float) -> PairedSpread:
    """The components :class:`PairedSpread` defines, of the simulated differences: seed = Var(u), interaction =
    Var(ε), and example = n · Var(cluster part of the mean) = n · CLUSTER_SD² / C."""
    return PairedSpread(seed_sd**2, EXAMPLES * CLUSTER_SD**2 / CLUSTERS, NOISE_SD**2)


def differences(rng: np.random.Generator, seeds: int, seed_sd: float, shift: float) -> tuple[np.ndarray, np.ndarray]:
    codes = np.sort(np.arange(EXAMPLES) % CLUSTERS)
    values = (shift + rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, CLUSTER_SD, CLUSTERS)[codes]
              + rng.normal(0, NOISE_SD, (seeds, EXAMPLES)))
    return values, codes


@pytest.mark.parametrize(("seeds", "seed_sd"), [(1, 0.0), (3, SEED_SD), (5, SEED_SD)])
def test_a_difference_equal_to_the_mde_is_detected_about_80_percent_of_the_time(seeds: int, seed_sd: float) -> None:
    """One seed: the line is about the trained models (no seed part; for methods it is a lower bound)."""
    alpha = ALPHA / FAMILY
    mde = detectable_difference(true_spread(seed_sd), EXAMPLES, seeds, CLUSTERS, alpha, 0.8)
    rng = np.random.default_rng(7)
    detected = []
    for _ in range(400):
        values, codes = differences(rng, seeds, seed_sd, mde)
        draws = bootstrap_means(values[None], codes, draw_clusters(rng, CLUSTERS, 4000),
                                seed_multipliers(rng, seeds, 4000)).draws
        detected.append(bootstrap_p_value(draws)[0] < alpha)
    rate = float(np.mean(detected))
    print(f"{seeds} seed(s), seed SD {seed_sd}: MDE {mde:.2f} points at α = {alpha}; detected {rate:.1%}")
    assert 0.75 <= rate <= 0.85


def test_the_leaderboard_line_uses_the_measured_spread_of_the_methods_that_differ(store) -> None:
    """Three seeds, five methods shifted from sft by the simulation's differences, and one method that made sft's
    scores exactly: the line pools the five (the identical one is named and left out) by the method of moments,
    written out here from the formulas of docs/statistics.md, and tests at α / 6 (six comparisons with sft)."""
    rng = np.random.default_rng(11)
    base = rng.uniform(20, 80, EXAMPLES)
    codes = np.sort(np.arange(EXAMPLES) % CLUSTERS)
    clusters = [f"s{c}" for c in codes]
    for seed in (1, 2, 3):
        store.cell("qed", "p", "sft", seed, {"f1": float(base.mean())}, scores={"f1": list(base)}, clusters=clusters)
        store.cell("qed", "p", "copy", seed, {"f1": float(base.mean())}, scores={"f1": list(base)}, clusters=clusters)
    components = []
    for method in ("m1", "m2", "m3", "m4", "m5"):
        values, _ = differences(rng, 3, SEED_SD, 0.0)
        for seed in (1, 2, 3):
            row = base + values[seed - 1]
            store.cell("qed", "p", method, seed, {"f1": float(row.mean())}, scores={"f1": list(row)},
                       clusters=clusters)
        seed_means, example_means = values.mean(axis=1), values.mean(axis=0)
        interaction = ((values - seed_means[:, None] - example_means + values.mean()) ** 2).sum() / (2 * (EXAMPLES - 1))
        cluster_sums = np.bincount(codes, example_means - values.mean())
        example = CLUSTERS / (CLUSTERS - 1) * (cluster_sums**2).sum() / EXAMPLES - interaction / 3
        components.append((max(0.0, seed_means.var(ddof=1) - interaction / EXAMPLES), example, interaction))
    (info,) = analyze(scan_store(store.root)).tables
    assert info.identical_to_sft == ("copy",) and info.spread_methods == 5
    assert (info.spread.seed, info.spread.example, info.spread.interaction) == pytest.approx(
        tuple(np.mean(components, axis=0)))
    assert info.power_alpha == pytest.approx(0.05 / 6)
    assert (info.power_examples, info.power_clusters, info.power_seeds) == (EXAMPLES, CLUSTERS, 3)
    assert info.mde == pytest.approx(detectable_difference(info.spread, EXAMPLES, 3, CLUSTERS, 0.05 / 6, 0.8))
