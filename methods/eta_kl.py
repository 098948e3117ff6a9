"""eta-kl — exact token alignment + KL on the shared vocabulary (KDFlow ``SimpleCrossTokenizerKD`` @ 3a7a21a; §16).

Aligned positions (§16.4): the 1:1 groups of :mod:`methods.spans` whose two tokens write the same bytes, plus the
final EOS pair. At each, the teacher's and the student's logits are restricted to the shared vocabulary O
(:func:`methods.overlap.shared_vocabulary`: canonical bytes, specials by role, which includes the EOS pair that
KDFlow appends), renormalised over O, and compared by ``KL(softmax(z_t[O]/τ) ‖ softmax(z_s[O]/τ))``.
``norm = aligned`` (ours, §16.4) averages over the aligned positions; ``all_targets`` is KDFlow's Σ/N̄: the sum over
aligned positions divided by the student's answer tokens, so the term shrinks with the aligned share.
``L = (1 − r) · CE + r · KD``, r = ``kd_ratio``. Logged: ``aligned_share`` = aligned positions / student answer
tokens (KDFlow's ``align_ratio``).

Where this differs from KDFlow: KDFlow pairs tokens greedily by growing marker-stripped strings (§16.2), which
never re-synchronises after the first character the two tokenizers write differently (a newline ``Ċ`` vs
``<0x0A>``, any non-ASCII character between byte-level BPE and SentencePiece), and which ignores whitespace
(``Ġthe`` pairs with ``the``); here positions come from byte spans (exact bytes, whitespace included), and O from
canonical bytes instead of the Ġ→▁ string swap (§16.1), so ``Ċ`` and ``<0x0A>`` are one shared token.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods.alignment import gather_rows
from methods.base import MethodConfig
from methods.batch import DistillBatch, TeacherOutputs
from methods.divergences import forward_kl
from methods.overlap import shared_vocabulary
from methods.registry import METHODS
from methods.spans import ByteAlignedMethod, TokenizerPair

NORMS: tuple[str, ...] = ("aligned", "all_targets")


@dataclass(frozen=True)
class EtaKLConfig(MethodConfig):
    """eta-kl's hyper-parameters: KDFlow's defaults unless marked otherwise."""

    kd_ratio: float = 0.5  # r [code: distillation_args.py kd_ratio]
    temperature: float = 1.0  # τ [code: kd_temperature]
    norm: str = "aligned"  # [suite, spec §16.4]; "all_targets" = KDFlow's Σ / N̄ [code]

    def __post_init__(self) -> None:
        if not 0.0 <= self.kd_ratio <= 1.0:
            raise ValueError(f"kd_ratio must be in [0, 1], got {self.kd_ratio}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")


@METHODS.register("eta-kl")
class EtaKL(ByteAlignedMethod):
    """KL on the shared vocabulary at exactly aligned answer tokens (spec §16, §16.4)."""

    config_class = EtaKLConfig
    teacher_needs = "full_logits"
    config: EtaKLConfig

    def prepare_pair(self, pair: TokenizerPair) -> None:
        super().prepare_pair(pair)
        shared = shared_vocabulary(pair.student, pair.teacher, "canonical")
        self._shared = torch.tensor(shared.student, dtype=torch.long), torch.tensor(shared.teacher, dtype=torch.long)

    def loss(self, batch: DistillBatch, student_logits: Tensor, teacher: TeacherOutputs | None, ce: Tensor) -> dict[str, Tensor]:
        teacher_logits = self.teacher_logits(teacher)
        cfg = self.config
        alignment = self.pair.group(batch).exact_alignment()
        student_ids, teacher_ids = (ids.to(student_logits.device) for ids in self._shared)
        student_rows = gather_rows(student_logits, alignment.student_rows(batch.student))[..., student_ids]
        teacher_rows = alignment.teacher(teacher_logits)[..., teacher_ids]
        kd = forward_kl(teacher_rows, student_rows, alignment.mask, cfg.temperature)
        if cfg.norm == "all_targets":
            kd = kd * alignment.mask.sum() / batch.student.answer_token_mask().sum().clamp_min(1)
        return {
            "loss": (1 - cfg.kd_ratio) * ce + cfg.kd_ratio * kd,
            "ce": ce.detach(),
            "kd": kd.detach(),
            "aligned_share": alignment.coverage,
        }
