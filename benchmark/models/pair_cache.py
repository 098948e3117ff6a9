"""Data derived from a pair's two tokenizers, built once per pair and stored in the cache directory.

Methods ask :class:`methods.resources.PairResources` for derived data; this subclass serves it from
``<cache_dir>/pairs/`` and builds what is missing under a file lock (grid workers build an entry once). Each entry is
a ``.npy`` array plus a JSON manifest holding its key and the array's checksum, written last, both atomically: a
stale or partial entry is detected and rebuilt, never used.

The pair's overlap (methods-spec §19) is kept here too, as one JSON file per entry holding its key: the vocabulary
overlap per pair (keyed by both tokenizers' fingerprints), and the text overlap per pair and task (also keyed by the
task's data fingerprint and the answer prefixes the two prompt formats put before an answer).
"""
from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from benchmark.core.build_lock import build_lock
from benchmark.core.digest import digest
from benchmark.core.files import write_atomic
from methods.overlap import (
    SpanRoundTrip,
    TextOverlap,
    VocabularyOverlap,
    lay_answers,
    measure_text_overlap,
    span_round_trip,
    vocabulary_overlap,
)
from methods.projection_matrix import Projection, build_projection
from methods.resources import PairResources
from methods.token_text import VocabInfo
from methods.vocab_map import MAP_VERSION, VocabMap, build_vocab_map


@dataclass
class CachedPairResources(PairResources):
    cache_dir: Path | str = ".cache"

    def vocab_map(self) -> VocabMap:
        return cached_vocab_map(self.teacher_vocab(), self.student_vocab(), Path(self.cache_dir) / "pairs")

    def projection(self, recipe: str) -> Projection:
        return cached_projection(self.student_tokenizer, self.teacher_tokenizer, recipe, Path(self.cache_dir) / "pairs")


PROJECTION_VERSION = 1  # bump when methods.projection_matrix changes what it builds


def cached_projection(student: Any, teacher: Any, recipe: str, directory: Path) -> Projection:
    """X-Token's projection matrix for this pair and recipe, keyed by both tokenizers' fingerprints: loaded when a
    complete entry is there, else built (by one process; the others wait for it) and stored as one ``.npz``."""
    keys = {"kind": "xtoken-projection", "version": PROJECTION_VERSION, "recipe": recipe,
            "student": VocabInfo.from_tokenizer(student).fingerprint(),
            "teacher": VocabInfo.from_tokenizer(teacher).fingerprint()}
    path = directory / f"{digest(keys, short=True)}.npz"

    def load() -> Projection | None:
        try:
            manifest, data = json.loads(path.with_suffix(".json").read_text()), path.read_bytes()
        except (OSError, ValueError):
            return None
        if manifest.get("key") != keys or manifest.get("sha256") != digest(data):
            return None
        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        return Projection(arrays["ids"], arrays["weights"])

    cached = load()
    if cached is not None:
        return cached
    with build_lock(path):
        cached = load()
        if cached is not None:
            return cached
        projection = build_projection(student, teacher, recipe)
        buffer = io.BytesIO()
        np.savez(buffer, ids=projection.ids, weights=projection.weights)
        write_atomic(path, buffer.getvalue())
        write_atomic(path.with_suffix(".json"), json.dumps({"key": keys, "sha256": digest(buffer.getvalue())}))
    return projection


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


# --------------------------------------------------------------------------------------------------------------
# Overlap of a pair (methods-spec §19)
# --------------------------------------------------------------------------------------------------------------
OVERLAP_VERSION = 1  # bump when methods.overlap changes what it measures
OVERLAP_ANSWERS = 2000  # training answers the text overlap reads (a fixed-seed subset beyond that) [suite]


