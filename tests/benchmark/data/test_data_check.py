"""benchmark.data.check: file states, verification with its per-directory cache, one-line errors, ``ls data``."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from benchmark.data import check as data_check
from benchmark.data.check import (
    DataCorrupt,
    DataMissing,
    data_table,
    file_states,
    missing_files,
    verify_task_data,
)
from tasks.data_sources import DataFile, TaskData

CONTENT = {"toy/a.txt": b"alpha\n", "toy/sub/b.txt": b"beta\n"}


def toy_sources() -> dict[str, TaskData]:
    files = tuple(
        DataFile("toy", path, len(data), hashlib.sha256(data).hexdigest(), f"https://example.org/{path}")
        for path, data in CONTENT.items())
    return {"toy": TaskData("toy", "toy", "MIT", "example.org", files)}


SOURCES = toy_sources()


def write_toy(data_dir: Path, **replace: bytes) -> Path:
    """The toy files under ``data_dir``; ``replace`` maps a file name (``a`` or ``b``) to other bytes."""
    for path, data in CONTENT.items():
        target = data_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(replace.get(Path(path).stem, data))
    return data_dir


def test_states_present_missing_corrupt(tmp_path: Path) -> None:
    files = SOURCES["toy"].files
    assert [s.state for s in file_states(tmp_path, files)] == ["missing", "missing"]
    write_toy(tmp_path)
    assert [s.state for s in file_states(tmp_path, files)] == ["present", "present"]
    write_toy(tmp_path, a=b"alpha!\n", b=b"bet4\n")  # a: other size; b: same size, other bytes
    a, b = file_states(tmp_path, files)
    assert (a.state, a.found, a.expected) == ("corrupt", "7 bytes", "6 bytes")
    assert (b.state, b.found) == ("corrupt", f"sha256 {hashlib.sha256(b'bet4' + bytes([10])).hexdigest()}")
    assert b.expected == f"sha256 {hashlib.sha256(CONTENT['toy/sub/b.txt']).hexdigest()}"


def test_verify_returns_the_hashes(tmp_path: Path) -> None:
    hashes = verify_task_data(write_toy(tmp_path / "data"), ["toy"], tmp_path / "cache", SOURCES)
    assert hashes == {path: hashlib.sha256(data).hexdigest() for path, data in CONTENT.items()}


def test_verify_names_a_modified_file_in_one_line(tmp_path: Path) -> None:
    data_dir = write_toy(tmp_path / "data", b=b"bet4\n")
    with pytest.raises(DataCorrupt) as info:
        verify_task_data(data_dir, ["toy"], tmp_path / "cache", SOURCES)
    got = hashlib.sha256(b"bet4\n").hexdigest()
    expected = hashlib.sha256(b"beta\n").hexdigest()
    assert str(info.value) == (
        f"data differs from its release: toy/sub/b.txt has sha256 {got}, expected sha256 {expected} "
        f"(in {str(data_dir)!r}); delete the file and run: "
        f"python run_bench.py data fetch --tasks toy --data-dir {data_dir}")


def test_missing_files_name_the_fetch_command(tmp_path: Path) -> None:
    data_dir = tmp_path / "my data"
    write_toy(data_dir)
    (data_dir / "toy/a.txt").unlink()
    assert [f.path for f in missing_files(data_dir, ["toy"], None, SOURCES)] == ["toy/a.txt"]
    with pytest.raises(DataMissing) as info:
        verify_task_data(data_dir, ["toy"], tmp_path / "cache", SOURCES)
    assert str(info.value) == (
        f"data not found in {str(data_dir)!r}: toy/a.txt; fetch it with: "
        f"python run_bench.py data fetch --tasks toy --data-dir '{data_dir}' "
        f"(a run fetches it on first use where its origin answers, unless --offline or CTKD_OFFLINE=1)")


def test_unknown_task_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^no data source registered for task 'nope'; known: toy$"):
        verify_task_data(tmp_path, ["nope"], tmp_path, SOURCES)


def test_files_are_hashed_once_per_data_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = data_check.file_sha256
    monkeypatch.setattr(data_check, "file_sha256", lambda path: hashed.append(path.name) or real(path))
    data_dir, cache = write_toy(tmp_path / "data"), tmp_path / "cache"
    verify_task_data(data_dir, ["toy"], cache, SOURCES)
    verify_task_data(data_dir, ["toy"], cache, SOURCES)
    assert hashed == ["a.txt", "b.txt"]
    markers = list((cache / "data-checks").iterdir())
    assert len(markers) == 1
    assert json.loads(markers[0].read_text())["data_dir"] == str(data_dir.resolve())

    # A file modified in place with its size kept: its mtime moves, so it is hashed again and reported.
    target = data_dir / "toy/sub/b.txt"
    before = target.stat().st_mtime_ns
    target.write_bytes(b"bet4\n")
    os.utime(target, ns=(before + 10**9, before + 10**9))
    with pytest.raises(DataCorrupt, match="toy/sub/b.txt has sha256"):
        verify_task_data(data_dir, ["toy"], cache, SOURCES)
    assert hashed == ["a.txt", "b.txt", "b.txt"]

    # Another directory with the same files has its own marker: hashed once more.
    verify_task_data(write_toy(tmp_path / "other"), ["toy"], cache, SOURCES)
    assert hashed[3:] == ["a.txt", "b.txt"] and len(list((cache / "data-checks").iterdir())) == 2


def test_ls_data_lines(tmp_path: Path) -> None:
    def state() -> str:
        (line,) = data_table(tmp_path, None, None, SOURCES)
        name, files, size, license, summary = line.split("\t")
        assert (name, files, size, license) == ("toy", "2 files", "0.0 MB", "MIT")
        return summary

    assert state() == "missing 2/2"
    write_toy(tmp_path)
    assert state() == "present"
    (tmp_path / "toy/a.txt").write_bytes(b"alphA\n")
    (tmp_path / "toy/sub/b.txt").unlink()
    assert state() == "corrupt: toy/a.txt"
