"""The perf scripts stay runnable: each imports, and the synthetic store of the render benchmark is a sound store."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from benchmark.store import STORE_FORMAT, CellKey, Store

PERF = Path(__file__).resolve().parents[2] / "perf"


@pytest.mark.parametrize("module", sorted(path.stem for path in PERF.glob("*.py") if path.stem != "__init__"))
def test_every_perf_script_imports(module):
    assert hasattr(importlib.import_module(f"perf.{module}"), "main")


def test_the_render_benchmark_writes_cells_the_store_reads_as_finished(tmp_path):
    from perf.render_leaderboard import EXAMPLES, write_cell

    scores = {"f1": np.linspace(0, 100, EXAMPLES), "exact_match": np.zeros(EXAMPLES)}
    write_cell(Store(tmp_path), "squad", "pair-0", "sft", 2, "f1", scores, cluster_size=20)
    record = Store(tmp_path).cell(CellKey("squad", "pair-0", "sft", 2)).record()
    assert (record.headline_metric, record.store_format) == ("f1", STORE_FORMAT)
    assert record.metrics["f1"] == pytest.approx(50.0)
    assert record.train_s_per_step == pytest.approx(0.3)  # the run.json costs are read too
    scan = Store(tmp_path).scan()
    assert len(scan.cells) == 1 and not scan.damaged
