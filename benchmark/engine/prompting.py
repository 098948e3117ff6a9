"""Render a task's prompt pieces for one model: plain few-shot text or the model's chat template.

Train and eval use the same rendering for a model (methods-spec §14.6), and the rendering is part of the cached
teacher outputs' key (:data:`PROMPT_VERSION` plus the style and shot count).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from tasks.base import Example, PromptItem, Task

PromptStyle = Literal["plain", "chat"]
PROMPT_STYLES: tuple[str, ...] = ("plain", "chat")
# Bump when the rendering below changes: it invalidates cached teacher outputs and finished cells.
PROMPT_VERSION = 1


@dataclass(frozen=True)
class PromptFormat:
    """How one model is prompted: style, number of shots, shot seed and the prompt token budget."""

    style: PromptStyle
    shots: int
    shot_seed: int = 0
    max_prompt_tokens: int = 768

    def __post_init__(self) -> None:
        if self.style not in PROMPT_STYLES:
            raise ValueError(f"prompt style {self.style!r} is not one of {', '.join(PROMPT_STYLES)}")
        if self.shots < 0:
            raise ValueError(f"shots must be >= 0, got {self.shots}")

    def key(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "version": PROMPT_VERSION}


@dataclass(frozen=True)
class RenderedPrompt:
    """The prompt text a model sees and the prefix its answer carries (" " after a plain "Answer:")."""

    text: str
    answer_prefix: str
    shots_used: int
    context_truncated: bool


def render(item: PromptItem, style: PromptStyle, tokenizer: Any) -> tuple[str, str]:
    """``(prompt text, answer prefix)`` for one prompt item."""
    if style == "plain":
        return item.prompt, " "
    messages: list[dict[str, str]] = []
    if item.system:
        messages.append({"role": "system", "content": item.system})
    for query, answer in item.shots:
        messages += [{"role": "user", "content": query}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": item.query})
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(f"prompt style 'chat' needs a tokenizer with a chat template; {type(tokenizer).__name__} has none")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text, ""


def build_prompt(task: Task, example: Example, shots: Sequence[Example], fmt: PromptFormat, tokenizer: Any) -> RenderedPrompt:
    """Render within ``fmt.max_prompt_tokens``: drop shots first, then cut the context's tail token-wise."""
    shots = list(shots)
    while True:
        text, prefix = render(task.prompt_item(example, shots), fmt.style, tokenizer)
        excess = _count_tokens(tokenizer, text) - fmt.max_prompt_tokens
        if excess <= 0:
            return RenderedPrompt(text, prefix, len(shots), context_truncated=False)
        if shots:
            shots.pop()
            continue
        return _truncate_context(task, example, fmt, tokenizer, excess)


def _truncate_context(task: Task, example: Example, fmt: PromptFormat, tokenizer: Any, excess: int) -> RenderedPrompt:
    context_ids = tokenizer(example.context, add_special_tokens=False)["input_ids"]
    keep = len(context_ids) - excess
    while keep > 0:
        shorter = task.with_context(example, tokenizer.decode(context_ids[:keep]))
        text, prefix = render(task.prompt_item(shorter, ()), fmt.style, tokenizer)
        over = _count_tokens(tokenizer, text) - fmt.max_prompt_tokens
        if over <= 0:
            return RenderedPrompt(text, prefix, 0, context_truncated=True)
        keep -= max(over, 1)
    raise ValueError(
        f"example {example.id!r} of task {task.name!r} does not fit max_prompt_tokens={fmt.max_prompt_tokens} "
        "even with an empty context; raise the budget"
    )


def _count_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=True)["input_ids"])
