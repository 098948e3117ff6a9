"""Reading and writing the suite's files: atomic writes, JSON and JSON Lines, one reader with one-line errors."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable


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


def read_json(path: Path, error: type[Exception] = ValueError) -> Any:
    """The parsed content of a JSON file; a missing or malformed file raises ``error`` with a one-line message that
    names the file (and the line of a syntax error)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError) as problem:
        raise error(f"{path} is unreadable ({problem})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as problem:
        raise error(f"{path}, line {problem.lineno}: invalid JSON ({problem.msg})") from None
