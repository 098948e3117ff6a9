import csv
import io
import re

import pytest

from benchmark.store import scan_store
from leaderboards import render_leaderboards
from leaderboards.analysis import analyze
from leaderboards.render import leaderboard_csv, markdown, summary_csv, vs_sft_csv
from leaderboards.tables import build_document

GEMMA, QWEN = "gemma-smollm", "qwen-smollm"


def build_grid(store) -> None:
    """Two tasks. Every example of a cell scores the cell's value, so only seeds vary: the single-seed numbers
    (dialogsum, qwen-smollm) are exact, and the three-seed ones are checked for consistency across outputs."""
    def qa(f1: float) -> dict[str, float]:
        return {"f1": f1, "exact_match": f1 - 10.0}

    store.cell("qed", GEMMA, "teacher", 0, qa(70.0))
    store.cell("qed", QWEN, "teacher", 0, qa(62.0))
    store.cell("qed", GEMMA, "untrained", 0, qa(10.0))
    store.cell("qed", QWEN, "untrained", 0, qa(12.5))
    for seed, (gemma, qwen) in enumerate([(50.0, 55.0), (52.0, 55.0), (54.0, 55.0)], start=1):
        store.cell("qed", GEMMA, "sft", seed, qa(gemma))
        store.cell("qed", QWEN, "sft", seed, qa(qwen))
    for seed, value in enumerate([55.0, 56.0, 60.0], start=1):  # differences from sft: 5, 4, 6
        store.cell("qed", GEMMA, "mlot", seed, qa(value), wall_time_s=100.0 * seed,
                   train={"steps": 10, "wall_time_s": 5.0 * seed, "resumed_from_step": 0}, peak_memory_mb=1024.0 * seed)
    store.cell("qed", GEMMA, "mlot", 4, qa(99.0), done=False)  # unfinished: must not count
    store.cell("qed", QWEN, "mlot", 1, qa(58.0))
    for seed, value in enumerate([53.0, 54.0, 55.0], start=1):
        store.cell("qed", GEMMA, "uld", seed, qa(value))
    store.failed("qed", QWEN, "uld", 1, "CUDA out of memory | batch 8\nTraceback (most recent call last):")
    # dialogsum: teacher == sft, so there is no gap to close; a student beats the teacher. Cluster ids recorded.
    rouge = lambda v: {"rouge1": v + 5, "rouge2": v - 10, "rougeL": v, "rougeLsum": v + 1}  # noqa: E731
    for method, value in (("teacher", 30.0), ("sft", 30.0), ("mlot", 32.0)):
        store.cell("dialogsum", GEMMA, method, 0 if method == "teacher" else 1, rouge(value), headline="rougeL",
                   clusters=["a", "a", "b", "b"])
    store.skipped([{"pair": "llama2-7b-chat-opt-350m", "reason": "weights not reachable offline: no hub access"}])


VS_SFT_INTRO = (
    "Difference from sft in points on the same examples and seeds, with its 95 % interval; p from a paired "
    "bootstrap test, Holm-corrected over the leaderboard's 6 comparisons paired on two or more seeds; mark at "
    "α = 0.05 after correction: better, worse, or n.d. (not distinguishable from sft). \"identical to sft\": "
    "examples on which the row made sft's prediction on every paired seed. Gap closed = (method − sft) / "
    "(teacher − sft) with its interval from the same bootstrap, only where the teacher is significantly above sft."
)

