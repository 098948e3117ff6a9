"""From what a user typed to a validated :class:`RunConfig`: names resolved against the registries, the budget
preset applied, flags and ``--set`` overrides parsed to their fields' types, paths defaulted.

Precedence: a field's default (the published set-up) < the budget preset < its flag < ``--set``. Every failure is
a :class:`~benchmark.config.UsageError` naming the flag or override and what is accepted.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from benchmark.cli.main import Parser, split_names
from benchmark.cli.preflight import (
    check_methods,
    check_store_format,
    directory,
    methods_with_includes,
)
from benchmark.config import (
    INT_MAX,
    SECTION_TYPES,
    ConfigError,
    RunConfig,
    RunOptions,
    Settings,
    UsageError,
    budget_settings,
    default_budget_name,
    section_type,
)
from benchmark.core.paths import default_cache_dir, resolve_data_dir
from benchmark.core.registry import Registry, RegistryError
from methods.base import MethodConfig
from tasks.base import Task


def resolve_run(options: RunOptions, flag_settings: Mapping[str, Any]) -> RunConfig:
    """``flag_settings``: ``{"section.field": value}`` for the setting flags given on the command line. Checks
    everything the run will read or write (:mod:`benchmark.cli.preflight`) and writes nothing."""
    from benchmark.models.pairs import PAIRS
    from tasks.registry import load_tasks

    output = directory(options.output, "--output", writable=True)
    cache_dir = directory(options.cache_dir if options.cache_dir is not None else str(default_cache_dir()),
                          "--cache-dir", writable=True)
    data_dir = _data_dir(options.data_dir)
    methods_registry = methods_with_includes(_flatten(options.include))
    budget = options.budget if options.budget is not None else default_budget_name()
    try:
        settings = budget_settings(budget)
    except ConfigError as error:
        raise UsageError(f"--budget {budget!r}: accepted: {error.accepted.removeprefix('one of ')}") from None
    setting_overrides, method_overrides = parse_overrides(_flatten(options.overrides), methods_registry)
    settings = apply_settings(settings, flag_settings, source="flag")
    settings = apply_settings(settings, setting_overrides, source="--set")
    methods, method_configs, named = _resolve_methods(options.methods, methods_registry, method_overrides)
    define_user_pairs(_flatten(options.pair), options.pairs_file)
    pairs = resolve_names(PAIRS, names(options.pairs, "--pairs", "pair names or 'all'"), "--pairs")
    tasks = resolve_names(load_tasks(), names(options.tasks, "--tasks", "task names or 'all'"), "--tasks")
    check_methods(methods_registry, method_configs, settings, [PAIRS.get(pair) for pair in pairs], named)
    check_store_format(output, "--output")
    return RunConfig(options=options, tasks=tasks, pairs=pairs, methods=methods,
                     seeds=list(dict.fromkeys(options.seeds)), budget=budget, settings=settings,
                     method_configs=method_configs, data_dir=data_dir, cache_dir=cache_dir)


def define_user_pairs(flags: Sequence[str], pairs_file: str | None) -> None:
    """Register the pairs of ``--pair`` and ``--pairs-file`` (checked here, before any model loads)."""
    from benchmark.models.user_pairs import PairDefinitionError, define_pairs

    try:
        define_pairs(flags, pairs_file)
    except PairDefinitionError as error:
        raise UsageError(str(error)) from None


def _resolve_methods(values: Sequence[str], registry: Registry[Any], overrides: Mapping[str, dict[str, Any]],
                     ) -> tuple[list[str], dict[str, MethodConfig], list[str]]:
    """The methods to train, each one's config, and those named explicitly (not through ``all``)."""
    requested = names(values, "--methods", "method names, 'all', or 'none'")
    if "none" in requested and requested != ["none"]:
        raise UsageError(f"--methods {' '.join(values)!r}: 'none' (the reference rows only) cannot be combined with "
                         "method names")
    methods = [] if requested == ["none"] else resolve_names(registry, requested, "--methods")
    for name, fields in overrides.items():  # an override of a method the run does not train is checked too
        _method_config(registry, name, fields)
    configs = {name: _method_config(registry, name, overrides.get(name, {})) for name in methods}
    return methods, configs, [registry.canonical(name) for name in requested if name not in ("all", "none")]


def names(values: Sequence[str], flag: str, accepted: str) -> list[str]:
    """The names of a list flag (space or comma separated); none at all is an error."""
    found = split_names(values)
    if not found:
        raise UsageError(f"{flag} {' '.join(values)!r}: expected {accepted}")
    return found


def _data_dir(value: str | None) -> Path:
    """``--data-dir`` must exist; the default (``$CTKD_DATA_DIR``, ../shared/data or the per-user folder) may not
    exist yet: the run fetches the data into it, or names what is missing and how to fetch it."""
    if value is not None:
        return directory(value, "--data-dir", must_exist=True)
    return resolve_data_dir()


def resolve_names(registry: Registry[Any], values: Sequence[str], flag: str) -> list[str]:
    try:
        return registry.resolve(split_names(values))
    except RegistryError as error:
        raise UsageError(f"{flag}: {error}") from None


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
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not (
                math.isfinite(value) and abs(value) <= INT_MAX):
            raise UsageError(f"--set {item}: expected a finite number of magnitude at most {INT_MAX}")
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
    except ConfigError as error:  # a declared check or a check across fields: names the field
        where = "--set" if fields else f"method {name!r}: its default config:"
        raise UsageError(f"{where} {name}.{error}") from None
    except Exception as error:  # a third-party config may raise anything
        where = f"--set {name}" if fields else f"method {name!r}: its default config"
        raise UsageError(f"{where}: {error}") from None
