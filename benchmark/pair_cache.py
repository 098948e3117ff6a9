"""Data derived from a pair's two tokenizers, built once per pair and stored in the cache directory.

Methods ask :class:`methods.resources.PairResources` for derived data; this subclass serves it from
``<cache_dir>/pairs/`` and builds what is missing under a file lock (grid workers build an entry once). Each entry is
a ``.npy`` array plus a JSON manifest holding its key and the array's checksum, written last, both atomically: a
stale or partial entry is detected and rebuilt, never used.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from benchmark.build_lock import build_lock
from benchmark.digest import digest
from benchmark.files import write_atomic
from methods.resources import PairResources
from methods.token_text import VocabInfo
from methods.vocab_map import MAP_VERSION, VocabMap, build_vocab_map


@dataclass
class CachedPairResources(PairResources):
    cache_dir: Path | str = ".cache"

    def vocab_map(self) -> VocabMap:
        return cached_vocab_map(self.teacher_vocab(), self.student_vocab(), Path(self.cache_dir) / "pairs")


def cached_vocab_map(teacher: VocabInfo, student: VocabInfo, directory: Path) -> VocabMap:
    """MinED's map for this pair from ``directory`` when a complete entry for both fingerprints is there, else
    built (by one process; the others wait for it) and stored."""
    keys = {"kind": "mined-vocab-map", "version": MAP_VERSION, "teacher": teacher.fingerprint(),
            "student": student.fingerprint()}
    array_path = directory / f"{digest(keys, short=True)}.npy"
    manifest_path = array_path.with_suffix(".json")
    cached = _load(array_path, manifest_path, keys)
    if cached is not None:
        return cached
    with build_lock(array_path):
        cached = _load(array_path, manifest_path, keys)  # another worker may have built it while this one waited
        if cached is not None:
            return cached
        vocab_map = build_vocab_map(teacher, student)
        _save(vocab_map, array_path, manifest_path, keys)
    return vocab_map


def _load(array_path: Path, manifest_path: Path, keys: Mapping[str, Any]) -> VocabMap | None:
    """The cached map, or ``None`` when the entry is missing, for other tokenizers, or incomplete."""
    try:
        manifest = json.loads(manifest_path.read_text())
        data = array_path.read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in keys.items()):
        return None
    if manifest.get("sha256") != digest(data):
        return None
    return VocabMap(np.load(io.BytesIO(data), allow_pickle=False), int(manifest["exact_matches"]))


def _save(vocab_map: VocabMap, array_path: Path, manifest_path: Path, keys: Mapping[str, Any]) -> None:
    """Array first, manifest (holding the array's checksum) last: a reader never trusts a half-written entry."""
    buffer = io.BytesIO()
    np.save(buffer, vocab_map.teacher_to_student, allow_pickle=False)
    data = buffer.getvalue()
    manifest = {
        **keys,
        "sha256": digest(data),
        "teacher_size": len(vocab_map.teacher_to_student),
        "exact_matches": vocab_map.exact_matches,
        "exact_share": vocab_map.exact_share,
    }
    write_atomic(array_path, data)
    write_atomic(manifest_path, json.dumps(manifest, indent=1))
