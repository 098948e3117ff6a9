"""The result store: the only module that knows its layout, and the only one that reads or writes cell files.

::

    <root>/<task>/<pair>/<method>/seed<k>/
        config.json        {"format": 2, "hash": <sha256 of config>, "config": {...}}, written when the cell starts
        run.json           provenance and cost;  metrics.json  raw metric values (0-100)
        predictions.jsonl  one line per evaluation example;  train_log.jsonl  one line per optimizer step
        checkpoint/        while training (removed when the cell finishes);  student/  with --save-students
        DONE               written last, atomically: the cell is complete
        FAILED.json        instead of DONE: one-line reason and traceback
        LOCK               while a process runs the cell
    <root>/skipped_pairs.json, <root>/leaderboard.* (rendered by ``leaderboards``)

A cell is complete iff it holds ``DONE``; ``DONE`` wins over ``FAILED.json`` (the failure is from an earlier
attempt). Hidden entries and directories not named ``seed<int>`` are not cells, so files beside the cells never
interfere. Format 1 (before ``format`` was recorded) is read the same way; its config hashes were computed by an
older scheme, so a run cannot reuse those cells and says so (:meth:`Store.older_format_cells`).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from benchmark.digest import digest
from benchmark.files import read_json, write_atomic, write_json, write_jsonl

STORE_FORMAT = 2

# Reserved method names: the reference rows stored beside the distillation methods (seed 0: greedy decoding makes
# them seed-independent), and the baseline every method is compared with.
TEACHER = "teacher"
UNTRAINED = "untrained"
REFERENCE_METHODS = (TEACHER, UNTRAINED)
SFT = "sft"

_SEED_DIR = re.compile(r"seed(\d+)")
_SKIPPED_PAIRS = "skipped_pairs.json"


class StoreError(ValueError):
    """A store file that cannot be read as the store format requires (one line naming the file)."""


def config_hash(config: dict[str, Any]) -> str:
    return digest(config)


@dataclass(frozen=True)
class CellKey:
    task: str
    pair: str
    method: str
    seed: int

    @property
    def is_reference(self) -> bool:
        return self.method in REFERENCE_METHODS

    def __str__(self) -> str:
        return f"{self.task}/{self.pair}/{self.method}/seed{self.seed}"


class Cell:
    """One cell's directory and files."""

    def __init__(self, root: Path, key: CellKey) -> None:
        self.key = key
        self.dir = Path(root) / key.task / key.pair / key.method / f"seed{key.seed}"

    # -- layout --------------------------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.dir / "checkpoint"

    @property
    def train_log(self) -> Path:
        return self.dir / "train_log.jsonl"

    @property
    def student_dir(self) -> Path:
        return self.dir / "student"

    @property
    def _done(self) -> Path:
        return self.dir / "DONE"

    @property
    def _failed(self) -> Path:
        return self.dir / "FAILED.json"

    @property
    def _config(self) -> Path:
        return self.dir / "config.json"

    # -- state ---------------------------------------------------------------------------------------------------
    def stored_config(self) -> dict[str, Any] | None:
        """The ``config.json`` content, or None when it is missing or unreadable."""
        try:
            stored = read_json(self._config)
        except ValueError:
            return None
        return stored if isinstance(stored, dict) else None

    def is_done(self, config_digest: str) -> bool:
        """True when the cell finished with exactly this resolved config."""
        stored = self.stored_config()
        return self._done.exists() and stored is not None and stored.get("hash") == config_digest

    def done_time(self) -> float | None:
        """When ``DONE`` was written (seconds since the epoch), or None."""
        try:
            return self._done.stat().st_mtime
        except FileNotFoundError:
            return None

    def has_failed(self) -> bool:
        return self._failed.exists() and not self._done.exists()

    def failure_reason(self) -> str:
        """The one-line reason in ``FAILED.json``; a failed cell is reported even when that file is broken."""
        try:
            error = read_json(self._failed).get("error")
        except (ValueError, AttributeError):
            return "(unreadable FAILED.json)"
        lines = str(error).strip().splitlines() if error else []
        return lines[0] if lines else "(no reason recorded)"

    # -- reading -------------------------------------------------------------------------------------------------
    def predictions(self) -> list[dict[str, Any]]:
        """The records of ``predictions.jsonl`` (one object with an ``id`` per evaluated example, in file order);
        a missing file, a bad line or a repeated id is a :class:`StoreError` naming the file (and line)."""
        path = self.dir / "predictions.jsonl"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise StoreError(f"{path} is missing: a complete cell needs its per-example scores") from None
        numbered = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
        if not numbered:
            raise StoreError(f"{path} has no predictions")
        try:  # one parse of the whole file: a store of 1,000 cells has 200,000 lines
            records = json.loads("[" + ",".join(line for _, line in numbered) + "]")
        except json.JSONDecodeError:
            records = []
        if len(records) != len(numbered):  # a bad line: parse line by line to name it
            records = [_parse_line(line, f"{path}, line {number}") for number, line in numbered]
        for (number, _), record in zip(numbered, records):
            if not isinstance(record, dict) or "id" not in record:
                raise StoreError(f"{path}, line {number}: expected an object with an 'id'")
        if len({str(r["id"]) for r in records}) != len(records):
            raise StoreError(f"{path} lists an example id twice")
        return records

    def run_info(self) -> dict[str, Any]:
        """``run.json`` (provenance and costs), or ``{}`` when the cell has none; an unreadable file is an error."""
        path = self.dir / "run.json"
        if not path.exists():
            return {}
        run = read_json(path, StoreError)
        return run if isinstance(run, dict) else {}

    # -- writing -------------------------------------------------------------------------------------------------
    def start(self, config: dict[str, Any]) -> str:
        """Clear the completion/failure markers of a cell about to (re)run and write its config; returns the hash.

        A config that differs from the stored one also discards the training state (checkpoint, log) it left.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        for marker in (self._done, self._failed):
            marker.unlink(missing_ok=True)
        config_digest = config_hash(config)
        stored = self.stored_config()
        if stored is None or stored.get("hash") != config_digest:
            self.discard_training_state()
        write_json(self._config, {"format": STORE_FORMAT, "hash": config_digest, "config": config})
        return config_digest

    def remove_checkpoint(self) -> None:
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)

    def discard_training_state(self) -> None:
        """Remove the checkpoint and the training log: the next run trains from scratch."""
        self.remove_checkpoint()
        self.train_log.unlink(missing_ok=True)

    def finish(self, metrics: dict[str, float], predictions: list[dict[str, Any]], run_info: dict[str, Any]) -> None:
        write_jsonl(self.dir / "predictions.jsonl", predictions)
        write_json(self.dir / "metrics.json", metrics)
        write_json(self.dir / "run.json", run_info)
        write_atomic(self._done, "")

    def record_failure(self, error: BaseException) -> str:
        """Write ``FAILED.json`` with a one-line reason and the traceback; returns the reason."""
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        write_json(self._failed, {"error": reason, "traceback": trace})
        return reason

    def lock(self) -> "CellLock":
        return CellLock(self.dir / "LOCK")


class CellLock:
    """An exclusive per-cell lock file; a lock left by a dead process on this host is taken over."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held = False

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if not self._stale():
                    return False
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
            self.held = True
            return True
        return False

    def _stale(self) -> bool:
        try:
            owner = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return False  # being written right now by its owner
        if owner.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


