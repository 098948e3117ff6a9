"""Reading and writing the suite's files: atomic writes, JSON and JSON Lines, one reader with one-line errors."""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write via a hidden temporary file in the same directory, then rename: readers see the old file or the new
    one, never half of one, and a store scan never picks up the temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)  # its errors name the directory
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _naming(error, path) from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data.encode("utf-8") if isinstance(data, str) else data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:  # e.g. a full disk
        raise _naming(error, path) from None
    finally:
        Path(temporary).unlink(missing_ok=True)


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` naming the file being written: a write to an open file names none, the others the temporary."""
    return type(error)(error.errno, error.strerror, str(path))


# What to do about the errors a full or read-only disk raises; other errors speak for themselves.
_OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full: free space, then run the same command again",
    errno.EDQUOT: "the disk quota is exceeded: free space, then run the same command again",
    errno.EROFS: "the file system is read-only: choose a writable --output or --cache-dir",
    errno.EACCES: "no permission: choose a writable --output or --cache-dir",
    errno.EPERM: "no permission: choose a writable --output or --cache-dir",
}


def describe_os_error(error: OSError) -> str:
    """One line: the error, the file it names, and what to do when the disk is full or read-only."""
    message = f"{error.strerror or error}" + (f": {str(error.filename)!r}" if error.filename else "")
    hint = _OS_ERROR_HINTS.get(error.errno or 0)
    return f"{message} ({hint})" if hint else message


def disk_error_hint(error: BaseException) -> str | None:
    """What to do when ``error`` comes from a disk that is full, read-only or not ours to write, else None.
    Libraries that write files (safetensors, torch.save) re-raise a full or read-only disk's error as their own, so
    their message is read for those too."""
    if isinstance(error, OSError):
        return _OS_ERROR_HINTS.get(error.errno or 0)
    codes = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
    return next((_OS_ERROR_HINTS[code] for code in codes if os.strerror(code) in str(error)), None)


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


def read_jsonl(path: Path, error: type[Exception] = ValueError) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSON Lines file; a missing file, or a line that is not
    UTF-8, not JSON or not an object, raises ``error`` with a one-line message naming the file and the line."""
    try:
        handle = Path(path).open("rb")  # bytes: a line that is not UTF-8 is named exactly
    except FileNotFoundError:
        raise error(f"{path} is missing") from None
    except OSError as problem:
        raise error(f"{path} is unreadable ({problem})") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}, line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as problem:
                raise error(f"{where}, column {problem.start + 1}: not UTF-8 text ({problem.reason})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as problem:
                raise error(f"{where}, column {problem.colno}: invalid JSON ({problem.msg})") from None
            if not isinstance(record, dict):
                raise error(f"{where}: expected a JSON object, got {type(record).__name__}")
            yield number, record
