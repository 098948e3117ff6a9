"""What a method that owns parameters (projectors, a query projector) is handed and hands back.

The harness reads both models' input embeddings and output heads into :class:`ModelWeights` (the live parameters,
so a method sees the student's head as it trains; methods read them detached) and passes them to
``Method.build_modules``; a method that owns trainable modules returns them as :class:`OwnModules`, which the harness
optimises with the student (a second AdamW parameter group at their own learning rate), saves in checkpoints and
counts in run.json.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ModelWeights:
    """One model's input embedding and output head weights, ``[V, d]`` each (tied models: the same tensor)."""

    embeddings: Tensor
    head: Tensor

    @property
    def hidden_size(self) -> int:
        return self.head.size(1)


@dataclass(frozen=True)
class OwnModules:
    """Trainable modules a method owns, trained at ``learning_rate``."""

    module: torch.nn.Module
    learning_rate: float
