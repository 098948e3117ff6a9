"""The method contract: a method is a frozen config dataclass plus a loss over tensors.

A method declares what it needs from the teacher as one value derived from its config (:meth:`Method.teacher_request`,
a :class:`TeacherRequest`), so the harness can serve it from the teacher-output cache or run the teacher live, and
whether it trains on its own samples. It never loads models, reads data or writes results; optional
tokenizer-dependent state (e.g. MinED's vocabulary map) is set up in :meth:`Method.prepare` from the
:class:`~methods.resources.PairResources` the harness hands over (which caches derived data per pair).

A config field declares its constraint beside its default (:func:`param`, the checks of
:mod:`benchmark.core.checks` that the settings tree uses too); checks across fields are code in ``__post_init__``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal, Mapping

from torch import Tensor

from benchmark.core.checks import checked, validate
from methods.batch import DistillBatch, TeacherOutputs
from methods.model_parts import ModelWeights, OwnModules
from methods.resources import PairResources

TeacherNeeds = Literal["none", "text", "topk_logits", "full_logits", "hidden_states"]


def param(default: Any, check: str | None = None, *, choices: tuple[Any, ...] | None = None) -> Any:
    """A method config field with its constraint (a name of ``benchmark.core.checks.CHECKS``) or its accepted
    values declared beside its default."""
    return checked(default, check, choices=choices)


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How the harness samples the student's own answers for an on-policy method (TRL's GKD/GOLD defaults)."""

    temperature: float = param(0.9, "positive")  # [code: GOLDConfig temperature]
    top_p: float = param(0.95, "probability")  # [code]
    top_k: int = param(0, "non_negative")  # [code] 0: no top-k filter
    max_new_tokens: int = param(128, "positive")  # [code: max_completion_length]; the harness stops at
    #                                               data.max_answer_tokens too

    def __post_init__(self) -> None:
        validate(self, "sampling.")


@dataclasses.dataclass(frozen=True)
class TeacherRequest:
    """What a method reads from the teacher, derived from its config; the harness serves it from the teacher-output
    cache (``topk_logits``) or a live teacher. A new kind of teacher signal is one field here."""

    needs: TeacherNeeds = "none"
    # The teacher top-k a top-k method reads; the harness checks it against the cache's k.
    topk: int = param(0, "non_negative")
    # Temperatures tau at which the method reads teacher top-k log-probabilities normalised over the full vocabulary
    # (TeacherOutputs.topk): a top-k cache must hold logsumexp(z / tau) for each.
    temperatures: tuple[float, ...] = param((), "positive")
    # What a top-k cache must store besides the top-k for the method to train from it exactly: the logit of the
    # teacher's own answer token at every row (TeacherOutputs.token_logprobs), and the log-mass of named teacher
    # vocabulary subsets (TeacherOutputs.subset_log_mass; the names of methods.vocab_subsets.TEACHER_SUBSETS).
    token_logprobs: bool = False
    subsets: tuple[str, ...] = ()
    # Share of micro-batches trained on the student's own samples, scored by the live teacher (TRL's ``lmbda``);
    # the harness samples them (benchmark.engine.on_policy) as ``sampling`` says. 0: the dataset's answers only.
    on_policy_fraction: float = param(0.0, "unit")
    sampling: Sampling = Sampling()

    def __post_init__(self) -> None:
        validate(self, "teacher_request.")


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base of every method config: frozen, built from a mapping that must not hold unknown keys, each field checked
    against its declaration (:func:`param`) on construction; a subclass with checks across fields extends
    ``__post_init__``."""

    def __post_init__(self) -> None:
        validate(self)

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
    """Base class of a distillation method. Subclasses set ``name`` (by registering), ``config_class``, override
    :meth:`teacher_request` when they read a teacher, and implement :meth:`loss`."""

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    # True when the method is only defined for pairs that share one tokenizer (e.g. token-level KL).
    same_tokenizer_only: ClassVar[bool] = False
    # True when the loss reads the student's last hidden state at its answer rows (``batch.student.hidden``).
    student_hidden_states: ClassVar[bool] = False

    def __init__(self, config: MethodConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{type(self).__name__} expects a {self.config_class.__name__}, got {type(self.config).__name__}")

    def teacher_request(self) -> TeacherRequest:
        """What this method reads from the teacher, derived from its config (default: nothing)."""
        return TeacherRequest()

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
