"""A builder for synthetic result stores in the exact on-disk format the runner writes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


class StoreBuilder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def cell(
        self,
        task: str,
        pair: str,
        method: str,
        seed: int,
        metrics: dict[str, float],
        *,
        headline: str = "f1",
        done: bool = True,
        wall_time_s: float | None = None,
        config_hash: str | None = None,
        train: dict[str, float] | None = None,
        peak_memory_mb: float | None = None,
    ) -> Path:
        cell_dir = self.root / task / pair / method / f"seed{seed}"
        cell_dir.mkdir(parents=True)
        config = {
            "task": task, "pair": pair, "method": method, "seed": seed, "headline_metric": headline,
            "role": "teacher" if method == "teacher" else "student", "lr": 1e-6,
        }
        _write_json(cell_dir / "config.json", {"hash": config_hash or f"h-{method}-{seed}", "config": config})
        _write_json(cell_dir / "metrics.json", metrics)
        run = {"wall_time_s": wall_time_s, "train": train, "peak_memory_mb": peak_memory_mb}
        if any(value is not None for value in run.values()):
            _write_json(cell_dir / "run.json", {**{k: v for k, v in run.items() if v is not None}, "git_commit": "abc"})
        if done:
            (cell_dir / "DONE").write_text("")
        return cell_dir

    def failed(self, task: str, pair: str, method: str, seed: int, error: str) -> Path:
        cell_dir = self.root / task / pair / method / f"seed{seed}"
        cell_dir.mkdir(parents=True)
        _write_json(cell_dir / "FAILED.json", {"error": error, "traceback": "Traceback ...\nRuntimeError: x"})
        return cell_dir

    def skipped(self, entries: list[dict[str, str]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _write_json(self.root / "skipped_pairs.json", entries)


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload), encoding="utf-8")


@pytest.fixture
def store(tmp_path: Path) -> StoreBuilder:
    return StoreBuilder(tmp_path / "runs")
