import struct

from benchmark.store import scan_store
from leaderboards import render_leaderboards
from leaderboards.analysis import analyze
from leaderboards.plot import leaderboard_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG must start with."""
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_has_one_panel_per_task(store) -> None:
    for task in ("qed", "fairytaleqa"):
        store.cell(task, "pair-a", "teacher", 0, {"f1": 70.0})
        store.cell(task, "pair-a", "untrained", 0, {"f1": 10.0})
        store.cell(task, "pair-b", "teacher", 0, {"f1": 65.0})
        for seed, value in enumerate([50.0, 52.0, 54.0], start=1):
            store.cell(task, "pair-a", "mlot", seed, {"f1": value})
            store.cell(task, "pair-b", "sft", seed, {"f1": value - 5})
    scan = scan_store(store.root)
    data = leaderboard_png(scan, analyze(scan))
    width, height = png_size(data)
    assert len(data) > 10_000
    assert height > width / 2  # two stacked task panels
    assert data.endswith(b"IEND\xaeB`\x82")


def test_plot_without_complete_cells_is_still_a_png(store) -> None:
    store.failed("qed", "p", "mlot", 1, "boom")
    scan = scan_store(store.root)
    data = leaderboard_png(scan, analyze(scan))
    assert png_size(data)[0] > 0 and data.endswith(b"IEND\xaeB`\x82")


def test_rendered_png_file_is_valid(store, tmp_path) -> None:
    store.cell("qed", "p", "mlot", 1, {"f1": 50.0})
    path = render_leaderboards(store.root, out_dir=tmp_path / "out")["leaderboard.png"]
    data = path.read_bytes()
    assert png_size(data) > (0, 0) and len(data) > 5_000
