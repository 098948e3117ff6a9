"""Named subsets of the teacher's vocabulary whose probability mass a method reads at every answer row.

A method that needs ``log Σ_{v ∈ S} p_T(v)`` per row declares the subset's name in ``TeacherRequest.subsets``; a
top-k teacher cache then stores ``logsumexp(z[S] / tau)`` per row (``TeacherOutputs.subset_log_mass``), keyed by the
digest of the ids, so the method trains from the cache instead of a live teacher. Each subset is a function of the
pair's two vocabularies; the method and the cache compute it with the same function here.

* ``boundary``: the teacher tokens after which an ALM chunk may end (spec §6.2 ``append_space``): tokens whose bytes
  start with a space, a tab or a newline, and the special tokens.
* ``shared``: the teacher side of the canonical shared vocabulary (:func:`methods.overlap.shared_vocabulary`), on
  which ``eta-kl`` renormalises (spec §16.4).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from methods.overlap import shared_vocabulary
from methods.token_text import VocabInfo

BOUNDARY_STARTS = (b" ", b"\t", b"\n")  # + special tokens: tokenkit's space_mask_mode space+tab+newline+special [code]


def boundary_ids(info: VocabInfo) -> Tensor:
    """Ids of the tokens after which a chunk may end: bytes starting with a space, tab or newline, or special."""
    canon = info.canonicalizer()
    specials = info.special_ids | set(info.roles.values())
    ids = [i for token, i in info.vocab.items() if i in specials or canon.bytes_of(token)[:1] in BOUNDARY_STARTS]
    return torch.tensor(sorted(ids), dtype=torch.long)


def shared_teacher_ids(student: VocabInfo, teacher: VocabInfo) -> Tensor:
    """The teacher ids of the canonical shared vocabulary, in its pair order."""
    return torch.tensor(shared_vocabulary(student, teacher, "canonical").teacher, dtype=torch.long)


# name -> (student vocabulary, teacher vocabulary) -> teacher ids
TEACHER_SUBSETS: dict[str, Callable[[VocabInfo, VocabInfo], Tensor]] = {
    "boundary": lambda student, teacher: boundary_ids(teacher),
    "shared": shared_teacher_ids,
}


def teacher_subset(name: str, student: VocabInfo, teacher: VocabInfo) -> Tensor:
    """The teacher ids of subset ``name`` for this pair."""
    if name not in TEACHER_SUBSETS:
        raise ValueError(f"unknown teacher vocabulary subset {name!r}; known: {', '.join(TEACHER_SUBSETS)}")
    return TEACHER_SUBSETS[name](student, teacher)