# One seed everywhere: no marks, no rank ranges, no gap shares; the teacher scored as sft on every example, so
# its interval is the agreement bound over 2 clusters: 100 * (1 - 0.025 ** (1 / 2)) = 84.2.
EXPECTED_DIALOGSUM = f"""\
## dialogsum

Headline metric: `rougeL`; seeds per cell: 1. One seed: the intervals cover the sampling of evaluation examples, not training-seed variance. A comparison paired on one seed gets no better/worse mark and a table with a one-seed trained row no rank ranges: one training run cannot tell a method from its seed's luck; a second seed is needed.

- gemma-smollm: 4 evaluation examples in 2 clusters; power: a true difference from sft of 0.0 points is detected with 80 % power by the paired test at α = 0.05/6 = 0.0083 (Holm's first step over 6 comparisons) with t quantiles (spread of 1 method's paired differences; 4 examples in 2 clusters, 1 seed); at one seed: a lower bound (training-seed variance is not measured and adds to it; no marks are given at one seed).
- gemma-smollm: identical predictions on every example: teacher = sft = mlot.

| method | gemma-smollm |
| --- | ---: |
| teacher | 30.0 [30.0, 30.0] |
| sft | 30.0 [30.0, 30.0] |
| mlot | **32.0 [32.0, 32.0]** |

### dialogsum — rank ranges

Rank among the student rows by mean (1 = best, ties share a rank) and, in brackets, the range that holds 95 % of the ranks over bootstrap replicates of the whole table.

| method | gemma-smollm |
| --- | ---: |
| sft | 2 (–¹) |
| mlot | 1 (–¹) |

¹ a trained row of this pair has one seed: no rank range (a second seed is needed to tell a method from its training seed's luck).

### dialogsum — vs SFT

{VS_SFT_INTRO}

| pair | method | Δ vs sft [95 % interval] | p (Holm) | mark | identical to sft | gap closed [95 % interval] |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
| gemma-smollm | teacher | +0.0 [-84.2, +84.2]¹ | – | –² | 4/4 | –³ |
| gemma-smollm | mlot | +2.0 [+2.0, +2.0] | – | –² | 4/4 | –⁴ |

¹ scored as sft on every example: the interval is the exact binomial 95 % bound on the share of examples that could differ, times the metric's range (`docs/statistics.md`).
² paired on one seed: no mark, a second seed is needed (one training run cannot tell a method from its seed's luck).
³ the teacher row defines the gap.
⁴ gemma-smollm: paired on one seed, so whether the teacher is above sft, and the share, would leave out training-seed variance; a second seed is needed.

### dialogsum — cost

Training seconds per optimizer step, the cell's wall time (teacher-cache building, training and evaluation), its CPU time (the process's CPU seconds, all threads, in CPU-minutes) and its peak memory (GPU allocated or CPU resident, see `run.json`), means over seeds.

| method | gemma-smollm |
| --- | ---: |
| teacher | – |
| sft | – |
| mlot | – |
"""

EXPECTED_TAIL = """\
## Failed cells

| task | pair | method | seed | reason |
| --- | --- | --- | --- | --- |
| qed | qwen-smollm | uld | 1 | CUDA out of memory \\| batch 8 |

## Skipped pairs

| pair | reason |
| --- | --- |
| llama2-7b-chat-opt-350m | weights not reachable offline: no hub access |
"""


def texts(root) -> dict[str, str]:
    """The text outputs, without the (slower) PNG and the page."""
    scan = scan_store(root)
    analysis = analyze(scan)
    return {"csv": leaderboard_csv(scan), "summary": summary_csv(analysis), "vs_sft": vs_sft_csv(analysis),
            "md": markdown(build_document(scan, analysis))}


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    from tests.leaderboards.conftest import StoreBuilder

    store = StoreBuilder(tmp_path_factory.mktemp("grid") / "runs")
    build_grid(store)
    return store, texts(store.root)


def test_markdown_header_records_the_resampling_and_the_family(grid) -> None:
    markdown_text = grid[1]["md"]
    assert markdown_text.startswith("# CTKD-Bench leaderboard\n\nEach cell is the task's headline metric")
    assert ("Bootstrap: 10,000 resamples, seed 20240611. Holm family: the 6 comparisons with sft in this "
            "leaderboard paired on two or more seeds (every task, pair and method, headline metric), corrected "
            "together at α = 0.05; a comparison on one seed gets no mark.") in markdown_text


def test_markdown_single_seed_section_by_hand(grid) -> None:
    markdown_text = grid[1]["md"]
    assert "\n" + EXPECTED_DIALOGSUM + "\n## qed\n" in markdown_text
    assert markdown_text.endswith("\n" + EXPECTED_TAIL)


