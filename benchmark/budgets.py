"""Named budgets: every value a run uses that is not a choice of task, pair, method or seed.

``smoke`` fits a 2-core CPU; ``small`` is a short GPU run; ``paper`` follows the published set-up
(methods-spec §1.2.8, §2, §9, §10: full training sets, 5 epochs, lr 1e-6, batch 2, max length 1024,
150 new tokens). Every field can be overridden from the command line and is recorded in each cell's config.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Budget:
    limit_train: int | None  # training examples per task (None = the whole train split)
    limit_eval: int | None  # evaluation examples per task (None = the whole test split)
    epochs: float
    learning_rate: float
    batch_size: int
    grad_accum: int
    eval_batch_size: int
    max_new_tokens: int | None  # None = each task's own generation length
    max_prompt_tokens: int
    max_answer_tokens: int
    student_shots: int  # shots in the student's prompt (train and eval alike)
    teacher_shots: int | None  # None = the task's default number of shots
    teacher_prep: str  # "as-is" (zero-shot), "few-shot", or "sft" (teacher fine-tuned on the task first)
    topk: int  # teacher top-k kept in the cache
    checkpoint_every: int
    schedule: str = "onecycle"

    def replace(self, **overrides: Any) -> "Budget":
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


BUDGETS: dict[str, Budget] = {
    # Sized so the no-argument default (3 tasks x 7 rows) finishes within 45 minutes from a cold cache on a 2-core
    # CPU without AVX-512, where every cost is proportional to prompt tokens: 256-token prompts (so the teacher is
    # zero-shot: no shot fits), 4 optimizer steps per method, 16 evaluation examples.
    "smoke": Budget(
        limit_train=16, limit_eval=16, epochs=1, learning_rate=1e-4, batch_size=4, grad_accum=1, eval_batch_size=8,
        max_new_tokens=None, max_prompt_tokens=256, max_answer_tokens=64, student_shots=0, teacher_shots=None,
        teacher_prep="as-is", topk=100, checkpoint_every=4,
    ),
    "small": Budget(
        limit_train=1000, limit_eval=200, epochs=1, learning_rate=2e-5, batch_size=8, grad_accum=1, eval_batch_size=32,
        max_new_tokens=None, max_prompt_tokens=768, max_answer_tokens=96, student_shots=0, teacher_shots=None,
        teacher_prep="few-shot", topk=100, checkpoint_every=50,
    ),
    "paper": Budget(
        limit_train=None, limit_eval=None, epochs=5, learning_rate=1e-6, batch_size=2, grad_accum=1, eval_batch_size=16,
        max_new_tokens=150, max_prompt_tokens=1024, max_answer_tokens=150, student_shots=0, teacher_shots=None,
        teacher_prep="few-shot", topk=100, checkpoint_every=500,
    ),
}
TEACHER_PREPS: tuple[str, ...] = ("as-is", "few-shot", "sft")


def default_budget_name() -> str:
    """``paper`` when a CUDA GPU is present, else ``smoke``."""
    return "paper" if torch.cuda.is_available() else "smoke"
