"""Peak memory of a window of work (one cell, one benchmarked call), on the GPU or the CPU."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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
