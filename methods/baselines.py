"""Baselines that share the harness: SFT, SeqKD and the same-tokenizer KL control (methods-spec §4)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from methods.base import Method, MethodConfig, TeacherRequest, param
from methods.batch import DistillBatch, TeacherOutputs, full_teacher_logits
from methods.divergences import forward_kl
from methods.registry import METHODS


@dataclass(frozen=True)
class NoConfig(MethodConfig):
    """A method without hyper-parameters of its own."""

@METHODS.register("sft")
class SFT(Method):
    """Student cross-entropy on the reference answers (MultiLevelOT Table 1 "SFT")."""

    config_class = NoConfig

    def loss(self, batch: DistillBatch, student_logits: Tensor, teacher: TeacherOutputs | None, ce: Tensor) -> dict[str, Tensor]:
        return {"loss": ce, "ce": ce.detach()}


@METHODS.register("seqkd", aliases=("raw-text",))
class SeqKD(SFT):
    """Student cross-entropy on the teacher's greedy answers, generated once and cached ("Raw Text" in ULD)."""

    def teacher_request(self) -> TeacherRequest:
        return TeacherRequest(needs="text")


@dataclass(frozen=True)
class KLConfig(MethodConfig):
    ce_weight: float = 0.5  # DSKD convention (1 − κ) with κ = 0.5
    kd_weight: float = 0.5  # κ
    temperature: float = param(1.0, "positive")


class SameTokenizerError(ValueError):
    """Token-level KL was asked for on a pair whose tokenizers differ."""

@METHODS.register("kl")
class TokenKL(Method):
    """Forward KL on answer tokens for pairs sharing one tokenizer: the control that cross-tokenizer losses approximate."""

    config_class = KLConfig
    same_tokenizer_only = True

    def teacher_request(self) -> TeacherRequest:
        return TeacherRequest(needs="full_logits")

    def loss(self, batch: DistillBatch, student_logits: Tensor, teacher: TeacherOutputs | None, ce: Tensor) -> dict[str, Tensor]:
        teacher_logits = full_teacher_logits(teacher, "kl")
        if batch.student.answer_ids.shape != batch.teacher.answer_ids.shape or not bool(
            (batch.student.answer_ids == batch.teacher.answer_ids).all()
        ):
            raise SameTokenizerError("kl needs identical student and teacher answer tokens; use a cross-tokenizer method")
        cfg: KLConfig = self.config  # type: ignore[assignment]
        student_rows = batch.student.gather_answer_rows(student_logits)
        kd = forward_kl(teacher_logits, student_rows, batch.student.answer_mask, cfg.temperature)
        return {"loss": cfg.ce_weight * ce + cfg.kd_weight * kd, "ce": ce.detach(), "kl": kd.detach()}
