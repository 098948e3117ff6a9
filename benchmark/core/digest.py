"""The suite's one digest: SHA-256 over canonical JSON (every key, fingerprint and config hash is made here), and
the SHA-256 of a file's bytes (to check data and model files against their pinned releases).

Keys of caches and fingerprints use the short form (``KEY_CHARS`` hex characters: 64 bits, collision-free for any
number of entries this suite will ever hold); a cell's config hash uses the full digest.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

KEY_CHARS = 16


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text (non-JSON values via ``str``)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(obj: Any, *, short: bool = False) -> str:
    """Hex SHA-256 of ``obj``'s canonical JSON (of ``obj`` itself when it is ``bytes``); ``short`` keeps the first
    :data:`KEY_CHARS` characters."""
    data = obj if isinstance(obj, bytes) else canonical_json(obj).encode("utf-8")
    hex_digest = hashlib.sha256(data).hexdigest()
    return hex_digest[:KEY_CHARS] if short else hex_digest


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (data files reach tens of MB, model files hundreds)."""
    checksum = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            checksum.update(block)
    return checksum.hexdigest()