def test_markdown_three_seed_section_matches_the_csv_files(grid) -> None:
    _, outputs = grid
    markdown_text = outputs["md"]
    section = markdown_text[markdown_text.index("## qed"):markdown_text.index("## Failed cells")]
    assert "Headline metric: `f1`; seeds per cell: 1–3. A comparison paired on one seed gets no better/worse" in section
    assert ("- gemma-smollm: 4 evaluation examples, each its own cluster (this store records no cluster ids: it was "
            "written before they were); power: a true difference from sft of ") in section
    summary = {(r["pair"], r["method"]): r for r in rows(outputs["summary"]) if r["metric"] == "f1"}
    gemma_mlot = summary[GEMMA, "mlot"]
    assert (gemma_mlot["mean"], gemma_mlot["n_seeds"], gemma_mlot["seed_std"]) == ("57.0", "3", str(7**0.5))
    low, high = float(gemma_mlot["ci_low"]), float(gemma_mlot["ci_high"])
    assert low < 57.0 < high
    assert f"| mlot | **57.0 [{low:.1f}, {high:.1f}]** | **58.0 [58.0, 58.0]** |" in section
    assert "| sft | 52.0 [" in section and "| 55.0 [55.0, 55.0] |" in section  # qwen sft: three seeds, all 55
    comparisons = {(r["pair"], r["method"]): r for r in rows(outputs["vs_sft"])}
    mlot = comparisons[GEMMA, "mlot"]
    assert float(mlot["diff"]) == pytest.approx(5.0) and mlot["seeds"] == "1 2 3"
    expected_row = (f"| gemma-smollm | mlot | +5.0 [{float(mlot['ci_low']):+.1f}, {float(mlot['ci_high']):+.1f}] | ")
    assert expected_row in section
    qwen_mlot = comparisons[QWEN, "mlot"]
    # Paired with sft on seed 1 only: no mark and no gap share, each with its footnote.
    assert (qwen_mlot["seeds"], qwen_mlot["diff"], qwen_mlot["mark"], qwen_mlot["p_holm"]) == ("1", "3.0", "", "nan")
    assert "| qwen-smollm | mlot | +3.0 [+3.0, +3.0] | – | –² | 4/4 | –³ |" in section
    assert "² paired on one seed: no mark, a second seed is needed" in section
    # The reference rows pair with sft's three seeds: marked, and gap shares where the teacher is above sft.
    assert "| qwen-smollm | untrained | -42.5 [-42.5, -42.5] | 0.001 | worse | 4/4 | -607.1 % [-607.1, -607.1] |" in section
    assert "| gemma-smollm | mlot | +5.0 [" in section and "| better | 4/4 | 27.8 % [" in section
    # Rank ranges only where every trained row has two or more seeds (gemma), not for qwen (mlot on one seed).
    assert "### qed — rank ranges" in section and re.search(r"\| untrained \| 4 \(4–4\) \| 3 \(–¹\) \|", section)


def test_teacher_is_never_bold_and_a_tie_is_not_bold(store) -> None:
    store.cell("qed", "p", "teacher", 0, {"f1": 80.0})
    store.cell("qed", "p", "mlot", 1, {"f1": 50.0})
    store.cell("qed", "p", "uld", 1, {"f1": 50.0})
    markdown_text = texts(store.root)["md"]
    assert "| teacher | 80.0 [80.0, 80.0] |" in markdown_text
    assert "| mlot | 50.0 [50.0, 50.0] |" in markdown_text and "| uld | 50.0 [50.0, 50.0] |" in markdown_text
    assert "**" not in markdown_text.split("## qed")[1]
    assert "— vs SFT" not in markdown_text  # no sft row, no comparisons
    assert "power: not estimated (needs sft and a trained method on the same examples that differs" in markdown_text
    store.cell("qed", "p", "seqkd", 1, {"f1": 51.0})
    assert "| seqkd | **51.0 [51.0, 51.0]** |" in texts(store.root)["md"]  # one best row: bold


def test_leaderboard_csv_is_long_and_exact(store) -> None:
    store.cell("qed", "p", "teacher", 0, {"f1": 61.23456789, "exact_match": 50.0}, config_hash="t", wall_time_s=9.5)
    for seed, value in enumerate([50.0, 52.0], start=1):
        store.cell("qed", "p", "mlot", seed, {"f1": value, "exact_match": value - 10}, config_hash=f"m{seed}",
                   train={"steps": 4, "wall_time_s": 2.0}, peak_memory_mb=512.0)
    assert texts(store.root)["csv"] == (
        "task,pair,method,seed,metric,value,headline,config_hash,wall_time_s,train_s_per_step,peak_memory_mb\n"
        "qed,p,teacher,0,exact_match,50.0,False,t,9.5,nan,nan\n"
        "qed,p,teacher,0,f1,61.23456789,True,t,9.5,nan,nan\n"
        "qed,p,mlot,1,exact_match,40.0,False,m1,nan,0.5,512.0\n"
        "qed,p,mlot,1,f1,50.0,True,m1,nan,0.5,512.0\n"
        "qed,p,mlot,2,exact_match,42.0,False,m2,nan,0.5,512.0\n"
        "qed,p,mlot,2,f1,52.0,True,m2,nan,0.5,512.0\n"
    )


