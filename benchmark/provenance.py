"""What a result needs to be traced back: git commit and dirty flag, package versions, the machine."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from benchmark.paths import REPO_ROOT

TRACKED_PACKAGES = ("torch", "transformers", "accelerate", "tokenizers", "gguf", "safetensors", "rouge-score", "numpy")
WORKER_ENV = "CTKD_WORKER"  # set by ``--executor gpus`` for each worker process


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
        "worker": os.environ.get(WORKER_ENV),  # which grid worker ran the cell (``--executor gpus``), else None
    }