# ---------------------------------------------------------------------------------------------------------------
# Reading a whole store (the leaderboards read through this)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellRecord:
    """One complete cell: its coordinates, its raw metric values (0-100 scale) and what identifies its config."""

    task: str
    pair: str
    method: str
    seed: int
    config_hash: str
    headline_metric: str
    metrics: dict[str, float]
    wall_time_s: float | None
    train_s_per_step: float | None = None  # training wall time per optimizer step (None: no training)
    peak_memory_mb: float | None = None  # the cell's peak (GPU allocated or CPU resident), from run.json
    higher_is_better: bool = True  # the headline metric's direction (format 1 stores hold F1 and ROUGE only)
    changed: str = ""  # the method config fields that differ from the method's defaults, e.g. "mode=exact"
    store_format: int = STORE_FORMAT
    vocabulary_overlap: float | None = None  # the pair's O_V (run.json "overlap"; methods-spec §19)
    text_overlap: float | None = None  # the pair's O_T on the task's training answers


@dataclass(frozen=True)
class FailedCell:
    task: str
    pair: str
    method: str
    seed: int
    reason: str


@dataclass(frozen=True)
class SkippedPair:
    pair: str
    reason: str


@dataclass(frozen=True)
class StoreScan:
    """Everything the leaderboards read from one store, in a deterministic (sorted) order."""

    root: Path
    cells: tuple[CellRecord, ...]
    failed: tuple[FailedCell, ...]
    skipped: tuple[SkippedPair, ...]
    headline_metrics: dict[str, str]  # task -> its headline metric, the same for every cell of the task

    def higher_is_better(self, task: str) -> bool:
        """Whether the task's headline metric improves upwards (as its cells record)."""
        return next((cell.higher_is_better for cell in self.cells if cell.task == task), True)

    def overlaps(self, task: str) -> dict[str, tuple[float | None, float | None]]:
        """pair -> (O_V, O_T) as the task's cells recorded them (the first cell that recorded any), sorted."""
        found: dict[str, tuple[float | None, float | None]] = {}
        for cell in self.cells:
            if cell.task == task and cell.pair not in found and cell.vocabulary_overlap is not None:
                found[cell.pair] = (cell.vocabulary_overlap, cell.text_overlap)
        return dict(sorted(found.items()))

    def changed_configs(self, task: str) -> dict[str, list[str]]:
        """method -> the distinct non-default configurations its cells of ``task`` were trained with."""
        found: dict[str, list[str]] = {}
        for cell in self.cells:
            if cell.task == task and cell.changed and cell.changed not in found.setdefault(cell.method, []):
                found[cell.method].append(cell.changed)
        return {method: variants for method, variants in found.items() if variants}


