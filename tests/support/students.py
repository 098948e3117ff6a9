"""A tiny random student whose greedy answers depend on the prompt (shared by the evaluation tests)."""
from __future__ import annotations

from typing import Any

import torch

from benchmark.models.loading import build_tiny


def varied_tiny_student(family: str = "gpt2", seed: int = 2) -> tuple[Any, Any]:
    """A tiny random Llama on the real ``family`` tokenizer, ``(model, tokenizer)``.

    With the default init (std 0.02) greedy decoding repeats the prompt's last token whatever the prompt, so any
    two ways of decoding would agree; weight matrices redrawn (embeddings at std 0.02, the others at std 0.2) make
    every prompt continue differently.
    """
    model, tokenizer = build_tiny(family, seed=seed)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if weight.dim() >= 2:
                std = 0.02 if "embed" in name else 0.2
                weight.copy_(torch.randn(weight.shape, generator=generator) * std)
    return model, tokenizer
