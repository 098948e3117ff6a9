import json
import os
import subprocess
import sys

import pytest

from benchmark.results import (
    CellKey, CellLock, PeakMemory, config_hash, finish_cell, is_done, record_failure, start_cell, write_atomic,
)


def test_cell_path_layout(tmp_path):
    key = CellKey("qed", "tiny-a", "mlot", 3)
    assert key.path(tmp_path) == tmp_path / "qed" / "tiny-a" / "mlot" / "seed3"


def test_config_hash_is_order_independent_and_value_sensitive():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_done_only_with_marker_and_same_hash(tmp_path):
    cell = tmp_path / "cell"
    digest = start_cell(cell, {"x": 1})
    assert not is_done(cell, digest)  # no DONE yet
    finish_cell(cell, {"f1": 50.0}, [{"id": "1", "prediction": "a"}], {"wall_time_s": 1.0})
    assert is_done(cell, digest)
    assert not is_done(cell, config_hash({"x": 2}))
    assert json.loads((cell / "metrics.json").read_text()) == {"f1": 50.0}
    assert (cell / "predictions.jsonl").read_text().count("\n") == 1
    # Restarting the cell clears DONE before anything else is written.
    start_cell(cell, {"x": 1})
    assert not (cell / "DONE").exists()


def test_write_atomic_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "a" / "file.json"
    write_atomic(target, "hello")
    assert target.read_text() == "hello"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


def test_record_failure_one_line_reason(tmp_path):
    try:
        raise ValueError("bad value 7\nsecond line")
    except ValueError as error:
        reason = record_failure(tmp_path, error)
    assert reason == "ValueError: bad value 7"
    saved = json.loads((tmp_path / "FAILED.json").read_text())
    assert saved["error"] == reason and "Traceback" in saved["traceback"]


def test_lock_is_exclusive_and_released(tmp_path):
    first, second = CellLock(tmp_path), CellLock(tmp_path)
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()
    assert not (tmp_path / "LOCK").exists()


def test_lock_left_by_dead_process_is_taken_over(tmp_path):
    import socket

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "LOCK").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    lock = CellLock(tmp_path)
    assert lock.acquire()
    assert json.loads((tmp_path / "LOCK").read_text())["pid"] == os.getpid()
    lock.release()


def test_git_state_names_a_real_commit():
    from benchmark.results import git_state

    head = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], capture_output=True, text=True,
                          cwd=os.path.dirname(__file__))
    state = git_state()
    assert state["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert state["git_commit"] != "HEAD"


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc/self/clear_refs")
def test_peak_memory_window_is_the_cells_not_the_processes():
    import mmap

    import torch

    if torch.cuda.is_available():
        pytest.skip("measures the CPU window")
    # An anonymous mapping, not a tensor: unmapping returns it to the OS at once, whatever the allocator keeps.
    block = mmap.mmap(-1, 64 * 2**20)
    for page in range(0, len(block), mmap.PAGESIZE):
        block[page] = 1  # touch every page, so all 64 MiB are resident
    first = PeakMemory().read()  # opened while the 64 MiB are resident: they count
    block.close()
    second = PeakMemory().read()  # opened after they are unmapped: the window must not remember them
    assert first["peak_memory_scope"] == second["peak_memory_scope"] == "window"
    assert first["peak_memory_kind"] == "cpu_resident"
    assert first["peak_memory_mb"] - second["peak_memory_mb"] > 48