class Store:
    """A result store rooted at a directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def cell(self, key: CellKey) -> Cell:
        return Cell(self.root, key)

    # -- pairs that could not run --------------------------------------------------------------------------------
    def record_skipped(self, requested: list[str], skipped: dict[str, str]) -> None:
        """Merge this run's skipped pairs into ``skipped_pairs.json``: a requested pair that ran is no longer listed."""
        path = self.root / _SKIPPED_PAIRS
        known = {row["pair"]: row["reason"] for row in self._skipped_rows()}
        known = {pair: reason for pair, reason in known.items() if pair not in requested} | skipped
        write_json(path, [{"pair": pair, "reason": reason} for pair, reason in sorted(known.items())])

    def _skipped_rows(self) -> list[dict[str, Any]]:
        path = self.root / _SKIPPED_PAIRS
        if not path.exists():
            return []
        entries = read_json(path, StoreError)
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "pair" in e for e in entries):
            raise StoreError(f"{path} must be a list of objects with 'pair' and 'reason'")
        return entries

    # -- scanning ------------------------------------------------------------------------------------------------
    def cell_dirs(self) -> Iterator[tuple[CellKey, Cell]]:
        """Every cell directory under the root, sorted by task, pair, method and seed."""
        for task_dir in _subdirs(self.root):
            for pair_dir in _subdirs(task_dir):
                for method_dir in _subdirs(pair_dir):
                    seeds = sorted(int(m.group(1)) for d in _subdirs(method_dir) if (m := _SEED_DIR.fullmatch(d.name)))
                    for seed in seeds:
                        key = CellKey(task_dir.name, pair_dir.name, method_dir.name, seed)
                        yield key, self.cell(key)

    def older_format_cells(self) -> list[CellKey]:
        """Finished cells written by an older store format (their config hashes cannot be compared)."""
        return [key for key, cell in self.cell_dirs() if cell.done_time() is not None
                and (cell.stored_config() or {}).get("format", 1) < STORE_FORMAT]

    def scan(self) -> StoreScan:
        """Read every cell and the skipped pairs; a complete cell whose files are missing or disagree with its
        directory raises :class:`StoreError`: a leaderboard over a corrupt store would print untrustworthy numbers."""
        if not self.root.is_dir():
            raise StoreError(f"result store directory {self.root} does not exist")
        cells: list[CellRecord] = []
        failed: list[FailedCell] = []
        for key, cell in self.cell_dirs():
            if cell.done_time() is not None:
                cells.append(_read_record(cell))
            elif cell.has_failed():
                failed.append(FailedCell(key.task, key.pair, key.method, key.seed, cell.failure_reason()))
        skipped = sorted((SkippedPair(str(e["pair"]), str(e.get("reason", ""))) for e in self._skipped_rows()),
                         key=lambda s: (s.pair, s.reason))
        return StoreScan(self.root, tuple(cells), tuple(failed), tuple(skipped), _headline_metrics(cells))


def scan_store(root: str | Path) -> StoreScan:
    return Store(root).scan()


