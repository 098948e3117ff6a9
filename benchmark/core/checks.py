"""Declared constraints on dataclass fields, shared by the settings tree and the method configs.

A field declares its constraint in its metadata: ``check`` (a name of :data:`CHECKS`), optionally ``maximum``, or
``choices`` (the accepted values); a ``Literal`` annotation declares choices too. :func:`validate` checks every
field of a dataclass instance and raises :class:`ConfigError` for the first that breaks its declaration.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Literal, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """A setting with a value it does not accept: names the setting (``section.field``), the value and what would be
    accepted. Front ends re-word the setting as their flag."""

    def __init__(self, path: str, value: Any, accepted: str) -> None:
        super().__init__(f"{path}={value!r}: expected {accepted}")
        self.path, self.value, self.accepted = path, value, accepted


# Constraints a field can declare in its metadata (``check``): a predicate and what it accepts, in words. Every
# checked number must also be finite, and an integer at most ``maximum`` (default :data:`INT_MAX`).
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "positive": (lambda v: v > 0, "> 0"),
    "non_negative": (lambda v: v >= 0, ">= 0"),
    "fraction": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "unit": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "probability": (lambda v: 0 < v <= 1, "in (0, 1]"),
}
INT_MAX = 2**31 - 1  # integer settings reach tokenizers and torch as C ints


def checked(default: Any, check: str | None = None, *, maximum: float | None = None,
            choices: tuple[Any, ...] | None = None, **metadata: Any) -> Any:
    """A dataclass field with its constraint declared beside its default (``metadata`` adds other keys)."""
    if check is not None:
        if check not in CHECKS:
            raise ValueError(f"unknown check {check!r}; expected one of {', '.join(CHECKS)}")
        metadata["check"] = check
    if maximum is not None:
        metadata["maximum"] = maximum
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return dataclasses.field(default=default, metadata=metadata)


def validate(instance: Any, prefix: str = "") -> None:
    """Raise :class:`ConfigError` (path ``prefix + field``) for the first field of ``instance`` that breaks its
    declared constraint; a list or tuple field's constraint applies to each element."""
    declared_choices = literal_choices(type(instance))
    for item in dataclasses.fields(instance):
        value, path = getattr(instance, item.name), prefix + item.name
        options = item.metadata.get("choices", declared_choices.get(item.name))
        if options is not None and value not in options:
            raise ConfigError(path, value, f"one of {', '.join(map(str, options))}")
        if "check" not in item.metadata:
            continue
        for element in value if isinstance(value, (list, tuple)) else [value]:
            accepted = accepted_words(item, element)
            if accepted is not None:
                raise ConfigError(path, element, accepted)


def accepted_words(item: dataclasses.Field, value: Any) -> str | None:
    """None when ``value`` meets the field's ``check`` (None always does), else what the field accepts, in words."""
    if value is None:
        return None
    predicate, words = CHECKS[item.metadata["check"]]
    is_int = isinstance(value, int) and not isinstance(value, bool)
    maximum = item.metadata.get("maximum", INT_MAX if is_int else None)
    accepted = f"{'an integer' if is_int else 'a finite number'} {words}" + (
        f" and <= {maximum}" if maximum is not None else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return accepted
    return None if predicate(value) and (maximum is None or value <= maximum) else accepted


@functools.cache
def literal_choices(cls: type) -> dict[str, tuple[Any, ...]]:
    """The accepted values of each ``Literal``-annotated field of ``cls`` (none where an annotation cannot be
    resolved, e.g. a third-party config's name imported for type checking only)."""
    try:
        hints = get_type_hints(cls)
    except (NameError, TypeError):
        return {}
    return {name: get_args(hint) for name, hint in hints.items() if get_origin(hint) is Literal}
