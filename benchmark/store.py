"""The result store: the only module that knows its layout, and the only one that reads or writes cell files.

::

    <root>/<task>/<pair>/<method>/seed<k>/
        config.json        {"format": 3, "hash": <sha256 of config>, "config": {...}}, written when the cell starts
        run.json           provenance and cost;  metrics.json  raw metric values (0-100)
        predictions.jsonl  one line per evaluation example;  train_log.jsonl  one line per optimizer step
        checkpoint/        while training (removed when the cell finishes);  student/  with --save-students
        DONE               written last, atomically: the cell is complete
        FAILED.json        instead of DONE: one-line reason and traceback
        LOCK               while a process runs the cell
        *.corrupt          the files of a damaged cell, kept aside when it was run again
    <root>/<task>/inputs.jsonl   the question and context of each evaluated example, once per id (the example browser)
    <root>/skipped_pairs.json, <root>/leaderboard.* (rendered by ``leaderboards``)
    <root>/reading.md   optional: a committed store's reading in words, rendered above its leaderboard's tables

A cell is complete iff it holds ``DONE`` and its files are sound: each parses, ``config.json`` names this cell's
directory and its hash is the hash of its config, ``run.json`` records the same hash, ``metrics.json`` holds the
headline metric (:meth:`Cell.record`). A cell holding ``DONE`` whose files are not sound is *damaged* (e.g. a
half-copied file from a sync tool): a run keeps its files aside and runs it again, and the leaderboards list it.
``DONE`` wins over ``FAILED.json`` (the failure is from an earlier attempt). Hidden entries and directories not
named ``seed<int>`` are not cells, so files beside the cells never interfere. Format 1 (before ``format`` was
recorded) is read the same way, minus the checks its files cannot pass (its config hashes were computed by an older
scheme; ``run.json`` and ``predictions.jsonl`` were optional), so a run cannot reuse those cells and says so
(:meth:`Store.older_format_cells`). Format 2 holds the same fields as format 3, but its hash covered the whole teacher
section in every trained cell (format 3 hashes only what a cell reads): its cells are read, exported and rendered,
named as computed under the older hash, and re-run by a run, never reused. A store format newer than
:data:`STORE_FORMAT` is named as such, never guessed.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from benchmark.core.build_lock import build_lock

from benchmark.core.digest import digest
from benchmark.core.files import (
    describe_os_error,
    disk_error_hint,
    read_json,
    read_jsonl,
    write_atomic,
    write_json,
    write_jsonl,
)

STORE_FORMAT = 3
# Formats whose config.json holds this version's fields (what exports read); reuse needs STORE_FORMAT itself.
READABLE_CONFIG_FORMATS = (2, 3)

# Reserved method names: the reference rows stored beside the distillation methods (seed 0: greedy decoding makes
# them seed-independent), and the baseline every method is compared with.
TEACHER = "teacher"
UNTRAINED = "untrained"
REFERENCE_METHODS = (TEACHER, UNTRAINED)
SFT = "sft"

_SEED_DIR = re.compile(r"seed(\d+)")
_SKIPPED_PAIRS = "skipped_pairs.json"
_RESULT_FILES = ("config.json", "run.json", "metrics.json", "predictions.jsonl", "train_log.jsonl")
_CORRUPT = ".corrupt"  # suffix of a damaged file kept aside
# Names become directory names in the store: lowercase (no clashes on case-insensitive file systems), no separators.
_USABLE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def usable_name(name: str) -> bool:
    """Whether ``name`` (a method or pair) can name a directory of the store."""
    return bool(_USABLE_NAME.fullmatch(name))


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
        self.key, self.root = key, Path(root)
        self.dir = self.root / key.task / key.pair / key.method / f"seed{key.seed}"

    @classmethod
    def at(cls, cell_dir: str | Path) -> "Cell":
        """The cell in ``cell_dir`` (``<root>/<task>/<pair>/<method>/seed<k>``); a path not shaped like one is a
        :class:`StoreError`."""
        path = Path(cell_dir)
        seed = _SEED_DIR.fullmatch(path.name)
        if seed is None or len(path.parts) < 4 or not (path / "config.json").is_file():
            raise StoreError(f"{path} is not a cell directory (<runs>/<task>/<pair>/<method>/seed<k> with a "
                             "config.json)")
        return cls(path.parents[3], CellKey(path.parent.parent.parent.name, path.parent.parent.name,
                                            path.parent.name, int(seed.group(1))))

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
        """True when the cell finished with exactly this resolved config and its files are sound."""
        stored = self.stored_config()
        return (self._done.exists() and stored is not None and stored.get("format", 1) == STORE_FORMAT
                and stored.get("hash") == config_digest and self.damage() is None)

    def damage(self) -> str | None:
        """Why the cell's files cannot be trusted, in one line naming the file; None when they can. A finished
        cell must read as a :class:`CellRecord`; an unfinished one may only hold a training log that parses (a run
        resumes from it)."""
        try:
            if self._done.exists():
                self.record()
            elif self.train_log.exists():
                _read_jsonl(self.train_log)
        except StoreError as error:
            return str(error)
        return None

    def set_aside(self) -> None:
        """Keep a damaged cell's files aside as ``<name>.corrupt`` (replacing older ones) and drop its ``DONE`` and
        checkpoint: the cell is then run again from scratch."""
        self._done.unlink(missing_ok=True)
        for name in _RESULT_FILES:
            path = self.dir / name
            if path.exists():
                os.replace(path, path.with_name(name + _CORRUPT))
        self.remove_checkpoint()

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
    def is_complete(self) -> bool:
        return self.done_time() is not None

    def finished_config(self) -> tuple[dict[str, Any], str]:
        """``(config, hash)`` of a sound cell whose config holds this version's fields (:data:`READABLE_CONFIG_FORMATS`);
        one-line :class:`StoreError` otherwise."""
        stored, store_format = self._sound_config()
        if store_format not in READABLE_CONFIG_FORMATS:
            raise StoreError(f"{self._config} is in store format {store_format}, this code reads formats "
                             f"{', '.join(map(str, READABLE_CONFIG_FORMATS))}; re-run the cell")
        return stored["config"], stored["hash"]

    def metrics(self) -> dict[str, float]:
        return _read_metrics(self.dir / "metrics.json")

    def predictions(self) -> list[dict[str, Any]]:
        """The records of ``predictions.jsonl`` (one object with an ``id`` per evaluated example, in file order);
        a missing file, a bad line or a repeated id is a :class:`StoreError` naming the file (and line)."""
        path = self.dir / "predictions.jsonl"
        records = _read_jsonl(path)
        if not records:
            raise StoreError(f"{path} has no predictions")
        for number, record in enumerate(records, start=1):
            if "id" not in record:
                raise StoreError(f"{path}, line {number}: expected an object with an 'id'")
        if len({str(r["id"]) for r in records}) != len(records):
            raise StoreError(f"{path} lists an example id twice")
        return records

    def train_records(self) -> list[dict[str, Any]]:
        """The records of ``train_log.jsonl`` (one object per optimizer step); a missing file or a bad line is a
        :class:`StoreError` naming the file (and line). A finished cell's log is not part of its soundness: the
        leaderboards report a bad log beside the cell's numbers."""
        return _read_jsonl(self.train_log)

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
        """Write ``FAILED.json`` with a one-line reason and the traceback; returns the reason. Never raises for a
        disk that cannot take the record (full, read-only): the reason then says so."""
        reason = failure_reason(error)
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        try:
            write_json(self._failed, {"error": reason, "traceback": trace})
        except OSError as problem:
            reason += f" [FAILED.json not written: {problem.strerror or problem}]"
        return reason

    def record(self) -> "CellRecord":
        """The finished cell as read from its files; :class:`StoreError` names the first file that does not parse
        or does not agree with this cell's directory and config hash."""
        stored, store_format = self._sound_config()
        config, config_file = stored["config"], self._config
        headline = config.get("headline_metric")
        if not isinstance(headline, str):
            raise StoreError(f"{config_file}: config has no 'headline_metric'")
        metrics = _read_metrics(self.dir / "metrics.json")
        if headline not in metrics:
            raise StoreError(f"{config_file}: headline metric {headline!r} is not among metrics {sorted(metrics)}")
        run_file, predictions = self.dir / "run.json", self.dir / "predictions.jsonl"
        run = read_json(run_file, StoreError) if store_format >= 2 or run_file.exists() else {}
        # Format 1 recorded no hash in run.json and not always the predictions.
        if store_format >= 2 and (not isinstance(run, dict) or run.get("config_hash") != stored["hash"]):
            raise StoreError(f"{run_file}: its config_hash does not match config.json")
        if (store_format >= 2 or predictions.exists()) and not _read_jsonl(predictions):
            raise StoreError(f"{predictions} is empty")
        key = self.key
        method = config.get("method") if isinstance(config.get("method"), dict) else {}
        changed = method.get("changed") if isinstance(method.get("changed"), dict) else {}
        return CellRecord(key.task, key.pair, key.method, key.seed, stored["hash"], headline, metrics,
                          **_costs(run), higher_is_better=bool(config.get("higher_is_better", True)),
                          changed=", ".join(f"{name}={value}" for name, value in sorted(changed.items())),
                          store_format=store_format, **_overlap(run if isinstance(run, dict) else {}),
                          prompt_protocol=_protocol(run if isinstance(run, dict) else {}),
                          cpu=str(run.get("cpu", "")) if isinstance(run, dict) else "")

    def _sound_config(self) -> tuple[dict[str, Any], int]:
        """``config.json`` and its store format, checked: it parses, its format is one this version reads, its hash
        is its config's (format 2 on) and its config names this cell's directory."""
        config_file = self._config
        stored = read_json(config_file, StoreError)
        config = stored.get("config") if isinstance(stored, dict) else None
        if not isinstance(config, dict) or not isinstance(stored.get("hash"), str):
            raise StoreError(f"{config_file} must be an object with a string 'hash' and a 'config' object")
        store_format = stored.get("format", 1)
        if not isinstance(store_format, int) or isinstance(store_format, bool) or store_format < 1:
            raise StoreError(f"{config_file}: format {store_format!r} is not a store format")
        if store_format > STORE_FORMAT:
            raise StoreError(f"{config_file}: written by a newer version of the suite (store format {store_format}; "
                             f"this version reads formats 1-{STORE_FORMAT})")
        if store_format >= 2 and stored["hash"] != config_hash(config):
            raise StoreError(f"{config_file}: its hash does not match its config (the file was edited or mixed up)")
        identity = config.get("cell", config)  # format 1 kept the coordinates at the top level
        # The directory names the cell; a config that says otherwise means files were moved or mixed up.
        for name in ("task", "pair", "method", "seed"):
            if name in identity and identity[name] != getattr(self.key, name):
                raise StoreError(f"{config_file}: config {name} {identity[name]!r} does not match its directory "
                                 f"({getattr(self.key, name)!r})")
        if (config.get("role") == TEACHER) != (self.key.method == TEACHER):
            raise StoreError(f"{config_file}: role {config.get('role')!r} does not fit method {self.key.method!r}")
        return stored, store_format

    def lock(self) -> "CellLock":
        return CellLock(self.dir / "LOCK")


