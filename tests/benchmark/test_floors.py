"""The house's floors: no wing of ``benchmark/`` imports a wing above it, and ``methods/`` and ``tasks/`` import only
``benchmark.core``. Every import counts, those inside functions and under ``TYPE_CHECKING`` included."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Lowest first. A module may import its own wing and any wing on a lower floor.
FLOORS: dict[str, int] = {
    "core": 0,
    "config": 1, "store": 1,  # at the door: import only the kernel
    "engine": 2, "data": 2,
    "models": 3,
    "export": 4,
    "run": 5,
    "cli": 6,
    "lm_eval_hooks": 7,  # the one-release shim of the old hooks location
}


def imported_modules(source: str, module: str) -> list[str]:
    """Every module the ``source`` of ``module`` imports, absolute names (relative imports resolved)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                package = module.split(".")[: -node.level]
                base = ".".join((*package, node.module))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def wing(module: str) -> str | None:
    """``benchmark.run.grid`` -> ``run``; None outside ``benchmark``."""
    parts = module.split(".")
    return parts[1] if parts[0] == "benchmark" and len(parts) > 1 else None


def sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_every_wing_has_a_floor() -> None:
    wings = {p.relative_to(REPO / "benchmark").parts[0].removesuffix(".py") for p in sources("benchmark")}
    assert wings - {"__init__"} == set(FLOORS)


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def upward_imports(source: str, module: str) -> list[str]:
    """The modules ``module`` imports from wings on a higher floor than its own."""
    own = wing(module)
    if own in (None, "__init__"):
        return []
    return sorted({m for m in imported_modules(source, module) if wing(m) in FLOORS and FLOORS[wing(m)] > FLOORS[own]})


@pytest.mark.parametrize("path", sources("benchmark"), ids=lambda p: str(p.relative_to(REPO)))
def test_no_wing_imports_upward(path: Path) -> None:
    upward = upward_imports(path.read_text(encoding="utf-8"), module_name(path))
    assert not upward, f"{path.relative_to(REPO)} imports from a higher floor: {upward}"


@pytest.mark.parametrize("path", sources("methods") + sources("tasks"), ids=lambda p: str(p.relative_to(REPO)))
def test_methods_and_tasks_import_only_the_kernel(path: Path) -> None:
    outside = sorted({m for m in imported_modules(path.read_text(encoding="utf-8"), module_name(path)) if m.startswith("benchmark") and wing(m) not in ("core", None)
                      and m != "benchmark"})
    assert not outside, f"{path.relative_to(REPO)} imports {outside}; methods/ and tasks/ may import benchmark.core only"


def test_the_floor_check_sees_upward_imports() -> None:
    """The check can fail: upward imports are caught wherever they hide; downward and same-wing ones pass."""
    hidden = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from benchmark.run.grid import Grid\n"
    assert upward_imports(hidden, "benchmark.engine.harness") == ["benchmark.run.grid", "benchmark.run.grid.Grid"]
    assert upward_imports("def f():\n    from ..cli import main\n", "benchmark.run.grid") == [
        "benchmark.cli", "benchmark.cli.main"]
    assert upward_imports("from benchmark import store\nfrom benchmark.engine import collate\n",
                          "benchmark.engine.harness") == []
