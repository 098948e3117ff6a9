"""ULD — Universal Logit Distillation (Boizard et al., arXiv 2402.12030; spec §2).

Per aligned token pair, the L1 distance between the two probability vectors each sorted descending (the smaller
vocabulary zero-padded), i.e. the 1-D Wasserstein-1 distance between the two multisets of probability values
(MultiLevelOT §1.1.1). ``L = ce_weight * CE + weight * mean_b mean_rows ULD``.

Top-k form (spec §14.2). Instead of sorting both full vocabularies, each side keeps its ``k`` largest
probabilities (``torch.topk``; the teacher's come from :meth:`TeacherOutputs.topk`, cached or live) plus one tail
bin holding the rest of its mass. With ``t_(i)``, ``s_(i)`` the sorted values and ``T_t``, ``T_s`` the tails::

    full   = sum_{i<=k} |t_(i) - s_(i)| + sum_{i>k} |t_(i) - s_(i)|
    top-k  = sum_{i<=k} |t_(i) - s_(i)| + |T_t - T_s|,     T = sum_{i>k} p_(i)

so by the triangle inequality the top-k value is an exact lower bound of the full-sort ULD, and equal to it when
all differences ``t_(i) - s_(i)`` beyond rank k share one sign: in particular when either side's top-k holds all of
its mass (its tail is 0, e.g. ``k >= its vocabulary``) or one side's sorted tail dominates the other's rank by
rank. Without the tail bin the value is a looser lower bound (the tail mass is simply dropped).
``perf/losses.py`` measures the gap at published shapes.

Deviations from the code (llm-recipes ``distillation_model.py``), all documented in the config:
* top-k + tail bin instead of a full sort (above);
* alignment may be ``offsets`` instead of the published ``positional``;
* ``temperature != 1`` is applied within the truncated support (:func:`methods.ot.temper`) on both sides, because
  a top-k cache has no full-vocabulary normaliser at other temperatures (the published value is 1, where it is
  exact);
* a sample without any aligned pair is left out of the batch mean (the code would produce NaN).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from methods.alignment import ALIGNMENT_MODES, align, gather_rows, sample_mean
from methods.base import Method, MethodConfig
from methods.batch import DistillBatch, TeacherOutputs
from methods.ot import append_tail, pad_last, rank_l1, temper, topk_logprobs
from methods.registry import METHODS


@dataclass(frozen=True)
class ULDConfig(MethodConfig):
    """ULD hyper-parameters; defaults are the published ones unless marked otherwise."""

    k: int = 100  # kept probabilities per row [suite, spec §14.2: the default teacher-cache k]; the code sorts all
    tail_bin: bool = True  # keep the mass beyond the top-k as one bin [suite]; makes the value a tight lower bound
    temperature: float = 1.0  # student and teacher temperature [code: 1/1]
    weight: float = 1.5  # lambda, the code's distil_factor [code, README]
    ce_weight: float = 1.0  # [code]
    alignment: str = "positional"  # [code] row j <-> row j; "offsets" pairs identical character spans [suite]

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.alignment not in ALIGNMENT_MODES:
            raise ValueError(f"alignment must be one of {ALIGNMENT_MODES}, got {self.alignment!r}")


@METHODS.register("uld")
class ULD(Method):
    """Universal Logit Distillation: L1 between sorted (top-k + tail) probability vectors (spec §2)."""

    config_class = ULDConfig
    teacher_needs = "topk_logits"
    topk_needed = ULDConfig.k
    config: ULDConfig

    def __init__(self, config: ULDConfig | None = None) -> None:
        super().__init__(config)
        # The cache must hold this instance's k, which the config may change from the class default.
        self.topk_needed = self.config.k  # type: ignore[misc]

    def loss(
        self, batch: DistillBatch, student_logits: Tensor, teacher: TeacherOutputs | None, ce: Tensor
    ) -> dict[str, Tensor]:
        assert teacher is not None, "uld needs teacher outputs (teacher_needs='topk_logits')"
        cfg = self.config
        alignment = align(batch, cfg.alignment)
        teacher_logprobs, _, _ = teacher.topk(cfg.k)
        teacher_probs = alignment.teacher(teacher_logprobs.exp())
        # One gather of only the paired student rows, then top-k on them.
        student_rows = gather_rows(student_logits, alignment.student_rows(batch.student))
        student_probs = topk_logprobs(student_rows, cfg.k)[0].exp()
        distance = rank_l1(*self._support(teacher_probs, student_probs))
        uld = sample_mean(distance, alignment.mask)
        return {
            "loss": cfg.ce_weight * ce + cfg.weight * uld,
            "ce": ce.detach(),
            "uld": uld.detach(),
            "coverage": alignment.coverage,
        }

    def _support(self, teacher: Tensor, student: Tensor) -> tuple[Tensor, Tensor]:
        """Both sides on one support: zero-padded to the same k, then tail bin and temperature."""
        size = max(teacher.size(-1), student.size(-1))
        sides = [pad_last(teacher, size), pad_last(student, size)]
        if self.config.tail_bin:
            sides = [append_tail(side) for side in sides]
        teacher, student = (temper(side, self.config.temperature) for side in sides)
        return teacher, student