def cached_vocabulary_overlap(student: VocabInfo, teacher: VocabInfo, directory: Path) -> VocabularyOverlap:
    """O_V, NeMo's normalisation and the Jaccard index of the pair's vocabularies, measured once per pair."""
    keys = {"kind": "vocabulary-overlap", "version": OVERLAP_VERSION, "student": student.fingerprint(),
            "teacher": teacher.fingerprint()}
    values = _cached_json(directory, keys, lambda: dataclasses.asdict(vocabulary_overlap(student, teacher)))
    return VocabularyOverlap(**values)


def indexed_vocabulary_overlap(identity: Mapping[str, Any], load_vocabs: Callable[[], tuple[VocabInfo, VocabInfo]],
                               directory: Path) -> VocabularyOverlap:
    """:func:`cached_vocabulary_overlap` behind an index keyed by the pair's declared ``identity`` (both model
    specs' fingerprints, which pin what a tokenizer is read from), so that once measured, listing the pairs loads no
    tokenizer; ``load_vocabs`` returns the ``(student, teacher)`` vocabularies when the index has no entry."""
    keys = {"kind": "vocabulary-overlap-index", "version": OVERLAP_VERSION, **identity}
    values = _cached_json(directory, keys, lambda: dataclasses.asdict(
        cached_vocabulary_overlap(*load_vocabs(), directory)))
    return VocabularyOverlap(**values)


def cached_text_overlap(student_tokenizer: Any, teacher_tokenizer: Any, answers: Sequence[str],
                        prefixes: tuple[str, str], task: str, data: str, directory: Path) -> TextOverlap:
    """O_T and the other text-overlap measures of the pair on a task's training ``answers`` (encoded after each
    side's answer ``prefixes``), measured once per pair, task data and prefixes."""
    keys = _answer_keys("text-overlap", student_tokenizer, teacher_tokenizer, answers, prefixes, task, data)
    values = _cached_json(directory, keys, lambda: dataclasses.asdict(
        measure_text_overlap(student_tokenizer, teacher_tokenizer, answers, *prefixes)))
    return TextOverlap(**values)


def cached_span_round_trip(student_tokenizer: Any, teacher_tokenizer: Any, answers: Sequence[str],
                           prefixes: tuple[str, str], task: str, data: str, directory: Path) -> SpanRoundTrip:
    """On how many of ``answers`` each side's byte spans round-trip, measured once per pair, task data and prefixes
    (the same answers and encoding as :func:`cached_text_overlap`)."""
    keys = _answer_keys("span-round-trip", student_tokenizer, teacher_tokenizer, answers, prefixes, task, data)
    values = _cached_json(directory, keys, lambda: dataclasses.asdict(
        span_round_trip(lay_answers(student_tokenizer, teacher_tokenizer, answers, *prefixes))))
    return SpanRoundTrip(**values)


def _answer_keys(kind: str, student_tokenizer: Any, teacher_tokenizer: Any, answers: Sequence[str],
                 prefixes: tuple[str, str], task: str, data: str) -> dict[str, Any]:
    return {"kind": kind, "version": OVERLAP_VERSION,
            "student": VocabInfo.from_tokenizer(student_tokenizer).fingerprint(),
            "teacher": VocabInfo.from_tokenizer(teacher_tokenizer).fingerprint(), "task": task, "data": data,
            "prefixes": list(prefixes), "answers": digest(list(answers), short=True)}


def _cached_json(directory: Path, keys: Mapping[str, Any], build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The values stored for ``keys`` in ``directory``, built (by one process; the others wait) when missing,
    unreadable or stored for other keys."""
    path = Path(directory) / f"{digest(keys, short=True)}.json"

    def load() -> dict[str, Any] | None:
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return entry["values"] if isinstance(entry, dict) and entry.get("key") == dict(keys) else None

    cached = load()
    if cached is not None:
        return cached
    with build_lock(path):
        cached = load()  # another worker may have built it while this one waited
        if cached is not None:
            return cached
        values = build()
        write_atomic(path, json.dumps({"key": dict(keys), "values": values}, indent=1))
    return values
