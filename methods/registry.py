"""The method registry: built-in methods, ``ctkd_bench.methods`` entry points and ``--include`` files."""
from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import entry_points
from pathlib import Path

from benchmark.core.registry import Registry
from methods.base import Method

METHODS: Registry[type[Method]] = Registry("method", name_attribute="name")

# Modules whose import registers the built-in methods (each decorates its class with @METHODS.register).
BUILTIN_METHOD_MODULES = (
    "methods.baselines", "methods.uld", "methods.mined", "methods.mlot", "methods.gold", "methods.alm", "methods.eta_kl",
    "methods.dskd_cma", "methods.dskdv2_eta", "methods.xtoken",
)
ENTRY_POINT_GROUP = "ctkd_bench.methods"

_loaded_builtins = False


def load_methods(include: list[str | Path] = ()) -> Registry[type[Method]]:
    """Import the built-in methods, third-party entry points and ``include`` files; return the registry."""
    global _loaded_builtins
    if not _loaded_builtins:
        for module in BUILTIN_METHOD_MODULES:
            importlib.import_module(module)
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            entry_point.load()
        _loaded_builtins = True
    for path in include:
        include_file(path)
    return METHODS


_included: set[Path] = set()


def include_file(path: str | Path) -> None:
    """Execute a user's Python file that registers methods (``--include FILE.py``); each file only once."""
    path = Path(path).resolve()
    if path in _included:
        return
    if not path.is_file() or path.suffix != ".py":
        raise ValueError(f"--include {str(path)!r} is not an existing .py file")
    spec = importlib.util.spec_from_file_location(f"ctkd_include_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _included.add(path)
