"""Teacher→student vocabulary map by minimum edit distance (MinED; methods-spec §3.1), cached on disk.

Following FuseLLM's vocabulary mapping: each teacher token maps to the student token with the same text, else to
the student token at minimum Levenshtein distance (first minimum in student-id order on ties). Beyond FuseLLM:

* token strings are compared as the text they stand for, so byte-level BPE (``Ġthe``, ``Ċ``), SentencePiece
  (``▁the``, ``<0x0A>``) and plain vocabularies meet on one form whose word-boundary marker is a plain space;
* special tokens with a shared role map role to role (teacher EOS → student EOS), other specials only to student
  specials, and ordinary tokens only to ordinary tokens;
* the map is keyed by both tokenizers' fingerprints and cached as ``.npy`` + a JSON manifest written last, both
  atomically, so a stale or partial cache is detected and rebuilt.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from benchmark.build_lock import build_lock
from benchmark.results import write_atomic

MAP_VERSION = 1  # bump when the mapping rules change: it is part of the cache key
ROLES = ("eos_token", "bos_token", "pad_token", "unk_token")  # checked in this order; the first shared role wins
SENTENCEPIECE_MARKER = "▁"
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece byte-fallback pieces
_CHUNK = 512  # teacher tokens per cdist call: 512 x 49k int32 distances is ~100 MB


def _byte_alphabet() -> dict[str, int]:
    """Byte-level BPE's alphabet (GPT-2 scheme): printable Latin-1 bytes stand for themselves, the other bytes
    for the code points 256, 257, ... in byte order (so a space is ``Ġ`` and a newline ``Ċ``)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    alphabet = {chr(byte): byte for byte in printable}
    shifted = (byte for byte in range(256) if chr(byte) not in alphabet)
    alphabet.update({chr(256 + n): byte for n, byte in enumerate(shifted)})
    return alphabet


_BYTE_ALPHABET = _byte_alphabet()


@dataclass(frozen=True)
class TokenCanonicalizer:
    """Token string → the text it stands for, comparable across tokenizer families.

    Bytes that are not valid UTF-8 on their own (a fragment of a multi-byte character) become surrogate-escape code
    points (U+DC80 + byte), so the same fragment compares equal whichever family produced it.
    """

    byte_level: bool
    literals: frozenset[str] = frozenset()  # added tokens: matched on raw text, so never byte-encoded
    tokens: tuple[str | None, ...] = field(default=(), repr=False, compare=False)  # token string per id (None: hole)

    def text_of_id(self, token_id: int) -> str:
        """The canonical text of token ``token_id`` of the vocabulary this canonicalizer was built from."""
        token = self.tokens[token_id] if 0 <= token_id < len(self.tokens) else None
        if token is None:
            raise ValueError(f"token id {token_id} has no token in this vocabulary of {len(self.tokens)} ids")
        return self(token)

    def __call__(self, token: str) -> str:
        if token in self.literals:
            return token
        if self.byte_level:
            try:
                data = bytes(_BYTE_ALPHABET[char] for char in token)
            except KeyError:
                return token  # not a byte-level string, e.g. text that was already decoded
        else:
            piece = _BYTE_PIECE.fullmatch(token)
            if piece is None:
                return token.replace(SENTENCEPIECE_MARKER, " ")
            data = bytes([int(piece.group(1), 16)])
        return data.decode("utf-8", errors="surrogateescape")