def _subdirs(path: Path) -> Iterator[Path]:
    yield from (p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith("."))


def _read_record(cell: Cell) -> CellRecord:
    key, config_file = cell.key, cell.dir / "config.json"
    stored = read_json(config_file, StoreError)
    config = stored.get("config") if isinstance(stored, dict) else None
    if not isinstance(config, dict) or not isinstance(stored.get("hash"), str):
        raise StoreError(f"{config_file} must be an object with a string 'hash' and a 'config' object")
    store_format = stored.get("format", 1)
    identity = config.get("cell", config)  # format 1 kept the coordinates at the top level
    # The directory names the cell; a config that says otherwise means files were moved or mixed up.
    for name in ("task", "pair", "method", "seed"):
        if name in identity and identity[name] != getattr(key, name):
            raise StoreError(f"{config_file}: config {name} {identity[name]!r} does not match its directory "
                             f"({getattr(key, name)!r})")
    if (config.get("role") == TEACHER) != (key.method == TEACHER):
        raise StoreError(f"{config_file}: role {config.get('role')!r} does not fit method {key.method!r}")
    headline = config.get("headline_metric")
    if not isinstance(headline, str):
        raise StoreError(f"{config_file}: config has no 'headline_metric'")
    metrics = _read_metrics(cell.dir / "metrics.json")
    if headline not in metrics:
        raise StoreError(f"{config_file}: headline metric {headline!r} is not among metrics {sorted(metrics)}")
    method = config.get("method") if isinstance(config.get("method"), dict) else {}
    changed = method.get("changed") if isinstance(method.get("changed"), dict) else {}
    run = cell.run_info()
    return CellRecord(key.task, key.pair, key.method, key.seed, stored["hash"], headline, metrics,
                      **_costs(run), higher_is_better=bool(config.get("higher_is_better", True)),
                      changed=", ".join(f"{name}={value}" for name, value in sorted(changed.items())),
                      store_format=store_format, **_overlap(run))


def _read_metrics(path: Path) -> dict[str, float]:
    metrics = read_json(path, StoreError)
    if not isinstance(metrics, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()
    ):
        raise StoreError(f"{path} must map metric names to numbers")
    return {name: float(value) for name, value in sorted(metrics.items())}


def _costs(run: dict[str, Any]) -> dict[str, float | None]:
    """Wall time, training time per step and peak memory from ``run.json``; each optional, as is the file itself.
    A resumed cell's step time counts only the steps it ran."""
    train = run.get("train") if isinstance(run.get("train"), dict) else {}
    steps_run = (_finite(train.get("steps")) or 0) - (_finite(train.get("resumed_from_step")) or 0)
    train_wall = _finite(train.get("wall_time_s"))
    return {
        "wall_time_s": _finite(run.get("wall_time_s")),
        "train_s_per_step": train_wall / steps_run if train_wall is not None and steps_run > 0 else None,
        "peak_memory_mb": _finite(run.get("peak_memory_mb")),
    }


def _overlap(run: dict[str, Any]) -> dict[str, float | None]:
    """O_V and O_T from ``run.json``'s ``overlap`` (absent from stores written before it was recorded)."""
    overlap = run.get("overlap") if isinstance(run.get("overlap"), dict) else {}
    vocabulary, text = (overlap.get(part) if isinstance(overlap.get(part), dict) else {} for part in ("vocabulary", "text"))
    return {"vocabulary_overlap": _finite(vocabulary.get("student_share")),
            "text_overlap": _finite(text.get("one_to_one_share"))}


def _parse_line(line: str, where: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise StoreError(f"{where}: invalid JSON ({error.msg})") from None


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _headline_metrics(cells: list[CellRecord]) -> dict[str, str]:
    headline: dict[str, str] = {}
    for cell in cells:
        if headline.setdefault(cell.task, cell.headline_metric) != cell.headline_metric:
            raise StoreError(
                f"task {cell.task!r} has two headline metrics, {headline[cell.task]!r} and {cell.headline_metric!r} "
                f"(seen in {cell.pair}/{cell.method}/seed{cell.seed})"
            )
    return dict(sorted(headline.items()))


__all__ = [
    "STORE_FORMAT", "TEACHER", "UNTRAINED", "SFT", "REFERENCE_METHODS", "StoreError", "CellKey", "Cell", "CellLock",
    "CellRecord", "FailedCell", "SkippedPair", "StoreScan", "Store", "scan_store", "config_hash",
]