class CellLock:
    """An exclusive per-cell lock file. Its holder touches it every :attr:`heartbeat_s` seconds, so a lock left by
    a dead process is taken over: at once when that process ran on this host, and after :attr:`stale_after_s`
    without a heartbeat when it ran on another node (a killed Slurm array task, a lost node)."""

    heartbeat_s = 30.0
    stale_after_s = 300.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held = False
        self._stop = threading.Event()

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
            self._stop.clear()
            threading.Thread(target=self._beat, name=f"heartbeat {self.path}", daemon=True).start()
            return True
        return False

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except FileNotFoundError:  # taken over after all (e.g. this process was suspended for long)
                return

    def _stale(self) -> bool:
        try:
            owner = json.loads(self.path.read_text())
            silent_s = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True  # released meanwhile
        except (OSError, json.JSONDecodeError):
            return False  # being written right now by its owner
        if silent_s > self.stale_after_s:
            return True
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
            self._stop.set()
            try:
                self.path.unlink(missing_ok=True)
            except OSError:  # e.g. the disk turned read-only: a lock left by a dead process is taken over later
                pass
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
    cpu_time_s: float | None = None  # the cell's process CPU seconds, all threads (run.json; stores before it: None)
    cpu: str = ""  # the CPU model and its timing flags the cell ran on (run.json "cpu")
    higher_is_better: bool = True  # the headline metric's direction (format 1 stores hold F1 and ROUGE only)
    changed: str = ""  # the method config fields that differ from the method's defaults, e.g. "mode=exact"
    store_format: int = STORE_FORMAT
    vocabulary_overlap: float | None = None  # the pair's O_V (run.json "overlap"; methods-spec §19)
    text_overlap: float | None = None  # the pair's O_T on the task's training answers
    prompt_protocol: str = ""  # each side's prompt style, shots and chat template (run.json "prompt_protocol")

    @property
    def key(self) -> CellKey:
        return CellKey(self.task, self.pair, self.method, self.seed)