def test_summary_csv(store) -> None:
    store.cell("qed", "p", "teacher", 0, {"f1": 61.2})
    for seed, value in enumerate([50.0, 52.0, 54.0], start=1):
        store.cell("qed", "p", "mlot", seed, {"f1": value}, wall_time_s=[100.0, 110.0, 120.0][seed - 1],
                   train={"steps": 4, "wall_time_s": 2.0 * seed}, peak_memory_mb=None if seed == 3 else 100.0 * seed,
                   run={"cpu_time_s": 150.0 * seed})
    rendered = texts(store.root)
    header, teacher, mlot = list(csv.reader(io.StringIO(rendered["summary"])))
    # the store's cost: CPU 150 + 300 + 450 s where recorded (not by the teacher cell), wall 100 + 110 + 120 s
    assert ("\nCost of the 4 complete cells: 0.25 CPU-hours (1 cells do not record CPU time), 0.09 hours of wall "
            "time.\n") in rendered["md"]
    assert header == ["task", "pair", "method", "metric", "mean", "ci_low", "ci_high", "seed_std", "n_seeds",
                      "n_examples", "n_clusters", "rank", "rank_low", "rank_high", "mean_wall_time_s",
                      "mean_train_s_per_step", "mean_peak_memory_mb", "mean_cpu_time_s", "ci_level",
                      "bootstrap_resamples", "bootstrap_seed"]
    # Every example scores 61.2: nothing varies, the interval is the value. The teacher has no rank.
    assert teacher == ["qed", "p", "teacher", "f1", "61.2", "61.2", "61.2", "nan", "1", "4", "4", "nan", "nan", "nan",
                       "nan", "nan", "nan", "nan", "0.95", "10000", "20240611"]
    # s/step 0.5, 1.0, 1.5 -> 1.0; peak memory only where recorded: (100 + 200) / 2; CPU (150 + 300 + 450) / 3.
    assert mlot[:5] + mlot[7:] == ["qed", "p", "mlot", "f1", "52.0", "2.0", "3", "4", "4", "1", "1", "1", "110.0",
                                   "1.0", "150.0", "300.0", "0.95", "10000", "20240611"]
    assert float(mlot[5]) < 52.0 < float(mlot[6])


def test_vs_sft_csv_records_both_p_values_and_the_resampling(grid) -> None:
    by_key = {(r["task"], r["pair"], r["method"]): r for r in rows(grid[1]["vs_sft"])}
    assert list(next(iter(by_key.values()))) == [
        "task", "pair", "method", "seeds", "n_examples", "n_clusters", "diff", "ci_low", "ci_high", "p", "p_holm",
        "holm_family_size", "mark", "identical", "agreement", "gap", "gap_low", "gap_high", "gap_note", "ci_level",
        "bootstrap_resamples", "bootstrap_seed"]
    teacher = by_key["dialogsum", GEMMA, "teacher"]  # one sft seed: outside the family, no mark
    assert (teacher["diff"], teacher["p"], teacher["p_holm"], teacher["mark"]) == ("0.0", "1.0", "nan", "")
    assert (teacher["agreement"], float(teacher["ci_high"])) == ("True", pytest.approx(100 * (1 - 0.025 ** 0.5)))
    mlot = by_key["dialogsum", GEMMA, "mlot"]
    assert float(mlot["p"]) == pytest.approx(2 / 10_001) and mlot["p_holm"] == "nan"
    assert (mlot["gap"], mlot["gap_note"], mlot["holm_family_size"], mlot["agreement"]) == ("nan", "one-seed", "6",
                                                                                            "False")
    # Holm over the six three-seed comparisons; qwen's reference rows have no spread: p = 2/10001, 6 * that.
    assert float(by_key["qed", QWEN, "teacher"]["p_holm"]) == pytest.approx(6 * 2 / 10_001)
    assert by_key["qed", GEMMA, "mlot"]["gap"] == str(5 / 18)


