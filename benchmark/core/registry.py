"""One small generic registry, used for methods, tasks and pairs.

Entries are registered by decorator (or directly) under a name and optional aliases. A target may also be
registered lazily as an ``"package.module:attribute"`` string; it is imported on first use, so listing names
never imports heavy code. A duplicate name is an error; an unknown name is an error that lists what exists and
suggests the closest match. A registry built with ``name_attribute`` writes the registered name onto each
registered target under that attribute, so a method's or task's name is written once, in its decorator.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")


class RegistryError(ValueError):
    """A registration conflict or a lookup of a name that is not registered."""


@dataclass
class _Entry(Generic[T]):
    name: str
    target: T | str
    description: str
    aliases: tuple[str, ...]


class Registry(Generic[T]):
    """Maps names (and aliases) to registered objects of one kind, e.g. ``Registry("method")``."""

    def __init__(self, kind: str, name_attribute: str | None = None) -> None:
        self.kind = kind
        self.name_attribute = name_attribute
        self._entries: dict[str, _Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, target: T | str, *, aliases: Iterable[str] = (), description: str = "") -> None:
        """Register ``target`` (an object, or a lazy ``"module:attr"`` string) under ``name`` and ``aliases``."""
        aliases = tuple(aliases)
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise RegistryError(f"{self.kind} name {key!r} is already registered")
        if not description and not isinstance(target, str):
            description = _first_doc_line(target)
        self._entries[name] = _Entry(name, target, description, aliases)
        for alias in aliases:
            self._aliases[alias] = name
        if self.name_attribute and not isinstance(target, str):
            setattr(target, self.name_attribute, name)

    def register(self, name: str, *, aliases: Iterable[str] = (), description: str = "") -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorate(target: T) -> T:
            self.add(name, target, aliases=aliases, description=description)
            return target

        return decorate

    def canonical(self, name: str) -> str:
        """The registered name behind ``name`` (itself or an alias); unknown names raise :class:`RegistryError`."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        known = sorted(self._entries)
        close = difflib.get_close_matches(name, [*known, *self._aliases], n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RegistryError(f"unknown {self.kind} {name!r}; registered: {', '.join(known) or '(none)'}{hint}")

    def get(self, name: str) -> T:
        entry = self._entries[self.canonical(name)]
        if isinstance(entry.target, str):
            module_name, _, attribute = entry.target.partition(":")
            entry.target = getattr(importlib.import_module(module_name), attribute)
            if self.name_attribute:
                setattr(entry.target, self.name_attribute, entry.name)
            if not entry.description:
                entry.description = _first_doc_line(entry.target)
        return entry.target  # type: ignore[return-value]

    def description(self, name: str) -> str:
        entry = self._entries[self.canonical(name)]
        return entry.description

    def names(self) -> list[str]:
        return list(self._entries)

    def resolve(self, requested: Iterable[str]) -> list[str]:
        """Expand ``all`` and aliases into canonical names, keeping order and dropping repeats."""
        out: list[str] = []
        for name in requested:
            for canonical in self.names() if name == "all" else [self.canonical(name)]:
                if canonical not in out:
                    out.append(canonical)
        return out

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __len__(self) -> int:
        return len(self._entries)


def _first_doc_line(target: object) -> str:
    doc = getattr(target, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