@dataclass(frozen=True)
class FailedCell:
    task: str
    pair: str
    method: str
    seed: int
    reason: str


@dataclass(frozen=True)
class DamagedCell:
    """A finished cell (or a store file) that cannot be trusted: where it is, under the root, and why."""

    where: str  # "<task>/<pair>/<method>/seed<k>", or a file such as "skipped_pairs.json"
    reason: str  # one line; a cell's files are named relative to its directory


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
    damaged: tuple[DamagedCell, ...] = ()  # left out of ``cells``

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

    def pair_labels(self, task: str) -> dict[str, str]:
        """pair -> its label in the task's tables: the name, followed by its prompt protocol when the task's pairs
        were prompted in different ways (styles, shots or chat templates)."""
        protocols: dict[str, str] = {}
        for cell in self.cells:
            if cell.task == task and cell.prompt_protocol:
                protocols.setdefault(cell.pair, cell.prompt_protocol)
        pairs = {cell.pair for cell in self.cells if cell.task == task}
        if len(set(protocols.values())) < 2:
            return {pair: pair for pair in pairs}
        return {pair: f"{pair} [{protocols[pair]}]" if pair in protocols else pair for pair in pairs}

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

    def reading(self) -> str:
        """The store's ``reading.md`` (what a campaign concluded, in words), or "" where it has none."""
        path = self.root / "reading.md"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def _inputs_file(self, task: str) -> Path:
        return self.root / task / "inputs.jsonl"

    def record_inputs(self, task: str, inputs: Iterable[dict[str, str]]) -> None:
        """Add ``{"id", "question", "context"}`` records of evaluated examples to the task's inputs file, each id
        once (kept apart from ``predictions.jsonl``, whose bytes a new field would change)."""
        path = self._inputs_file(task)
        with build_lock(path):
            known = self.inputs(task)
            new = [r for r in inputs if r["id"] not in known]
            if new:
                rows = [{"id": i, "question": q, "context": c} for i, (q, c) in known.items()] + new
                write_jsonl(path, rows)

    def inputs(self, task: str) -> dict[str, tuple[str, str]]:
        """``id -> (question, context)`` of the task's recorded inputs; empty where none were recorded (older
        stores); a damaged file is a :class:`StoreError` naming it."""
        path = self._inputs_file(task)
        if not path.exists():
            return {}
        return {str(r["id"]): (str(r.get("question", "")), str(r.get("context", ""))) for r in _read_jsonl(path)}

    @property
    def job_logs(self) -> Path:
        """Scheduler files and logs of ``--executor slurm`` (hidden: scans of the store skip it)."""
        return self.root / ".jobs"

    # -- pairs that could not run --------------------------------------------------------------------------------
    def record_skipped(self, requested: list[str], skipped: dict[str, str]) -> str | None:
        """Merge this run's skipped pairs into ``skipped_pairs.json``: a requested pair that ran is no longer listed.
        A damaged file is kept aside (``.corrupt``) and replaced; returns why it was, or None."""
        path = self.root / _SKIPPED_PAIRS
        try:
            known, damage = {row["pair"]: row.get("reason", "") for row in self._skipped_rows()}, None
        except StoreError as error:
            os.replace(path, path.with_name(path.name + _CORRUPT))
            known, damage = {}, str(error)
        known = {pair: reason for pair, reason in known.items() if pair not in requested} | skipped
        write_json(path, [{"pair": pair, "reason": reason} for pair, reason in sorted(known.items())])
        return damage

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
        """Every cell directory under the root (none before the root is made), sorted by task, pair, method and
        seed."""
        if not self.root.is_dir():
            return
        for task_dir in _subdirs(self.root):
            for pair_dir in _subdirs(task_dir):
                for method_dir in _subdirs(pair_dir):
                    seeds = sorted(int(m.group(1)) for d in _subdirs(method_dir) if (m := _SEED_DIR.fullmatch(d.name)))
                    for seed in seeds:
                        key = CellKey(task_dir.name, pair_dir.name, method_dir.name, seed)
                        yield key, self.cell(key)

    def older_format_cells(self) -> list[CellKey]:
        """Finished cells written by an older store format (their config hashes cannot be compared)."""
        return [key for key, cell in self.finished_cells() if (_stored_format(cell) or STORE_FORMAT) < STORE_FORMAT]

    def newer_format_cells(self) -> list[CellKey]:
        """Finished cells written by a newer version of the suite (this one cannot tell what their files mean)."""
        return [key for key, cell in self.finished_cells() if (_stored_format(cell) or STORE_FORMAT) > STORE_FORMAT]

    def finished_cells(self) -> Iterator[tuple[CellKey, Cell]]:
        return ((key, cell) for key, cell in self.cell_dirs() if cell.done_time() is not None)

    def scan(self) -> StoreScan:
        """Read every cell and the skipped pairs. A finished cell whose files are damaged, missing or disagree with
        its directory is left out of ``cells`` and listed in ``damaged``: a leaderboard prints only numbers it can
        trust, and says which cells it could not."""
        if not self.root.is_dir():
            raise StoreError(f"result store directory {self.root} does not exist")
        cells: list[CellRecord] = []
        failed: list[FailedCell] = []
        damaged: list[DamagedCell] = []
        for key, cell in self.cell_dirs():
            if cell.done_time() is not None:
                try:
                    cells.append(cell.record())
                except StoreError as error:
                    damaged.append(DamagedCell(str(key), _relative(error, cell.dir)))
            elif cell.has_failed():
                failed.append(FailedCell(key.task, key.pair, key.method, key.seed, cell.failure_reason()))
        cells, mismatched = _one_headline_per_task(cells)
        damaged += mismatched
        try:
            rows = self._skipped_rows()
        except StoreError as error:
            rows = []
            damaged.append(DamagedCell(_SKIPPED_PAIRS, _relative(error, self.root)))
        skipped = sorted((SkippedPair(str(e["pair"]), str(e.get("reason", ""))) for e in rows),
                         key=lambda s: (s.pair, s.reason))
        headline = dict(sorted({cell.task: cell.headline_metric for cell in cells}.items()))
        return StoreScan(self.root, tuple(cells), tuple(failed), tuple(skipped), headline, tuple(damaged))



