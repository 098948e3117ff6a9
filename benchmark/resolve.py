"""From what a user typed to a validated :class:`RunConfig`: names resolved against the registries, the budget
preset applied, flags and ``--set`` overrides parsed to their fields' types, paths defaulted.

Precedence: a field's default (the published set-up) < the budget preset < its flag < ``--set``. Every failure is
a :class:`~benchmark.cli.UsageError` naming the flag or override and what is accepted.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from benchmark.cli import Parser, UsageError, split_names
from benchmark.config import (
    SECTION_TYPES, ConfigError, RunOptions, Settings, budget_settings, default_budget_name, section_type,
)
from benchmark.paths import default_cache_dir, resolve_data_dir
from benchmark.registry import Registry, RegistryError
from methods.base import MethodConfig


@dataclass(frozen=True)
class RunConfig:
    """A run, resolved: canonical names, the settings tree, each method's config, absolute choices of paths."""

    options: RunOptions  # as given (flags that only steer the run: force, executor, ...)
    tasks: list[str]
    pairs: list[str]
    methods: list[str]
    seeds: list[int]
    budget: str
    settings: Settings
    method_configs: dict[str, MethodConfig]
    data_dir: Path
    cache_dir: Path


def resolve_run(options: RunOptions, flag_settings: Mapping[str, Any]) -> RunConfig:
    """``flag_settings``: ``{"section.field": value}`` for the setting flags given on the command line."""
    from benchmark.pairs import PAIRS
    from tasks.registry import load_tasks

    methods_registry = load_methods_or_fail(options.include)
    requested = split_names(options.methods)
    methods = [] if requested == ["none"] else resolve_names(methods_registry, requested, "--methods")
    budget = options.budget or default_budget_name()
    try:
        settings = budget_settings(budget)
    except ConfigError as error:
        raise UsageError(f"--budget {budget!r}: accepted: {error.accepted.removeprefix('one of ')}") from None
    setting_overrides, method_overrides = parse_overrides(_flatten(options.overrides), methods_registry)
    settings = apply_settings(settings, flag_settings, source="flag")
    settings = apply_settings(settings, setting_overrides, source="--set")
    data_dir = resolve_data_dir(options.data_dir)  # the per-user folder may not exist yet: fetching creates it
    if options.data_dir and not data_dir.is_dir():
        raise UsageError(f"--data-dir {str(data_dir)!r} is not a directory; pass an existing folder, or leave it out "
                         "to use $CTKD_DATA_DIR, ../shared/data or the per-user data folder")
    return RunConfig(
        options=options,
        tasks=resolve_names(load_tasks(), options.tasks, "--tasks"),
        pairs=resolve_names(PAIRS, options.pairs, "--pairs"),
        methods=methods,
        seeds=list(dict.fromkeys(options.seeds)),
        budget=budget,
        settings=settings,
        method_configs={name: _method_config(methods_registry, name, method_overrides.get(name, {}))
                        for name in methods},
        data_dir=data_dir,
        cache_dir=Path(options.cache_dir) if options.cache_dir else default_cache_dir(),
    )


def resolve_names(registry: Registry[Any], values: Sequence[str], flag: str) -> list[str]:
    try:
        return registry.resolve(split_names(values))
    except RegistryError as error:
        raise UsageError(f"{flag}: {error}") from None


def load_methods_or_fail(include: Sequence[str | Sequence[str]]) -> Registry[Any]:
    from methods.registry import load_methods

    try:
        return load_methods(_flatten(include))
    except (ValueError, RegistryError) as error:
        raise UsageError(str(error)) from None


def _flatten(values: Sequence[str | Sequence[str]]) -> list[str]:
    """``action="append"`` with ``nargs="+"`` gives a list per occurrence; flags may also be plain lists."""
    return [item for value in values for item in ([value] if isinstance(value, str) else value)]


def flag_error(error: ConfigError) -> UsageError:
    """A bad setting, worded as its flag: ``--limit-eval 0: expected a number > 0``."""
    flag = "--" + error.path.split(".", 1)[-1].replace("_", "-")
    return UsageError(f"{flag} {error.value!r}: expected {error.accepted}")


def apply_settings(settings: Settings, values: Mapping[str, Any], source: str) -> Settings:
    try:
        return settings.override(values)
    except ConfigError as error:
        raise (flag_error(error) if source == "flag" else UsageError(f"--set {error}")) from None


def parse_overrides(items: Sequence[str], methods: Registry[Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``["train.lr=3e-4", "mlot.alpha=1.5"]`` -> settings ``{"train.learning_rate": 0.0003}`` and method fields
    ``{"mlot": {"alpha": 1.5}}``, each value parsed to its field's type."""
    settings: dict[str, Any] = {}
    method_fields: dict[str, dict[str, Any]] = {}
    section_names = {section.name for section in SECTION_TYPES}
    for item in items:
        target, sep, raw = item.partition("=")
        owner, dot, name = target.partition(".")
        if not sep or not dot or not owner or not name:
            raise UsageError(f"--set {item!r}: expected PATH=VALUE, e.g. train.learning_rate=3e-4 or mlot.alpha=1.5")
        if owner in section_names:
            field_name, value = parse_field(section_type(owner), name, raw, f"--set {item}", f"section {owner}")
            settings[f"{owner}.{field_name}"] = value
            continue
        if owner not in methods:
            raise UsageError(f"--set {item!r}: {owner!r} is neither a section ({', '.join(sorted(section_names))}) "
                             f"nor a registered method ({', '.join(methods.names())})")
        config_class = methods.get(owner).config_class
        field_name, value = parse_field(config_class, name, raw, f"--set {item}", f"method {owner}")
        method_fields.setdefault(methods.canonical(owner), {})[field_name] = value
    return settings, method_fields


def parse_field(config_class: type, name: str, raw: str, where: str, owner: str) -> tuple[str, Any]:
    """``raw`` parsed to the type of ``config_class``'s field ``name`` (or a flag alias of it) by the same parser
    that builds the command line; returns the field's name and the value."""
    fields = dataclasses.fields(config_class)
    known = {f.name for f in fields} | {alias.lstrip("-") for f in fields for alias in f.metadata.get("aliases", ())}
    if name not in known:
        accepted = ", ".join(f.name for f in fields) or "(none)"
        raise UsageError(f"{where}: unknown field {name!r} of {owner}; accepted: {accepted}")
    parser = Parser([config_class], prog=where, add_help=False)
    option = "--" + name
    try:
        parsed = parser.parse_args([option, raw])
    except UsageError as error:
        raise UsageError(f"{where}: {error}") from None
    field_name = next(action.dest for action in parser._actions if option in action.option_strings)
    return field_name, getattr(parsed, field_name)


def _method_config(methods: Registry[Any], name: str, fields: dict[str, Any]) -> MethodConfig:
    try:
        return methods.get(name).config_class.from_dict(fields)
    except (TypeError, ValueError) as error:
        raise UsageError(f"--set {name}: {error}") from None
