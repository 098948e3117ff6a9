"""Where things live by default: the repository, the shared folder beside it, the cache directory."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # benchmark/core/paths.py
SHARED_ROOT = REPO_ROOT.parent / "shared"  # data, tokenizers and docs shared by this project's machines
CACHE_DIR_ENV = "CTKD_CACHE_DIR"
DATA_DIR_ENV = "CTKD_DATA_DIR"
TOKENIZER_DIR_ENV = "CTKD_TOKENIZER_DIR"


def default_cache_dir() -> Path:
    """``$CTKD_CACHE_DIR``, else ``<repo root>/.cache``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or REPO_ROOT / ".cache")


def default_data_dir() -> Path | None:
    """``$CTKD_DATA_DIR`` if set, else ``<repo root>/../shared/data`` if it exists, else None."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    shared = SHARED_ROOT / "data"
    return shared if shared.is_dir() else None


def user_data_dir() -> Path:
    """The per-user folder that fetched data goes to: ``$XDG_CACHE_HOME/ctkd-bench/data``, else
    ``~/.cache/ctkd-bench/data``."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "ctkd-bench" / "data"


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory of a run: ``explicit`` (``--data-dir``), else :func:`default_data_dir`, else
    :func:`user_data_dir` (which may not exist yet: ``data fetch`` creates it)."""
    if explicit is not None:
        return Path(explicit)
    return default_data_dir() or user_data_dir()


def tokenizer_root() -> Path:
    """``$CTKD_TOKENIZER_DIR``, else ``<repo root>/../shared/tokenizers``."""
    return Path(os.environ.get(TOKENIZER_DIR_ENV) or SHARED_ROOT / "tokenizers")
