"""What a method may derive from a pair's two tokenizers before training (e.g. MinED's vocabulary map).

Methods never read or write files: they ask a :class:`PairResources` for derived data. This base computes it in
memory; the harness side (``benchmark.models.pair_cache.CachedPairResources``) stores each item on disk, keyed by both
tokenizers, so that it is built once per pair and shared by every cell, seed and worker.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from methods.projection_matrix import Projection, build_projection
from methods.token_text import VocabInfo
from methods.vocab_map import VocabMap, build_vocab_map


@dataclass
class PairResources:
    student_tokenizer: Any
    teacher_tokenizer: Any

    def student_vocab(self) -> VocabInfo:
        return VocabInfo.from_tokenizer(self.student_tokenizer)

    def teacher_vocab(self) -> VocabInfo:
        return VocabInfo.from_tokenizer(self.teacher_tokenizer)

    def vocab_map(self) -> VocabMap:
        """Teacher id -> student id by minimum edit distance (MinED; :func:`methods.vocab_map.build_vocab_map`)."""
        return build_vocab_map(self.teacher_vocab(), self.student_vocab())

    def projection(self, recipe: str) -> Projection:
        """X-Token's student -> teacher projection matrix by ``recipe``
        (:func:`methods.projection_matrix.build_projection`)."""
        return build_projection(self.student_tokenizer, self.teacher_tokenizer, recipe)
