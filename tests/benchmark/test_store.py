import json
import os
import subprocess
import sys
import time

import pytest

from benchmark.core.files import read_json, write_atomic
from benchmark.engine.memory import PeakMemory
from benchmark.run.provenance import git_state
from benchmark.store import STORE_FORMAT, CellKey, CellLock, Store, config_hash


def test_cell_path_layout(tmp_path):
    key = CellKey("qed", "tiny-a", "mlot", 3)
    assert Store(tmp_path).cell(key).dir == tmp_path / "qed" / "tiny-a" / "mlot" / "seed3"
    assert str(key) == "qed/tiny-a/mlot/seed3"


def test_config_hash_is_order_independent_and_value_sensitive():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert len(config_hash({"a": 1})) == 64


def cell_config(key: CellKey, **values) -> dict:
    """A cell config as the grid writes it (what the store checks of it: coordinates, role, headline metric)."""
    return {"cell": {"task": key.task, "pair": key.pair, "method": key.method, "seed": key.seed},
            "role": "teacher" if key.method == "teacher" else "student", "headline_metric": "f1", **values}


def test_done_only_with_marker_and_same_hash(tmp_path):
    key = CellKey("qed", "p", "sft", 1)
    cell = Store(tmp_path).cell(key)
    digest = cell.start(cell_config(key, x=1))
    assert json.loads((cell.dir / "config.json").read_text())["format"] == STORE_FORMAT
    assert not cell.is_done(digest)  # no DONE yet
    cell.finish({"f1": 50.0}, [{"id": "1", "prediction": "a"}], {"wall_time_s": 1.0, "config_hash": digest})
    assert cell.is_done(digest) and cell.damage() is None
    assert not cell.is_done(config_hash(cell_config(key, x=2)))
    assert json.loads((cell.dir / "metrics.json").read_text()) == {"f1": 50.0}
    assert (cell.dir / "predictions.jsonl").read_text().count("\n") == 1
    # Restarting the cell clears DONE before anything else is written.
    cell.start(cell_config(key, x=1))
    assert not (cell.dir / "DONE").exists()


def test_a_new_config_discards_the_training_state_of_the_old_one(tmp_path):
    cell = Store(tmp_path).cell(CellKey("qed", "p", "sft", 1))
    cell.start({"lr": 1})
    cell.checkpoint_dir.mkdir()
    cell.train_log.write_text('{"step": 1}\n')
    cell.start({"lr": 1})  # same config: resume from the checkpoint
    assert cell.checkpoint_dir.exists() and cell.train_log.exists()
    cell.start({"lr": 2})  # another config: never resume the old one's state
    assert not cell.checkpoint_dir.exists() and not cell.train_log.exists()


def test_write_atomic_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "a" / "file.json"
    write_atomic(target, "hello")
    assert target.read_text() == "hello"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


@pytest.mark.parametrize("content,message", [(None, "is missing"), ('{"a": ', "line 1: invalid JSON")])
def test_read_json_errors_name_the_file_in_one_line(tmp_path, content, message):
    path = tmp_path / "x.json"
    if content is not None:
        path.write_text(content)

    class Bad(ValueError):
        pass

    with pytest.raises(Bad, match=message) as caught:
        read_json(path, Bad)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_record_failure_one_line_reason(tmp_path):
    cell = Store(tmp_path).cell(CellKey("qed", "p", "sft", 1))
    try:
        raise ValueError("bad value 7\nsecond line")
    except ValueError as error:
        reason = cell.record_failure(error)
    assert reason == "ValueError: bad value 7"
    saved = json.loads((cell.dir / "FAILED.json").read_text())
    assert saved["error"] == reason and "Traceback" in saved["traceback"]
    assert cell.has_failed() and cell.failure_reason() == reason


def test_lock_is_exclusive_and_released(tmp_path):
    first, second = CellLock(tmp_path / "LOCK"), CellLock(tmp_path / "LOCK")
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
    lock = CellLock(tmp_path / "LOCK")
    assert lock.acquire()
    assert json.loads((tmp_path / "LOCK").read_text())["pid"] == os.getpid()
    lock.release()


def test_lock_of_another_host_is_taken_over_only_once_its_heartbeat_stops(tmp_path):
    """A killed Slurm array task leaves its lock on another node: alive while touched, stale after a silence."""
    path = tmp_path / "LOCK"
    path.write_text(json.dumps({"pid": 1, "host": "another-node"}))
    assert not CellLock(path).acquire()  # touched just now
    silent = time.time() - CellLock.stale_after_s - 1
    os.utime(path, (silent, silent))
    lock = CellLock(path)
    assert lock.acquire() and json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()


def test_a_held_lock_keeps_beating(tmp_path, monkeypatch):
    monkeypatch.setattr(CellLock, "heartbeat_s", 0.05)
    lock = CellLock(tmp_path / "LOCK")
    assert lock.acquire()
    old = time.time() - 3600
    os.utime(lock.path, (old, old))
    time.sleep(0.3)
    assert time.time() - lock.path.stat().st_mtime < 5  # touched again by the holder
    lock.release()
    assert not lock.path.exists()


def test_git_state_names_a_real_commit():
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


def test_a_disk_error_a_library_re_raised_is_named_as_one():
    from benchmark.store import failure_reason

    error = RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert failure_reason(error) == ("RuntimeError: Error while serializing: I/O error: No space left on device (os "
                                     "error 28) (the disk is full: free space, then run the same command again)")
    assert failure_reason(ValueError("bad value\nsecond line")) == "ValueError: bad value"
    assert failure_reason(PermissionError(13, "Permission denied", "/x/run.json")) == (
        "PermissionError: Permission denied: '/x/run.json' (no permission: choose a writable --output or --cache-dir)")


def test_a_tasks_inputs_are_recorded_once_per_id_beside_the_cells(tmp_path) -> None:
    store = Store(tmp_path)
    assert store.inputs("qed") == {}
    store.record_inputs("qed", [{"id": "a", "question": "Who?", "context": "Once."}])
    store.record_inputs("qed", [{"id": "a", "question": "changed", "context": ""},
                                {"id": "b", "question": "Where?", "context": "There."}])
    assert store.inputs("qed") == {"a": ("Who?", "Once."), "b": ("Where?", "There.")}
    assert (tmp_path / "qed" / "inputs.jsonl").read_text().count("\n") == 2
    assert list(store.cell_dirs()) == []  # the file is not a cell
