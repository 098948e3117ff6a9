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
        scores: dict[str, list[float]] | None = None,
        clusters: list[str] | None = None,
        examples: int = 4,
        run: dict[str, Any] | None = None,
        predictions: list[str] | None = None,
        train_log: list[dict[str, Any]] | None = None,
    ) -> Path:
        """A cell; its ``predictions.jsonl`` holds ``scores`` per example (default: every one of ``examples``
        examples scores the cell's metric value), ``clusters`` when given (else no cluster field, as in stores
        written before cluster ids), ``predictions`` per example (default "p") and ``train_log`` as its lines."""
        cell_dir = self.root / task / pair / method / f"seed{seed}"
        cell_dir.mkdir(parents=True)
        config = {
            "task": task, "pair": pair, "method": method, "seed": seed, "headline_metric": headline,
            "role": "teacher" if method == "teacher" else "student", "lr": 1e-6,
        }
        _write_json(cell_dir / "config.json", {"hash": config_hash or f"h-{method}-{seed}", "config": config})
        _write_json(cell_dir / "metrics.json", metrics)
        scores = scores or {metric: [value] * examples for metric, value in metrics.items()}
        n = len(next(iter(scores.values())))
        lines = []
        for i in range(n):
            record = {"id": f"e{i}", **({"cluster": clusters[i]} if clusters else {}),
                      "prediction": predictions[i] if predictions else "p",
                      "references": ["r"], **{metric: values[i] for metric, values in scores.items()}}
            lines.append(json.dumps(record) + "\n")
        (cell_dir / "predictions.jsonl").write_text("".join(lines), encoding="utf-8")
        if train_log is not None:
            (cell_dir / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train_log), encoding="utf-8")
        run = {"wall_time_s": wall_time_s, "train": train, "peak_memory_mb": peak_memory_mb, **(run or {})}
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
