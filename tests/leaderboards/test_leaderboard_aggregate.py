import math

import pytest

from leaderboards.aggregate import seed_stats, summarize, t_quantile
from benchmark.store import CellRecord

# t_{0.975, df} from standard tables (6 decimals).
T_975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445, 5: 2.570582, 6: 2.446912, 7: 2.364624, 8: 2.306004,
         9: 2.262157, 10: 2.228139, 15: 2.131450, 20: 2.085963, 25: 2.059539, 29: 2.045230, 30: 2.042272,
         31: 2.039513, 40: 2.021075, 60: 2.000298, 120: 1.979930, 1000: 1.962339}


@pytest.mark.parametrize("df", sorted(T_975))
def test_t_quantile_matches_table(df: int) -> None:
    assert t_quantile(0.975, df) == pytest.approx(T_975[df], abs=1e-6)


def test_t_quantile_other_levels_and_symmetry() -> None:
    assert t_quantile(0.995, 4) == pytest.approx(4.604095, abs=1e-6)
    assert t_quantile(0.95, 10) == pytest.approx(1.812461, abs=1e-6)
    assert t_quantile(0.025, 2) == -t_quantile(0.975, 2)
    assert t_quantile(0.5, 7) == 0.0


@pytest.mark.parametrize(("q", "df"), [(0.0, 3), (1.0, 3), (0.9, 0)])
def test_t_quantile_rejects_bad_arguments(q: float, df: int) -> None:
    with pytest.raises(ValueError):
        t_quantile(q, df)


def test_seed_stats_three_seeds_by_hand() -> None:
    stats = seed_stats([50.0, 52.0, 54.0])
    half_width = 4.302653 * 2.0 / math.sqrt(3)  # t_{0.975,2} * std / sqrt(n)
    assert (stats.mean, stats.std, stats.n) == (52.0, 2.0, 3)
    assert stats.ci95_low == pytest.approx(52.0 - half_width, abs=1e-5)
    assert stats.ci95_high == pytest.approx(52.0 + half_width, abs=1e-5)


def test_seed_stats_one_seed_has_undefined_spread() -> None:
    stats = seed_stats([61.2])
    assert (stats.mean, stats.n) == (61.2, 1)
    assert math.isnan(stats.std) and math.isnan(stats.ci95_low) and math.isnan(stats.ci95_high)


def test_seed_stats_identical_seeds_have_zero_width() -> None:
    stats = seed_stats([55.0, 55.0])
    assert (stats.std, stats.ci95_low, stats.ci95_high) == (0.0, 55.0, 55.0)


def _cell(method: str, seed: int, f1: float, wall: float | None) -> CellRecord:
    return CellRecord("qed", "p", method, seed, "h", "f1", {"f1": f1, "exact_match": f1 - 10}, wall)


def test_summarize_groups_by_cell_and_metric() -> None:
    rows = summarize([_cell("mlot", 1, 50.0, 100.0), _cell("mlot", 2, 54.0, None), _cell("sft", 1, 40.0, None)])
    keys = [(r.method, r.metric, r.stats.n) for r in rows]
    assert keys == [("mlot", "exact_match", 2), ("mlot", "f1", 2), ("sft", "exact_match", 1), ("sft", "f1", 1)]
    assert rows[1].stats.mean == 52.0
    assert rows[1].mean_wall_time_s == 100.0  # only seeds that record a wall time count
    assert math.isnan(rows[3].mean_wall_time_s)
