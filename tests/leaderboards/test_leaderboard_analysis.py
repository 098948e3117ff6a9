"""Statistics of whole result stores: pairing, gap shares, power, clusters and the errors of a corrupt store."""
import math

import numpy as np
import pytest
from scipy.stats import ttest_ind

from benchmark.store import StoreError, scan_store
from leaderboards.analysis import analyze
from leaderboards.render import markdown
from leaderboards.tables import build_document

SFT_SCORES = [10.0, 90.0, 30.0, 70.0, 50.0, 20.0, 80.0, 60.0]


def scored(store, method: str, values: list[float], seed: int = 1, **kwargs) -> None:
    store.cell("qed", "p", method, seed, {"f1": float(np.mean(values))}, scores={"f1": values}, **kwargs)


def by_method(analysis) -> dict[str, object]:
    return {c.method: c for c in analysis.comparisons}


def test_paired_test_finds_a_difference_an_unpaired_comparison_misses(store) -> None:
    """mlot beats sft by 4-6 points on every one of 8 examples whose difficulty spans 10-90 points."""
    scored(store, "sft", SFT_SCORES)
    scored(store, "mlot", [s + d for s, d in zip(SFT_SCORES, [4, 6, 5, 5, 4, 6, 5, 5])])
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
    Var(mean) = 5/3, MDE = (1.95996 + 0.84162) * sqrt(5/3) = 3.617."""
    scored(store, "sft", [50.0, 50.0, 50.0, 50.0])
    scored(store, "mlot", [51.0, 53.0, 55.0, 57.0])
    (info,) = analyze(scan_store(store.root)).tables
    assert info.mde == pytest.approx(2.801585 * math.sqrt(5 / 3), rel=1e-5)
    assert (info.power_examples, info.power_seeds, info.spread_methods) == (4, 1, 1)
    assert "power: a true difference from sft of 3.6 points" in markdown(build_document(scan_store(store.root),
                                                                                         analyze(scan_store(store.root))))


def test_gap_closed_is_defined_only_when_the_teacher_is_significantly_above_sft(store) -> None:
    scored(store, "sft", SFT_SCORES)
    scored(store, "mlot", [s + 5 for s in SFT_SCORES])
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
    scored(store, "sft", SFT_SCORES)
    scored(store, "mlot", [s + 5 for s in SFT_SCORES])
    if teacher is not None:
        scored(store, "teacher", teacher, seed=0)
    scan = scan_store(store.root)
    analysis = analyze(scan)
    mlot = by_method(analysis)["mlot"]
    assert math.isnan(mlot.gap) and mlot.gap_note == note
    text = markdown(build_document(scan, analysis))
    assert "| p | mlot | +5.0 [+5.0, +5.0] | " in text and " | better | –" in text
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
    assert "| p | uld | –² | – | – | – |" in text and "² p · uld: no seed in common with sft." in text


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
        scored(store, method, list(np.clip(np.array(SFT_SCORES * 5) + shift + rng.normal(0, 8, 40), 0, 100)))
    cells = {c.method: c for c in analyze(scan_store(store.root)).cells}
    assert cells["seqkd"].rank == 4 and cells["mlot"].rank == 1
    for stats in cells.values():
        assert stats.rank_low <= stats.rank <= stats.rank_high
