import csv
import io
import math

import pytest

from leaderboards import render_leaderboards
from leaderboards.aggregate import summarize
from leaderboards.render import leaderboard_csv, leaderboard_markdown, summary_csv
from benchmark.store import scan_store

GEMMA, QWEN = "gemma-smollm", "qwen-smollm"


def build_grid(store) -> None:
    """Two tasks; hand-picked numbers so every rendered value can be checked by hand."""
    def qa(f1: float) -> dict[str, float]:
        return {"f1": f1, "exact_match": f1 - 10.0}

    store.cell("qed", GEMMA, "teacher", 1, qa(70.0))
    store.cell("qed", QWEN, "teacher", 1, qa(62.0))
    store.cell("qed", GEMMA, "untrained", 1, qa(10.0))
    store.cell("qed", QWEN, "untrained", 1, qa(12.5))
    for seed, (gemma, qwen) in enumerate([(50.0, 55.0), (52.0, 55.0), (54.0, 55.0)], start=1):
        store.cell("qed", GEMMA, "sft", seed, qa(gemma))
        store.cell("qed", QWEN, "sft", seed, qa(qwen))
    for seed, value in enumerate([55.0, 56.0, 60.0], start=1):  # mean 57, std sqrt(7)
        store.cell("qed", GEMMA, "mlot", seed, qa(value), wall_time_s=100.0 * seed,
                   train={"steps": 10, "wall_time_s": 5.0 * seed, "resumed_from_step": 0}, peak_memory_mb=1024.0 * seed)
    store.cell("qed", GEMMA, "mlot", 4, qa(99.0), done=False)  # unfinished: must not count
    store.cell("qed", QWEN, "mlot", 1, qa(58.0))
    for seed, value in enumerate([53.0, 54.0, 55.0], start=1):
        store.cell("qed", GEMMA, "uld", seed, qa(value))
    store.failed("qed", QWEN, "uld", 1, "CUDA out of memory | batch 8\nTraceback (most recent call last):")
    # dialogsum: teacher == sft, so the gap share is undefined; a student beats the teacher.
    rouge = lambda v: {"rouge1": v + 5, "rouge2": v - 10, "rougeL": v, "rougeLsum": v + 1}  # noqa: E731
    store.cell("dialogsum", GEMMA, "teacher", 1, rouge(30.0), headline="rougeL")
    store.cell("dialogsum", GEMMA, "sft", 1, rouge(30.0), headline="rougeL")
    store.cell("dialogsum", GEMMA, "mlot", 1, rouge(32.0), headline="rougeL")
    store.skipped([{"pair": "llama2-7b-chat-opt-350m", "reason": "weights not reachable offline: no hub access"}])


EXPECTED_QED = """\
## qed

Headline metric: `f1`; seeds per cell: 1–3.

| method | gemma-smollm | qwen-smollm |
| --- | ---: | ---: |
| teacher | 70.00 | 62.00 |
| untrained | 10.00 | 12.50 |
| sft | 52.00 ± 2.00 | 55.00 ± 0.00 |
| mlot | **57.00 ± 2.65** | **58.00** |
| uld | 54.00 ± 1.00 | – |

### qed — vs SFT

Gain over sft in points, and in brackets the share of the teacher–sft gap closed, (method − sft) / (teacher − sft); – where the teacher does not score above sft (no gap to close).

| method | gemma-smollm | qwen-smollm |
| --- | ---: | ---: |
| untrained | -42.00 (-233.3%) | -42.50 (-607.1%) |
| mlot | +5.00 (27.8%) | +3.00 (42.9%) |
| uld | +2.00 (11.1%) | – |

### qed — cost

Training seconds per optimizer step, the cell's wall time (teacher-cache building, training and evaluation) and its peak memory (GPU allocated or CPU resident, see `run.json`), means over seeds.

| method | gemma-smollm | qwen-smollm |
| --- | ---: | ---: |
| teacher | – | – |
| untrained | – | – |
| sft | – | – |
| mlot | 1.00 s/step · 3.3 min · 2.0 GiB | – |
| uld | – | – |
"""

