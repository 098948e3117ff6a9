"""Teacher→student vocabulary map by minimum edit distance (MinED; methods-spec §3.1).

Following FuseLLM's vocabulary mapping: each teacher token maps to the student token with the same text, else to
the student token at minimum Levenshtein distance (first minimum in student-id order on ties). Beyond FuseLLM:

* token strings are compared as the text they stand for (:mod:`methods.token_text`), so byte-level BPE (``Ġthe``,
  ``Ċ``), SentencePiece (``▁the``, ``<0x0A>``) and plain vocabularies meet on one form whose word-boundary marker
  is a plain space;
* special tokens with a shared role map role to role (teacher EOS → student EOS), other specials only to student
  specials, and ordinary tokens only to ordinary tokens;
* :meth:`VocabInfo.fingerprint` identifies everything the map depends on, so the harness side can cache it per pair
  (``benchmark.models.pair_cache``); this module only computes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from methods.token_text import ROLES, VocabInfo

MAP_VERSION = 1  # bump when the mapping rules change: caches key on it
_CHUNK = 512  # teacher tokens per cdist call: 512 x 49k int32 distances is ~100 MB


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