def test_unfinished_cells_are_ignored(grid) -> None:
    _, outputs = grid
    assert "99.0" not in outputs["csv"]
    (mlot,) = [r for r in rows(outputs["summary"]) if (r["task"], r["pair"], r["method"], r["metric"]) == ("qed", GEMMA, "mlot", "f1")]
    assert (mlot["mean"], mlot["n_seeds"], mlot["mean_wall_time_s"]) == ("57.0", "3", "200.0")


def test_rendering_twice_is_byte_identical(store) -> None:
    build_grid(store)
    first = {name: path.read_bytes() for name, path in render_leaderboards(store.root).items()}
    second = {name: path.read_bytes() for name, path in render_leaderboards(store.root).items()}
    assert first == second  # outputs written beside the cells must not be read back as results
    assert sorted(first) == ["leaderboard.csv", "leaderboard.html", "leaderboard.md", "leaderboard.png",
                             "leaderboard_curves.png", "summary.csv", "vs_sft.csv"]


def test_out_dir_and_no_temporary_files_left(store, tmp_path) -> None:
    store.cell("qed", "p", "mlot", 1, {"f1": 50.0})
    out = tmp_path / "site" / "boards"
    paths = render_leaderboards(store.root, out_dir=out)
    assert {p.parent for p in paths.values()} == {out}
    assert sorted(p.name for p in out.iterdir()) == sorted(paths)
    assert not (store.root / "leaderboard.md").exists()


def test_a_stores_reading_opens_its_markdown_and_nothing_else(store, tmp_path) -> None:
    store.cell("qed", "p", "mlot", 1, {"f1": 50.0})
    plain = {name: path.read_bytes() for name, path in render_leaderboards(store.root, tmp_path / "a").items()}
    (store.root / "reading.md").write_text("# Reference\n\nWhat is concluded.\n", encoding="utf-8")
    read = {name: path.read_bytes() for name, path in render_leaderboards(store.root, tmp_path / "b").items()}
    assert read["leaderboard.md"] == b"# Reference\n\nWhat is concluded.\n\n" + plain["leaderboard.md"]
    assert {name for name in read if read[name] != plain[name]} == {"leaderboard.md"}


def test_empty_store_is_an_error_naming_it(store) -> None:
    store.cell("qed", "p", "mlot", 1, {"f1": 50.0}, done=False)
    with pytest.raises(ValueError, match=f"no completed cells under {store.root}"):
        render_leaderboards(store.root)


def test_failed_only_store_still_reports_failures(store) -> None:
    store.failed("qed", "p", "mlot", 1, "loss is NaN at step 3")
    paths = render_leaderboards(store.root)
    markdown_text = paths["leaderboard.md"].read_text(encoding="utf-8")
    assert "| qed | p | mlot | 1 | loss is NaN at step 3 |" in markdown_text
    assert "## Skipped pairs\n\nNone.\n" in markdown_text
    assert paths["summary.csv"].read_text(encoding="utf-8").count("\n") == 1  # header only


def test_each_task_section_notes_the_overlap_of_each_pair(store) -> None:
    overlap = {"vocabulary": {"student_share": 0.8408}, "text": {"one_to_one_share": 0.8417}}
    store.cell("qed", "p", "teacher", 0, {"f1": 80.0}, run={"overlap": overlap})
    store.cell("qed", "p", "sft", 1, {"f1": 50.0}, run={"overlap": overlap})
    store.cell("qed", "q", "sft", 1, {"f1": 50.0}, run={"overlap": {"vocabulary": {"student_share": 0.434}}})
    store.cell("qed", "r", "sft", 1, {"f1": 50.0}, wall_time_s=2.0)  # no overlap recorded: no line
    markdown_text = texts(store.root)["md"]
    assert "\n- p overlap: O_V 0.84 · O_T 0.84 (O_V: share of the student's vocabulary that a teacher token " \
           "writes, byte for byte; O_T: share of the student's answer tokens aligned 1:1 with a teacher token on " \
           "this task's training answers).\n- q overlap: O_V 0.43 · O_T – (O_V" in markdown_text
    assert "- r overlap" not in markdown_text
