"""Statistics of whole result stores: pairing, gap shares, power, clusters and the errors of a corrupt store."""
import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import nct, ttest_ind
from scipy.stats import t as student_t

from benchmark.store import StoreError, scan_store
from leaderboards.analysis import analyze
from leaderboards.stats import bootstrap_means, draw_clusters, percentile_interval
from leaderboards.render import markdown
from leaderboards.tables import build_document

SFT_SCORES = [10.0, 90.0, 30.0, 70.0, 50.0, 20.0, 80.0, 60.0]


def scored(store, method: str, values: list[float], seed: int = 1, **kwargs) -> None:
    store.cell("qed", "p", method, seed, {"f1": float(np.mean(values))}, scores={"f1": values}, **kwargs)


def two_seeds(store, method: str, values: list[float], **kwargs) -> None:
    """The same scores on seeds 1 and 2: a method compared on two seeds with no seed-to-seed spread."""
    for seed in (1, 2):
        scored(store, method, values, seed, **kwargs)


def by_method(analysis) -> dict[str, object]:
    return {c.method: c for c in analysis.comparisons}


def test_paired_test_finds_a_difference_an_unpaired_comparison_misses(store) -> None:
    """mlot beats sft by 4-6 points on every one of 8 examples whose difficulty spans 10-90 points (two seeds)."""
    two_seeds(store, "sft", SFT_SCORES)
    two_seeds(store, "mlot", [s + d for s, d in zip(SFT_SCORES, [4, 6, 5, 5, 4, 6, 5, 5])])
    analysis = analyze(scan_store(store.root))
    mlot = by_method(analysis)["mlot"]
    assert mlot.diff == pytest.approx(5.0) and mlot.ci_low > 3.5 and mlot.ci_high < 6.5
    assert mlot.p_holm < 0.01 and mlot.mark == "better"
    # Unpaired, the same scores say nothing: Welch's test and overlapping cell intervals.
    assert ttest_ind([s + 5 for s in SFT_SCORES], SFT_SCORES, equal_var=False).pvalue > 0.5
    cells = {c.method: c for c in analysis.cells}
    assert cells["mlot"].ci_low < cells["sft"].ci_high


def test_power_line_by_hand(store) -> None:
    """Paired differences 1, 3, 5, 7 (each example its own cluster, one seed): n * Var(mean) = 4/3 * 20 / 4,
    Var(mean) = 5/3; one comparison, so α = 0.05; a t test on 3 degrees of freedom reaches 80 % power at
    δ = 4.2559 standard errors (noncentral t), MDE = 4.2559 * sqrt(5/3) = 5.49. uld made sft's scores exactly: it
    is left out of the spread (with it, the pooled variance would halve) and named; it is one more comparison."""
    scored(store, "sft", [50.0, 50.0, 50.0, 50.0])
    scored(store, "mlot", [51.0, 53.0, 55.0, 57.0])
    (info,) = analyze(scan_store(store.root)).tables
    critical = student_t.ppf(0.975, 3)
    # (scipy's noncentral t cdf is NaN far in its lower tail, where it is 0)
    delta = brentq(lambda d: nct.sf(critical, 3, d) + np.nan_to_num(nct.cdf(-critical, 3, d)) - 0.8, 0.0, 10.0)
    assert delta == pytest.approx(4.2559, abs=1e-4)
    assert info.mde == pytest.approx(delta * math.sqrt(5 / 3), rel=3e-4)
    assert (info.power_examples, info.power_seeds, info.spread_methods, info.power_alpha) == pytest.approx((4, 1, 1, 0.05))
    scored(store, "uld", [50.0, 50.0, 50.0, 50.0])
    scan = scan_store(store.root)
    analysis = analyze(scan)
    (info,) = analysis.tables
    assert (info.spread_methods, info.identical_to_sft) == (1, ("uld",)) and info.power_alpha == pytest.approx(0.025)
    text = markdown(build_document(scan, analysis))
    assert (f"power: a true difference from sft of {info.mde:.1f} points is detected with 80 % power by the paired "
            f"test at α = 0.05/2 = 0.025 (Holm's first step over 2 comparisons) with t quantiles (spread of 1 "
            f"method's paired differences; uld scored as sft on every example and is left out; 4 examples in 4 "
            f"clusters, 1 seed); at one seed: a lower bound") in text


