"""Reading a finished cell's files from outside a run (model cards, exports): its directory is all one has."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.files import read_json
from benchmark.store import STORE_FORMAT


def read_cell_config(cell_dir: Path, error: type[Exception]) -> tuple[dict[str, Any], str]:
    """``(config, hash)`` of a cell's ``config.json``; a missing or unreadable file, or one of another store
    format, raises ``error`` with one line naming the file."""
    stored = read_json(Path(cell_dir) / "config.json", error)
    found = stored.get("format", 1) if isinstance(stored, dict) else None
    if found != STORE_FORMAT:
        raise error(f"{Path(cell_dir) / 'config.json'} is in store format {found}, this code reads format "
                    f"{STORE_FORMAT}; re-run the cell")
    return stored["config"], stored["hash"]
