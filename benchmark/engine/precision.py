"""The one decision of how a cell's numbers are computed on this machine: the device, and fp32 or bf16.

The cell hash records :attr:`Precision.name`, the harness trains with :attr:`Precision.mixed_precision` and the teacher
loads in :attr:`Precision.teacher_dtype`; all three read :func:`precision`, so the hash cannot disagree with what ran.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True)
class Precision:
    """fp32 on a CPU; on a CUDA GPU, bf16 autocast for the student and a bf16 frozen teacher."""

    name: Literal["fp32", "bf16"]
    device: Literal["cpu", "cuda"]

    @property
    def on_gpu(self) -> bool:
        return self.device == "cuda"

    @property
    def mixed_precision(self) -> str:
        """accelerate's ``mixed_precision`` for training the student."""
        return "bf16" if self.name == "bf16" else "no"

    @property
    def teacher_dtype(self) -> torch.dtype:
        """The dtype the frozen teacher is loaded in."""
        return torch.bfloat16 if self.name == "bf16" else torch.float32

    @property
    def teacher_autocast(self) -> bool:
        """Whether the live teacher's forward runs under bf16 autocast."""
        return self.name == "bf16"


def precision() -> Precision:
    """This machine's precision: bf16 on a CUDA GPU, else fp32."""
    return Precision("bf16", "cuda") if torch.cuda.is_available() else Precision("fp32", "cpu")