def test_gap_closed_is_defined_only_when_the_teacher_is_significantly_above_sft(store) -> None:
    two_seeds(store, "sft", SFT_SCORES)
    two_seeds(store, "mlot", [s + 5 for s in SFT_SCORES])
    scored(store, "teacher", [s + 10 for s in SFT_SCORES], seed=0)
    mlot = by_method(analyze(scan_store(store.root)))["mlot"]
    assert (mlot.gap, mlot.gap_low, mlot.gap_high, mlot.gap_note) == (0.5, 0.5, 0.5, "")


@pytest.mark.parametrize(("teacher", "note", "footnote"), [
    (None, "no-teacher", "p: no teacher row, so no gap to close."),
    ([s + d for s, d in zip(SFT_SCORES, [9, -9, 9, -9, 8, -8, 9, -9])], "teacher-not-above",
     "p: the teacher is not significantly above sft (+0.0 ["),
    ([s - 3 for s in SFT_SCORES], "teacher-not-above",
     "p: the teacher is significantly below sft (-3.0 [-3.0, -3.0], Holm p <0.001), so there is no gap to close."),
])
def test_undefined_gap_closed_is_a_dash_with_its_reason(store, teacher, note, footnote) -> None:
    two_seeds(store, "sft", SFT_SCORES)
    two_seeds(store, "mlot", [s + 5 for s in SFT_SCORES])
    if teacher is not None:
        scored(store, "teacher", teacher, seed=0)
    scan = scan_store(store.root)
    analysis = analyze(scan)
    mlot = by_method(analysis)["mlot"]
    assert math.isnan(mlot.gap) and mlot.gap_note == note
    text = markdown(build_document(scan, analysis))
    assert "| p | mlot | +5.0 [+5.0, +5.0] | " in text and " | better | 8/8 | –" in text
    assert "% [" not in text  # no share anywhere
    assert footnote in text


def test_reference_rows_pair_with_every_sft_seed_and_methods_need_a_common_seed(store) -> None:
    for seed in (1, 2, 3):
        scored(store, "sft", [50.0 + seed] * 8, seed=seed)
    scored(store, "teacher", [60.0] * 8, seed=0)
    scored(store, "uld", [55.0] * 8, seed=7)
    scan = scan_store(store.root)
    analysis = analyze(scan)
    comparisons = by_method(analysis)
    assert comparisons["teacher"].seeds == (1, 2, 3) and comparisons["teacher"].diff == pytest.approx(8.0)
    assert comparisons["uld"].seeds == () and math.isnan(comparisons["uld"].p)
    assert analysis.family_size == 1  # the comparison that cannot be made is not tested
    text = markdown(build_document(scan, analysis))
    assert "| p | uld | –² | – | – | – | – |" in text and "² p · uld: no seed in common with sft." in text


def test_clusters_come_from_the_predictions(store) -> None:
    clusters = ["s1", "s1", "s1", "s2", "s2", "s3", "s3", "s3"]
    scored(store, "sft", SFT_SCORES, clusters=clusters)
    scored(store, "mlot", SFT_SCORES, clusters=clusters)
    scored(store, "uld", SFT_SCORES)  # written before cluster ids: takes the ids other cells record
    scan = scan_store(store.root)
    (info,) = analyze(scan).tables
    assert (info.n_examples, info.n_clusters, info.cells_with_clusters, info.n_cells) == (8, 3, 2, 3)
    assert "8 evaluation examples in 3 clusters (cluster ids from 2 of 3 cells" in markdown(
        build_document(scan, analyze(scan)))


def test_one_example_in_two_clusters_is_a_store_error(store) -> None:
    scored(store, "sft", SFT_SCORES[:2], clusters=["a", "b"])
    scored(store, "mlot", SFT_SCORES[:2], clusters=["a", "a"])
    with pytest.raises(StoreError, match="example 'e1' is in cluster"):
        analyze(scan_store(store.root))


def test_missing_or_broken_predictions_are_store_errors(store) -> None:
    cell = store.cell("qed", "p", "sft", 1, {"f1": 50.0})
    (cell / "predictions.jsonl").write_text('{"id": "e0", "f1": 50.0}\n{"id": "e1", "f1": "high"}\n')
    with pytest.raises(StoreError, match=r"predictions.jsonl, line 2: metric 'f1' should be a finite number"):
        analyze(scan_store(store.root))
    # A file that does not parse makes the cell damaged: the scan lists it and leaves it out.
    (cell / "predictions.jsonl").write_text('{"id": "e0", "f1": 50.0}\nnot json\n')
    scan = scan_store(store.root)
    assert [d.where for d in scan.damaged] == ["qed/p/sft/seed1"] and "predictions.jsonl, line 2" in scan.damaged[0].reason
    assert not scan.cells
    # A cell of the older store format may lack the file for the scan, but the statistics need its examples.
    (cell / "predictions.jsonl").unlink()
    with pytest.raises(StoreError, match="predictions.jsonl is missing"):
        analyze(scan_store(store.root))


