"""Time ``render_leaderboards`` on a synthetic store of 1,000 cells × 200 evaluation examples (target: < 30 s on
2 cores).

The store is written in a temporary directory in the runner's exact on-disk format: 5 tasks (their real names
and metrics) × 4 pairs × 50 cells (teacher, untrained, and 16 methods × 3 seeds), FairytaleQA examples in stories
of 8 and SQuAD examples in articles of 20, the others alone. Prints the time of the full render (all six files)
and of the statistics alone.

Usage: python -m perf.render_leaderboard [--keep DIR]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmark.store import CellKey, Store, scan_store
from leaderboards import render_leaderboards
from leaderboards.analysis import analyze

TASKS = {  # task -> (headline, metrics, examples per cluster)
    "qed": ("f1", ("f1", "exact_match"), 1),
    "squad": ("f1", ("f1", "exact_match"), 20),
    "fairytaleqa": ("rougeLsum", ("rouge1", "rouge2", "rougeL", "rougeLsum"), 8),
    "pubmedqa": ("rougeLsum", ("rouge1", "rouge2", "rougeL", "rougeLsum"), 1),
    "dialogsum": ("rougeLsum", ("rouge1", "rouge2", "rougeL", "rougeLsum"), 1),
}
PAIRS = tuple(f"pair-{i}" for i in range(4))
METHODS = ("sft", *(f"method-{i:02d}" for i in range(15)))
SEEDS = (1, 2, 3)
EXAMPLES = 200


def write_store(root: Path) -> int:
    store, rng = Store(root), np.random.default_rng(0)
    cells = 0
    for task, (headline, metrics, cluster_size) in TASKS.items():
        for pair in PAIRS:
            difficulty = rng.uniform(0, 100, EXAMPLES)
            grid = [("teacher", 0), ("untrained", 0)] + [(m, s) for m in METHODS for s in SEEDS]
            for method, seed in grid:
                shift = rng.normal(0, 3)
                scores = {m: np.clip(difficulty + shift + rng.normal(0, 15, EXAMPLES), 0, 100) for m in metrics}
                write_cell(store, task, pair, method, seed, headline, scores, cluster_size)
                cells += 1
    return cells


def write_cell(store: Store, task: str, pair: str, method: str, seed: int, headline: str,
               scores: dict[str, np.ndarray], cluster_size: int) -> None:
    """One finished cell, written through the store as a run writes it (format, config hash, run.json's hash)."""
    role = "teacher" if method == "teacher" else "student"
    cell = store.cell(CellKey(task, pair, method, seed))
    config = {"cell": {"task": task, "pair": pair, "method": method, "seed": seed}, "headline_metric": headline,
              "role": role}
    digest = cell.start(config)
    predictions = [{"id": f"ex{i}", "cluster": f"ex{i - i % cluster_size}", "prediction": "p", "references": ["r"],
                    **{m: float(v[i]) for m, v in scores.items()}} for i in range(EXAMPLES)]
    trains = method not in ("teacher", "untrained")
    run = {"config_hash": digest, "wall_time_s": 60.0, "peak_memory_mb": 2048.0,
           "eval": {"n_examples": EXAMPLES, "generation_wall_time_s": 20.0},
           **({"train": {"steps": 100, "wall_time_s": 30.0, "resumed_from_step": 0}} if trains else {})}
    cell.finish({m: float(v.mean()) for m, v in scores.items()}, predictions, run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the store here (must not exist) and keep it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        root = args.keep or Path(temporary) / "runs"
        cells = write_store(root)
        started = time.perf_counter()
        analyze(scan_store(root))
        statistics_s = time.perf_counter() - started
        started = time.perf_counter()
        written = render_leaderboards(root)
        render_s = time.perf_counter() - started
    print(f"{cells} cells × {EXAMPLES} examples: statistics {statistics_s:.1f} s; full render of "
          f"{len(written)} files {render_s:.1f} s (target < 30 s on 2 cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
