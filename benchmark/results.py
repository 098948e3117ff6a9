"""The result store: one directory per cell, ``DONE`` written last and atomically, a lock per cell.

``<root>/<task>/<pair>/<method>/seed<k>/`` holds ``config.json`` (resolved config + hash), ``run.json``
(provenance and cost), ``metrics.json``, ``predictions.jsonl``, ``train_log.jsonl`` for trained cells, and
``DONE``. A failed cell holds ``FAILED.json`` instead of ``DONE``.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterable

REPO_ROOT = Path(__file__).resolve().parent.parent
TRACKED_PACKAGES = ("torch", "transformers", "accelerate", "tokenizers", "gguf", "safetensors", "rouge-score", "numpy")


@dataclass(frozen=True)
class CellKey:
    task: str
    pair: str
    method: str
    seed: int

    def path(self, root: Path) -> Path:
        return Path(root) / self.task / self.pair / self.method / f"seed{self.seed}"

    def __str__(self) -> str:
        return f"{self.task}/{self.pair}/{self.method}/seed{self.seed}"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write via a hidden temporary file in the same directory, then rename: readers see the old file or the new
    one, never half of one, and a store scan never picks up the temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data.encode("utf-8") if isinstance(data, str) else data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    write_atomic(path, "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows))


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def is_done(cell_dir: Path, expected_hash: str) -> bool:
    """True when the cell finished with exactly this resolved config."""
    if not (cell_dir / "DONE").exists() or not (cell_dir / "config.json").exists():
        return False
    try:
        return read_json(cell_dir / "config.json").get("hash") == expected_hash
    except (OSError, json.JSONDecodeError):
        return False


def start_cell(cell_dir: Path, config: dict[str, Any]) -> str:
    """Clear the completion/failure markers of a cell about to (re)run and write its config; returns the hash."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    for marker in ("DONE", "FAILED.json"):
        (cell_dir / marker).unlink(missing_ok=True)
    digest = config_hash(config)
    write_json(cell_dir / "config.json", {"hash": digest, "config": config})
    return digest


def finish_cell(
    cell_dir: Path,
    metrics: dict[str, float],
    predictions: list[dict[str, Any]],
    run_info: dict[str, Any],
) -> None:
    write_jsonl(cell_dir / "predictions.jsonl", predictions)
    write_json(cell_dir / "metrics.json", metrics)
    write_json(cell_dir / "run.json", run_info)
    write_atomic(cell_dir / "DONE", "")


def record_failure(cell_dir: Path, error: BaseException) -> str:
    """Write ``FAILED.json`` with a one-line reason and the traceback; returns the reason."""
    reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
    write_json(
        cell_dir / "FAILED.json",
        {"error": reason, "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))},
    )
    return reason


def failure_reason(cell_dir: Path) -> str:
    """The one-line reason in a cell's ``FAILED.json``; a failed cell is reported even when that file is broken."""
    try:
        error = read_json(cell_dir / "FAILED.json").get("error")
    except (OSError, ValueError, AttributeError):
        return "(unreadable FAILED.json)"
    lines = str(error).strip().splitlines() if error else []
    return lines[0] if lines else "(no reason recorded)"


class CellLock:
    """An exclusive per-cell lock file; a lock left by a dead process on this host is taken over."""

    def __init__(self, cell_dir: Path) -> None:
        self.path = cell_dir / "LOCK"
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

    def __enter__(self) -> "CellLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def git_state() -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        except OSError:  # no git on this machine
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = run("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": run("rev-parse", "--verify", "HEAD"), "git_dirty": None if status is None else bool(status)}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def environment_info() -> dict[str, Any]:
    import torch

    return {
        **git_state(),
        "packages": package_versions(),
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "torch_threads": torch.get_num_threads(),
        "worker": os.environ.get("CTKD_WORKER"),  # which grid worker ran the cell (``--executor gpus``), else None
    }


_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


class PeakMemory:
    """A peak-memory window opened at construction: a cell (or a benchmarked call) reports its own peak, not the
    process's, and :attr:`base_mb` is the level the window opened at.

    GPU: the allocator's peak statistics, reset. CPU on Linux: writing ``5`` to ``/proc/self/clear_refs`` resets
    the resident high-water mark (``VmHWM``) to the current resident size. Where neither reset is possible the peak
    is the process's (``ru_maxrss``) and :meth:`read` says so under ``peak_memory_scope``.
    """

    def __init__(self, device: str | Any | None = None) -> None:
        import torch

        self.on_gpu = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
        if self.on_gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.scope, self.base_mb = "window", torch.cuda.memory_allocated() / 2**20
            return
        try:
            _PROC_CLEAR_REFS.write_text("5")
            self.scope = "window"
        except OSError:
            self.scope = "process"
        self.base_mb = _proc_status_mb("VmRSS") or 0.0

    def peak_mb(self) -> float:
        """Peak memory in MiB since the window opened (GPU allocated, or CPU resident)."""
        import torch

        if self.on_gpu:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20
        high_water = _proc_status_mb("VmHWM") if self.scope == "window" else None
        if high_water is not None:
            return high_water
        import resource

        self.scope = "process"
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def read(self) -> dict[str, Any]:
        """``peak_memory_mb``, what it measures (``peak_memory_kind``) and over what (``peak_memory_scope``)."""
        peak = self.peak_mb()
        kind = "gpu_allocated" if self.on_gpu else "cpu_resident"
        return {"peak_memory_mb": peak, "peak_memory_kind": kind, "peak_memory_scope": self.scope}


def _proc_status_mb(field: str) -> float | None:
    """A ``kB`` field of ``/proc/self/status`` in MiB, or None where there is no such file or field."""
    try:
        status = _PROC_STATUS.read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None