EXPECTED_DIALOGSUM = """\
## dialogsum

Headline metric: `rougeL`; seeds per cell: 1.

| method | gemma-smollm |
| --- | ---: |
| teacher | 30.00 |
| sft | 30.00 |
| mlot | **32.00** |

### dialogsum — vs SFT

Gain over sft in points, and in brackets the share of the teacher–sft gap closed, (method − sft) / (teacher − sft); – where the teacher does not score above sft (no gap to close).

| method | gemma-smollm |
| --- | ---: |
| mlot | +2.00 (–) |

### dialogsum — cost

Training seconds per optimizer step, the cell's wall time (teacher-cache building, training and evaluation) and its peak memory (GPU allocated or CPU resident, see `run.json`), means over seeds.

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
    """The three text outputs, without the (slower) PNG."""
    scan = scan_store(root)
    rows = summarize(scan.cells)
    return {"csv": leaderboard_csv(scan.cells), "summary": summary_csv(rows), "md": leaderboard_markdown(scan, rows)}


@pytest.fixture
def grid(store):
    build_grid(store)
    return store


def test_markdown_tables(grid) -> None:
    markdown = texts(grid.root)["md"]
    assert markdown.startswith("# CTKD-Bench leaderboard\n")
    # Gap shares by hand: gemma 5/18, 2/18, -42/18; qwen 3/7, -42.5/7. dialogsum: teacher == sft -> "–".
    assert "\n" + EXPECTED_DIALOGSUM + "\n" + EXPECTED_QED + "\n" + EXPECTED_TAIL in markdown
    assert markdown.endswith(EXPECTED_TAIL)


def test_teacher_is_never_bold_and_ties_are_all_bold(store) -> None:
    store.cell("qed", "p", "teacher", 1, {"f1": 80.0})
    store.cell("qed", "p", "mlot", 1, {"f1": 50.0})
    store.cell("qed", "p", "uld", 1, {"f1": 50.0})
    markdown = texts(store.root)["md"]
    assert "| teacher | 80.00 |" in markdown
    assert "| mlot | **50.00** |" in markdown and "| uld | **50.00** |" in markdown
    assert "vs SFT" not in markdown  # no sft row, no derived table


def test_gap_share_needs_a_teacher_above_sft(store) -> None:
    store.cell("qed", "p", "teacher", 1, {"f1": 50.0})
    store.cell("qed", "p", "sft", 1, {"f1": 60.0})
    store.cell("qed", "p", "mlot", 1, {"f1": 65.0})
    markdown = texts(store.root)["md"]
    assert "| mlot | +5.00 (–) |" in markdown  # a share of a negative gap (-50%) would read as nonsense


def test_leaderboard_csv_is_long_and_exact(store) -> None:
    store.cell("qed", "p", "teacher", 1, {"f1": 61.23456789, "exact_match": 50.0}, config_hash="t")
    for seed, value in enumerate([50.0, 52.0, 54.0], start=1):
        store.cell("qed", "p", "mlot", seed, {"f1": value, "exact_match": value - 10}, config_hash=f"m{seed}")
    text = texts(store.root)["csv"]
    assert text == (
        "task,pair,method,seed,metric,value,config_hash\n"
        "qed,p,teacher,1,exact_match,50.0,t\n"
        "qed,p,teacher,1,f1,61.23456789,t\n"
        "qed,p,mlot,1,exact_match,40.0,m1\n"
        "qed,p,mlot,1,f1,50.0,m1\n"
        "qed,p,mlot,2,exact_match,42.0,m2\n"
        "qed,p,mlot,2,f1,52.0,m2\n"
        "qed,p,mlot,3,exact_match,44.0,m3\n"
        "qed,p,mlot,3,f1,54.0,m3\n"
    )


def test_summary_csv(store) -> None:
    store.cell("qed", "p", "teacher", 1, {"f1": 61.2})
    for seed, value in enumerate([50.0, 52.0, 54.0], start=1):
        store.cell("qed", "p", "mlot", seed, {"f1": value}, wall_time_s=[100.0, 110.0, 120.0][seed - 1],
                   train={"steps": 4, "wall_time_s": 2.0 * seed}, peak_memory_mb=None if seed == 3 else 100.0 * seed)
    text = texts(store.root)["summary"]
    header, teacher, mlot = list(csv.reader(io.StringIO(text)))
    assert header == ["task", "pair", "method", "metric", "mean", "std", "ci95_low", "ci95_high", "n_seeds",
                      "mean_wall_time_s", "mean_train_s_per_step", "mean_peak_memory_mb"]
    assert teacher == ["qed", "p", "teacher", "f1", "61.2", "nan", "nan", "nan", "1", "nan", "nan", "nan"]
    # s/step 0.5, 1.0, 1.5 -> 1.0; peak memory only where recorded: (100 + 200) / 2.
    assert mlot[:6] + mlot[8:] == ["qed", "p", "mlot", "f1", "52.0", "2.0", "3", "110.0", "1.0", "150.0"]
    half_width = 4.302653 * 2.0 / math.sqrt(3)
    assert float(mlot[6]) == pytest.approx(52.0 - half_width, abs=1e-5)
    assert float(mlot[7]) == pytest.approx(52.0 + half_width, abs=1e-5)


def test_unfinished_cells_are_ignored(grid) -> None:
    outputs = texts(grid.root)
    assert "99.0" not in outputs["csv"]
    rows = list(csv.DictReader(io.StringIO(outputs["summary"])))
    (mlot,) = [r for r in rows if (r["task"], r["pair"], r["method"], r["metric"]) == ("qed", GEMMA, "mlot", "f1")]
    assert (mlot["mean"], mlot["n_seeds"], mlot["mean_wall_time_s"]) == ("57.0", "3", "200.0")


def test_rendering_twice_is_byte_identical(grid) -> None:
    first = {name: path.read_bytes() for name, path in render_leaderboards(grid.root).items()}
    second = {name: path.read_bytes() for name, path in render_leaderboards(grid.root).items()}
    assert first == second  # outputs written beside the cells must not be read back as results
    assert sorted(first) == ["leaderboard.csv", "leaderboard.md", "leaderboard.png", "summary.csv"]


def test_out_dir_and_no_temporary_files_left(store, tmp_path) -> None:
    store.cell("qed", "p", "mlot", 1, {"f1": 50.0})
    out = tmp_path / "site" / "boards"
    paths = render_leaderboards(store.root, out_dir=out)
    assert {p.parent for p in paths.values()} == {out}
    assert sorted(p.name for p in out.iterdir()) == sorted(paths)
    assert not (store.root / "leaderboard.md").exists()


def test_empty_store_is_an_error_naming_it(store) -> None:
    store.cell("qed", "p", "mlot", 1, {"f1": 50.0}, done=False)
    with pytest.raises(ValueError, match=f"no completed cells under {store.root}"):
        render_leaderboards(store.root)


def test_failed_only_store_still_reports_failures(store) -> None:
    store.failed("qed", "p", "mlot", 1, "loss is NaN at step 3")
    paths = render_leaderboards(store.root)
    markdown = paths["leaderboard.md"].read_text(encoding="utf-8")
    assert "| qed | p | mlot | 1 | loss is NaN at step 3 |" in markdown
    assert "## Skipped pairs\n\nNone.\n" in markdown
    assert paths["summary.csv"].read_text(encoding="utf-8").count("\n") == 1  # header only
