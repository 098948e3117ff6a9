"""The method contract: a method is a frozen config dataclass plus a loss over tensors.

A method declares what it needs from the teacher (``teacher_needs``, and for the top-k cache ``topk_needed``,
``teacher_temperatures``, ``teacher_token_logprobs`` and ``teacher_subsets``) so the harness can serve it from the
teacher-output cache or run the teacher live, and whether it trains on its own samples (``on_policy_fraction``). It
never loads models, reads data or writes results; optional tokenizer-dependent state (e.g. MinED's vocabulary map)
is set up in :meth:`Method.prepare` from the :class:`~methods.resources.PairResources` the harness hands over
(which caches derived data per pair).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal, Mapping

from torch import Tensor

from methods.batch import DistillBatch, TeacherOutputs
from methods.model_parts import ModelWeights, OwnModules
from methods.resources import PairResources

TeacherNeeds = Literal["none", "text", "topk_logits", "full_logits", "hidden_states"]
TEACHER_NEEDS: tuple[str, ...] = ("none", "text", "topk_logits", "full_logits", "hidden_states")


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How the harness samples the student's own answers for an on-policy method (TRL's GKD/GOLD defaults)."""

    temperature: float = 0.9  # [code: GOLDConfig temperature]
    top_p: float = 0.95  # [code]
    top_k: int = 0  # [code] 0: no top-k filter
    max_new_tokens: int = 128  # [code: max_completion_length]; the harness stops at data.max_answer_tokens too

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"sampling temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: off), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base of every method config: frozen, and built from a mapping that must not hold unknown keys."""

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None = None) -> "MethodConfig":
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown config key(s) {', '.join(map(repr, unknown))} for {cls.__name__}; "
                f"accepted: {', '.join(sorted(known)) or '(none)'}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Method:
    """Base class of a distillation method. Subclasses set the class attributes and implement :meth:`loss`."""

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    teacher_needs: ClassVar[TeacherNeeds] = "none"
    # The teacher top-k a top-k method reads; the harness checks it against the cache's k.
    topk_needed: ClassVar[int] = 0
    # Temperatures tau at which the method reads teacher top-k log-probabilities normalised over the full vocabulary
    # (TeacherOutputs.topk): a top-k cache must hold logsumexp(z / tau) for each. Methods whose config changes
    # any of these class attributes set them per instance in ``__init__``.
    teacher_temperatures: ClassVar[tuple[float, ...]] = ()
    # What a top-k cache must store besides the top-k for the method to train from it exactly: the logit of the
    # teacher's own answer token at every row (TeacherOutputs.token_logprobs), and the log-mass of named teacher
    # vocabulary subsets (TeacherOutputs.subset_log_mass; the names of methods.vocab_subsets.TEACHER_SUBSETS).
    teacher_token_logprobs: ClassVar[bool] = False
    teacher_subsets: ClassVar[tuple[str, ...]] = ()
    # Share of micro-batches trained on the student's own samples, scored by the live teacher (TRL's ``lmbda``);
    # the harness samples them (benchmark.engine.on_policy) as ``sampling`` says. 0: the dataset's answers only.
    on_policy_fraction: ClassVar[float] = 0.0
    sampling: ClassVar[Sampling] = Sampling()
    # True when the method is only defined for pairs that share one tokenizer (e.g. token-level KL).
    same_tokenizer_only: ClassVar[bool] = False
    # True when the loss reads the student's last hidden state at its answer rows (``batch.student.hidden``).
    student_hidden_states: ClassVar[bool] = False

    def __init__(self, config: MethodConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{type(self).__name__} expects a {self.config_class.__name__}, got {type(self.config).__name__}")

    def prepare(self, resources: PairResources) -> None:
        """Set up tokenizer-dependent state before training (default: nothing)."""

    def build_modules(self, student: ModelWeights, teacher: ModelWeights | None) -> OwnModules | None:
        """The trainable modules this method owns (projectors), built after :meth:`prepare` from both models'
        weights (``teacher`` is None without a live teacher); the harness trains them with the student. Default:
        none."""
        return None

    def loss(
        self,
        batch: DistillBatch,
        student_logits: Tensor,
        teacher: TeacherOutputs | None,
        ce: Tensor,
    ) -> dict[str, Tensor]:
        """Named loss terms for one micro-batch.

        ``student_logits`` ``[B, R, V_s]`` holds the student's logits at the rows that predict answer tokens
        (the harness skips the output head elsewhere); read it through ``batch.student.gather_answer_rows`` or
        ``batch.student.answer_rows``, which index into it. ``ce`` is the student's cross-entropy on the answer
        tokens (already computed by the harness). The returned mapping must hold ``"loss"`` (the
        scalar to back-propagate); every other entry is logged as its own term (detach what is only logged).
        """
        raise NotImplementedError