def scan_store(root: str | Path) -> StoreScan:
    return Store(root).scan()


def failure_reason(error: BaseException) -> str:
    """A failed cell's reason in one line: the exception's type and first line, and what to do about a full or
    read-only disk."""
    if isinstance(error, OSError):
        return f"{type(error).__name__}: {describe_os_error(error)}"
    first = str(error).splitlines()[0] if str(error) else ""
    reason = f"{type(error).__name__}: {first}".rstrip(": ")
    hint = disk_error_hint(error)
    return f"{reason} ({hint})" if hint else reason


def _relative(error: Exception, directory: Path) -> str:
    """The error's message with the paths of files in ``directory`` written relative to it."""
    return str(error).replace(f"{directory}{os.sep}", "")


def _subdirs(path: Path) -> Iterator[Path]:
    yield from (p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith("."))


def _stored_format(cell: Cell) -> int | None:
    """The store format the cell's ``config.json`` records (1: none recorded), or None when it cannot be read."""
    value = (cell.stored_config() or {"format": None}).get("format", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [record for _, record in read_jsonl(path, StoreError)]


def _read_metrics(path: Path) -> dict[str, float]:
    metrics = read_json(path, StoreError)
    if not isinstance(metrics, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()
    ):
        raise StoreError(f"{path} must map metric names to numbers")
    return {name: float(value) for name, value in sorted(metrics.items())}


def _costs(run: Any) -> dict[str, float | None]:
    """Wall time, training time per step and peak memory from ``run.json``'s content; each optional (format 1
    stores may lack the file). A resumed cell's step time counts only the steps it ran."""
    run = run if isinstance(run, dict) else {}
    train = run.get("train") if isinstance(run.get("train"), dict) else {}
    steps_run = (_finite(train.get("steps")) or 0) - (_finite(train.get("resumed_from_step")) or 0)
    train_wall = _finite(train.get("wall_time_s"))
    return {
        "wall_time_s": _finite(run.get("wall_time_s")),
        "train_s_per_step": train_wall / steps_run if train_wall is not None and steps_run > 0 else None,
        "peak_memory_mb": _finite(run.get("peak_memory_mb")),
        "cpu_time_s": _finite(run.get("cpu_time_s")),
    }


def _overlap(run: dict[str, Any]) -> dict[str, float | None]:
    """O_V and O_T from ``run.json``'s ``overlap`` (absent from stores written before it was recorded)."""
    overlap = run.get("overlap") if isinstance(run.get("overlap"), dict) else {}
    vocabulary, text = (overlap.get(part) if isinstance(overlap.get(part), dict) else {} for part in ("vocabulary", "text"))
    return {"vocabulary_overlap": _finite(vocabulary.get("student_share")),
            "text_overlap": _finite(text.get("one_to_one_share"))}


def _protocol(run: dict[str, Any]) -> str:
    """``run.json``'s ``prompt_protocol`` in words, e.g. ``teacher chat 5-shot (template 1a2b3c4d5e6f) · student
    plain 0-shot``; empty where not recorded."""
    protocol = run.get("prompt_protocol") if isinstance(run.get("prompt_protocol"), dict) else {}
    sides = []
    for role in ("teacher", "student"):
        side = protocol.get(role)
        if isinstance(side, dict):
            template = f" (template {side['chat_template']})" if side.get("chat_template") else ""
            sides.append(f"{role} {side.get('style')} {side.get('shots')}-shot{template}")
    return " · ".join(sides)


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _one_headline_per_task(cells: list[CellRecord]) -> tuple[list[CellRecord], list[DamagedCell]]:
    """The cells that agree with their task's headline metric (the one most of its cells name; on a tie, the first
    by name), and the others as damaged: a table must not mix two metrics."""
    names: dict[str, Counter[str]] = {}
    for cell in cells:
        names.setdefault(cell.task, Counter())[cell.headline_metric] += 1
    chosen = {task: min(counts, key=lambda name: (-counts[name], name)) for task, counts in names.items()}
    kept = [cell for cell in cells if cell.headline_metric == chosen[cell.task]]
    mismatched = [DamagedCell(f"{c.task}/{c.pair}/{c.method}/seed{c.seed}",
                              f"headline metric {c.headline_metric!r} differs from {chosen[c.task]!r}, the one the "
                              f"task's other cells name") for c in cells if c.headline_metric != chosen[c.task]]
    return kept, mismatched


__all__ = [
    "STORE_FORMAT", "TEACHER", "UNTRAINED", "SFT", "REFERENCE_METHODS", "StoreError", "CellKey", "Cell", "CellLock",
    "CellRecord", "DamagedCell", "FailedCell", "SkippedPair", "StoreScan", "Store", "scan_store", "config_hash",
    "failure_reason", "usable_name",
]
