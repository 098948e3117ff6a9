"""What a result needs to be traced back: git commit and dirty flag, package versions, the machine."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchmark.core.paths import REPO_ROOT

TRACKED_PACKAGES = ("torch", "transformers", "accelerate", "tokenizers", "gguf", "safetensors", "rouge-score", "numpy")
WORKER_ENV = "CTKD_WORKER"  # set by ``--executor gpus`` for each worker process
# CPU features that change CPU timings several-fold (the same default run: 12.7 min with them, 32 min without).
TIMING_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


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


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU model and which of :data:`TIMING_CPU_FLAGS` it has, e.g. ``AMD EPYC; avx2 avx512f``; the platform's
    processor string where ``/proc/cpuinfo`` cannot be read (not Linux)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("flags", "").split())
    present = " ".join(flag for flag in TIMING_CPU_FLAGS if flag in flags) or f"none of {' '.join(TIMING_CPU_FLAGS)}"
    return f"{fields.get('model name', platform.machine())}; {present}"


def environment_info() -> dict[str, Any]:
    import torch

    return {
        **git_state(),
        "packages": package_versions(),
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "cpu": cpu_description(),
        "torch_threads": torch.get_num_threads(),
        "worker": os.environ.get(WORKER_ENV),  # which grid worker ran the cell (``--executor gpus``), else None
    }