def test_rank_ranges_cover_the_observed_rank(store) -> None:
    rng = np.random.default_rng(0)
    for method, shift in (("sft", 0.0), ("mlot", 3.0), ("uld", 0.5), ("seqkd", -6.0)):
        two_seeds(store, method, list(np.clip(np.array(SFT_SCORES * 5) + shift + rng.normal(0, 8, 40), 0, 100)))
    cells = {c.method: c for c in analyze(scan_store(store.root)).cells}
    assert cells["seqkd"].rank == 4 and cells["mlot"].rank == 1
    for stats in cells.values():
        assert stats.rank_low <= stats.rank <= stats.rank_high


def test_identical_predictions_are_named_and_their_interval_is_the_agreement_bound(store) -> None:
    """mined and mlot made sft's 8 predictions; uld shares 5 of them; seqkd and gkd made the same predictions as each
    other, not as sft."""
    own = [f"sft{i}" for i in range(8)]
    scored(store, "sft", SFT_SCORES, predictions=own)
    scored(store, "mined", SFT_SCORES, predictions=own)
    scored(store, "mlot", SFT_SCORES, predictions=own)
    scored(store, "uld", SFT_SCORES[:5] + [0.0, 0.0, 0.0], predictions=own[:5] + ["u"] * 3)
    scored(store, "seqkd", [s + 1 for s in SFT_SCORES], predictions=[f"k{i}" for i in range(8)])
    scored(store, "gkd", [s + 1 for s in SFT_SCORES], predictions=[f"k{i}" for i in range(8)])
    scan = scan_store(store.root)
    analysis = analyze(scan)
    comparisons = by_method(analysis)
    bound = 100 * (1 - 0.025 ** (1 / 8))  # exact binomial: 0 disagreements in 8 clusters
    mined = comparisons["mined"]
    assert (mined.diff, mined.identical, mined.agreement) == (0.0, 8, True)
    assert (mined.ci_low, mined.ci_high) == (pytest.approx(-bound), pytest.approx(bound))
    assert (comparisons["uld"].identical, comparisons["uld"].agreement, comparisons["seqkd"].identical) == (5, False, 0)
    (info,) = analysis.tables
    assert info.identical_to_sft == ("mined", "mlot") and info.spread_methods == 3  # gkd, seqkd, uld
    assert sorted(map(sorted, info.identical_groups)) == [["gkd", "seqkd"], ["mined", "mlot", "sft"]]
    text = markdown(build_document(scan, analysis))
    assert "- p: identical predictions on every example: sft = mined = mlot; gkd = seqkd." in text
    assert f"| p | mined | +0.0 [{-bound:+.1f}, {bound:+.1f}]³ | – | –¹ | 8/8 | –² |" in text
    assert "| p | uld | -20.0 [" in text and " | 5/8 | " in text and "| p | seqkd | +1.0 [+1.0, +1.0] | – | –¹ | 0/8 |" in text
    assert "³ scored as sft on every example: the interval is the exact binomial 95 % bound" in text
    # gkd and seqkd tie for the best mean: neither is bold.
    assert "**" not in text.split("## qed")[1].split("### qed — rank ranges")[0]


def test_intervals_stay_inside_the_metric_range(store) -> None:
    """Seven of eight examples score 0: the resampled mean, with its t tails, reaches below 0 in more than 2.5 % of
    replicates, so the raw percentile interval leaves the range; the leaderboard's stops at 0 (and a difference's at
    -100)."""
    scores = [0.0] * 7 + [100.0]
    scored(store, "sft", scores)
    scored(store, "mlot", [100.0] * 7 + [0.0])
    raw = bootstrap_means(np.array([[scores]]), np.arange(8), draw_clusters(np.random.default_rng(0), 8, 10_000),
                          None).draws
    assert percentile_interval(raw, 0.95)[0][0] < 0
    analysis = analyze(scan_store(store.root))
    cells = {c.method: c for c in analysis.cells}
    assert cells["sft"].ci_low == 0.0 and cells["mlot"].ci_high == 100.0
    assert all(0.0 <= c.ci_low <= c.mean <= c.ci_high <= 100.0 for c in analysis.cells)
    mlot = by_method(analysis)["mlot"]
    assert -100.0 <= mlot.ci_low <= mlot.diff <= mlot.ci_high <= 100.0
