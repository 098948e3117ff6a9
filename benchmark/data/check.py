"""Is a task's data the release it names? Each file's state (present / missing / corrupt) against its sha256.

A data directory is hashed once: a small JSON marker in the cache directory, keyed by the data directory's absolute
path, records the size, mtime and sha256 of every file found correct, and a file whose size and mtime still match
is not read again. The data directory itself is never written (``../shared/data`` is read-only).
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Mapping

from benchmark.core.digest import digest, file_sha256
from benchmark.core.files import write_atomic
from tasks.base import DataError
from tasks.data_sources import TASK_DATA, DataFile, TaskData

__all__ = [
    "DataMissing", "DataCorrupt", "FileState", "file_states", "missing_files", "verify_task_data",
    "fetch_command", "data_table",
]

State = Literal["present", "missing", "corrupt"]
MARKER_DIR = "data-checks"


class DataMissing(DataError):
    """Files of the selected tasks are not in the data directory (the message says how to fetch them)."""


class DataCorrupt(DataError):
    """A file of the selected tasks differs from its release (the message names it, its hash and the expected one)."""


@dataclass(frozen=True)
class FileState:
    """For a corrupt file, ``found`` is what is there (its size, or its sha256) and ``expected`` what should be."""

    file: DataFile
    state: State
    found: str = ""
    expected: str = ""

    def describe(self) -> str:
        return f"{self.file.path} has {self.found}, expected {self.expected}"


def file_states(data_dir: Path, files: Iterable[DataFile], cache_dir: Path | None = None) -> list[FileState]:
    """The state of each file under ``data_dir``. With ``cache_dir``, files verified before (same size and mtime)
    are not hashed again, and newly verified ones are recorded."""
    data_dir = Path(data_dir)
    marker = _marker_path(cache_dir, data_dir) if cache_dir is not None else None
    known = _read_marker(marker)
    verified: dict[str, list] = {}
    states = []
    for file in files:
        try:
            stat = (data_dir / file.path).stat()
        except (FileNotFoundError, NotADirectoryError):
            states.append(FileState(file, "missing"))
            continue
        stamp = [stat.st_size, stat.st_mtime_ns, file.sha256]
        if stat.st_size != file.size:
            states.append(FileState(file, "corrupt", f"{stat.st_size} bytes", f"{file.size} bytes"))
        elif known.get(file.path) == stamp or (got := file_sha256(data_dir / file.path)) == file.sha256:
            states.append(FileState(file, "present"))
            verified[file.path] = stamp
        else:
            states.append(FileState(file, "corrupt", f"sha256 {got}", f"sha256 {file.sha256}"))
    if marker is not None and any(known.get(path) != stamp for path, stamp in verified.items()):
        write_atomic(marker, json.dumps({"data_dir": str(data_dir.resolve()), "files": known | verified}) + "\n")
    return states


def missing_files(data_dir: Path, tasks: Iterable[str], cache_dir: Path | None = None,
                  sources: Mapping[str, TaskData] = TASK_DATA) -> list[DataFile]:
    """The files of ``tasks`` not in ``data_dir``; a file there that differs from its release raises
    :class:`DataCorrupt`."""
    return [state.file for state in _checked(data_dir, list(tasks), cache_dir, sources) if state.state == "missing"]


def verify_task_data(data_dir: Path, tasks: Iterable[str], cache_dir: Path,
                     sources: Mapping[str, TaskData] = TASK_DATA) -> dict[str, str]:
    """``{path under the data directory: sha256}`` of every file of ``tasks`` (for ``run.json``), once each file is
    found to match its release; raises :class:`DataMissing` or :class:`DataCorrupt` (one line) otherwise."""
    states = _checked(data_dir, list(tasks), cache_dir, sources)
    missing = [state for state in states if state.state == "missing"]
    if missing:
        raise DataMissing(
            f"data not found in {str(data_dir)!r}: {_first_few([state.file.path for state in missing])}; "
            f"fetch it with: {fetch_command(data_dir, _tasks_of(missing))} "
            f"(a run fetches it on first use where its origin answers, unless --offline or CTKD_OFFLINE=1)")
    return {state.file.path: state.file.sha256 for state in states}


def fetch_command(data_dir: Path, tasks: Iterable[str]) -> str:
    """The exact command that fetches ``tasks`` into ``data_dir``."""
    return f"python run_bench.py data fetch --tasks {' '.join(tasks)} --data-dir {shlex.quote(str(data_dir))}"


def data_table(data_dir: Path, tasks: Iterable[str] | None = None, cache_dir: Path | None = None,
               sources: Mapping[str, TaskData] = TASK_DATA) -> list[str]:
    """One tab-separated line per task (default: all) for ``ls data``: task, files, size, license, state
    (``present``, ``missing k/n``, or ``corrupt: <paths>``, which wins over missing)."""
    lines = []
    for name in sources if tasks is None else tasks:
        data = _source(name, sources)
        states = file_states(data_dir, data.files, cache_dir)
        corrupt = [state.file.path for state in states if state.state == "corrupt"]
        missing = sum(state.state == "missing" for state in states)
        summary = (f"corrupt: {_first_few(corrupt)}" if corrupt
                   else f"missing {missing}/{len(states)}" if missing else "present")
        files = f"{len(data.files)} file{'s' if len(data.files) != 1 else ''}"
        lines.append(f"{name}\t{files}\t{data.size / 1e6:.1f} MB\t{data.license}\t{summary}")
    return lines


def _source(name: str, sources: Mapping[str, TaskData]) -> TaskData:
    if name not in sources:
        raise ValueError(f"no data source registered for task {name!r}; known: {', '.join(sources)}")
    return sources[name]


def _files(tasks: Iterable[str], sources: Mapping[str, TaskData]) -> list[DataFile]:
    return [file for name in tasks for file in _source(name, sources).files]


def _checked(data_dir: Path, tasks: list[str], cache_dir: Path | None,
             sources: Mapping[str, TaskData]) -> list[FileState]:
    """The states of the files of ``tasks``; raises :class:`DataCorrupt` if any differs from its release."""
    states = file_states(data_dir, _files(tasks, sources), cache_dir)
    corrupt = [state for state in states if state.state == "corrupt"]
    if corrupt:
        raise DataCorrupt(
            f"data differs from its release: {_first_few([state.describe() for state in corrupt])} "
            f"(in {str(data_dir)!r}); delete the file and run: {fetch_command(data_dir, _tasks_of(corrupt))}")
    return states


def _tasks_of(states: Iterable[FileState]) -> list[str]:
    """Task names of ``states`` in first-seen order."""
    return list(dict.fromkeys(state.file.task for state in states))


def _first_few(items: list[str], shown: int = 3) -> str:
    rest = len(items) - shown
    return ", ".join(items[:shown]) + (f" and {rest} more" if rest > 0 else "")


def _marker_path(cache_dir: Path, data_dir: Path) -> Path:
    key = digest(str(data_dir.resolve()), short=True)
    return Path(cache_dir) / MARKER_DIR / f"{key}.json"


def _read_marker(marker: Path | None) -> dict[str, list]:
    if marker is None or not marker.is_file():
        return {}
    try:
        return dict(json.loads(marker.read_text(encoding="utf-8"))["files"])
    except (ValueError, KeyError, TypeError):
        return {}  # an unreadable marker only costs a re-hash