@dataclass(frozen=True)
class VocabInfo:
    """What the map needs from one tokenizer (build one by hand in tests, or with :meth:`from_tokenizer`)."""

    vocab: Mapping[str, int]  # token string -> id
    byte_level: bool
    special_ids: frozenset[int] = frozenset()
    roles: Mapping[str, int] = field(default_factory=dict)  # e.g. {"eos_token": 2}
    literals: frozenset[str] = frozenset()  # added tokens, stored verbatim

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "VocabInfo":
        """Read a Hugging Face tokenizer (any family)."""
        added = getattr(tokenizer, "added_tokens_decoder", {})
        special = set(tokenizer.all_special_ids) | {i for i, token in added.items() if token.special}
        roles = {role: getattr(tokenizer, f"{role}_id") for role in ROLES}
        return cls(
            vocab=dict(tokenizer.get_vocab()),
            byte_level=_is_byte_level(tokenizer),
            special_ids=frozenset(special),
            roles={role: i for role, i in roles.items() if i is not None},
            literals=frozenset(token.content for token in added.values()),
        )

    @property
    def size(self) -> int:
        """One past the largest id (ids without a token are holes)."""
        return max(self.vocab.values()) + 1

    def canonicalizer(self) -> TokenCanonicalizer:
        tokens: list[str | None] = [None] * self.size
        for token, i in self.vocab.items():
            tokens[i] = token
        return TokenCanonicalizer(self.byte_level, self.literals, tuple(tokens))

    def canonical_strings(self) -> list[str | None]:
        """Canonical text per id, ``None`` for ids without a token."""
        canon = self.canonicalizer()
        return [None if token is None else canon(token) for token in canon.tokens]

    def fingerprint(self) -> str:
        """sha256 of everything the map depends on: the sorted vocabulary, the special tokens and the family."""
        payload = {
            "vocab": sorted(self.vocab.items()),
            "byte_level": self.byte_level,
            "special_ids": sorted(self.special_ids),
            "roles": sorted(self.roles.items()),
            "literals": sorted(self.literals),
        }
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def _is_byte_level(tokenizer: Any) -> bool:
    """A fast tokenizer whose decoder (or one step of it) is ByteLevel; tokenizers without a backend are read as
    SentencePiece-like or plain vocabularies."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None:
        return False
    return '"ByteLevel"' in decoder.__getstate__().decode("utf-8")


@dataclass(frozen=True)
class VocabMap:
    """``teacher_to_student[t]`` is the student id for teacher id ``t`` (-1 where ``t`` has no token)."""

    teacher_to_student: np.ndarray  # [V_t] int64
    exact_matches: int  # mapped teacher tokens whose canonical text equals their student token's

    @property
    def mapped(self) -> int:
        return int((self.teacher_to_student >= 0).sum())

    @property
    def exact_share(self) -> float:
        return self.exact_matches / max(self.mapped, 1)


def build_vocab_map(teacher: VocabInfo, student: VocabInfo) -> VocabMap:
    """Map every teacher token: shared special roles first, then exact text, then minimum edit distance."""
    teacher_text, student_text = teacher.canonical_strings(), student.canonical_strings()
    mapping = np.full(len(teacher_text), -1, dtype=np.int64)
    for role in ROLES:
        if role in teacher.roles and role in student.roles and mapping[teacher.roles[role]] < 0:
            mapping[teacher.roles[role]] = student.roles[role]

    student_special = sorted(i for i in student.special_ids if student_text[i] is not None)
    student_ordinary = [i for i, text in enumerate(student_text) if text is not None and i not in student.special_ids]
    teacher_special = [i for i in sorted(teacher.special_ids) if mapping[i] < 0 and teacher_text[i] is not None]
    teacher_ordinary = [i for i, text in enumerate(teacher_text) if text is not None and i not in teacher.special_ids]
    _match(teacher_special, student_special or student_ordinary, teacher_text, student_text, mapping)
    _match(teacher_ordinary, student_ordinary, teacher_text, student_text, mapping)

    exact = sum(teacher_text[t] == student_text[s] for t, s in enumerate(mapping.tolist()) if s >= 0)
    return VocabMap(mapping, exact)


def _match(
    teacher_ids: Sequence[int],
    student_ids: Sequence[int],
    teacher_text: Sequence[str | None],
    student_text: Sequence[str | None],
    mapping: np.ndarray,
) -> None:
    """Fill ``mapping`` for ``teacher_ids`` with the best of ``student_ids`` (given in ascending id order)."""
    if not teacher_ids:
        return
    if not student_ids:
        raise ValueError("the student vocabulary has no token to map the teacher's tokens to")
    first_with_text: dict[str | None, int] = {}
    for i in student_ids:
        first_with_text.setdefault(student_text[i], i)
    remaining = []
    for i in teacher_ids:
        exact = first_with_text.get(teacher_text[i])
        if exact is None:
            remaining.append(i)
        else:
            mapping[i] = exact
    choices = [student_text[i] for i in student_ids]
    candidates = np.asarray(student_ids, dtype=np.int64)
    for start in range(0, len(remaining), _CHUNK):
        chunk = remaining[start : start + _CHUNK]
        distances = process.cdist(
            [teacher_text[i] for i in chunk], choices, scorer=Levenshtein.distance, dtype=np.int32, workers=-1
        )
        mapping[chunk] = candidates[distances.argmin(axis=1)]  # argmin keeps the first minimum: ties → lowest id


def load_or_build_vocab_map(teacher: VocabInfo, student: VocabInfo, cache_dir: str | Path | None = None) -> VocabMap:
    """The map for this pair, from ``cache_dir`` when a complete entry for both fingerprints is there."""
    if cache_dir is None:
        return build_vocab_map(teacher, student)
    keys = {"version": MAP_VERSION, "teacher": teacher.fingerprint(), "student": student.fingerprint()}
    stem = hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:32]
    array_path = Path(cache_dir) / f"mined-vocab-map-{stem}.npy"
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
    if manifest.get("sha256") != hashlib.sha256(data).hexdigest():
        return None
    return VocabMap(np.load(io.BytesIO(data), allow_pickle=False), int(manifest["exact_matches"]))


def _save(vocab_map: VocabMap, array_path: Path, manifest_path: Path, keys: Mapping[str, Any]) -> None:
    """Array first, manifest (holding the array's checksum) last: a reader never trusts a half-written entry."""
    buffer = io.BytesIO()
    np.save(buffer, vocab_map.teacher_to_student, allow_pickle=False)
    data = buffer.getvalue()
    manifest = {
        **keys,
        "sha256": hashlib.sha256(data).hexdigest(),
        "teacher_size": len(vocab_map.teacher_to_student),
        "exact_matches": vocab_map.exact_matches,
        "exact_share": vocab_map.exact_share,
    }
    write_atomic(array_path, data)
    write_atomic(manifest_path, json.dumps(manifest, indent=1))
