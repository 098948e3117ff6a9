"""The committed reference store (``results/reference``): its leaderboard is exactly ``docs/reference-leaderboard.md``,
and every score in it re-derives from the committed predictions with the task's metric."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from leaderboards import render_leaderboards
from tasks.registry import load_tasks

REPO = Path(__file__).resolve().parents[2]
STORE = REPO / "results" / "reference"
DOC = REPO / "docs" / "reference-leaderboard.md"
RESULT_FILES = {"config.json", "metrics.json", "predictions.jsonl", "run.json", "train_log.jsonl", "DONE"}
CELLS = sorted(p.parent for p in STORE.glob("*/*/*/seed*/DONE"))


def test_the_store_holds_result_files_only() -> None:
    assert CELLS, f"no finished cell under {STORE}"
    for cell in CELLS:
        assert {p.name for p in cell.iterdir()} <= RESULT_FILES, cell
    top = {p.name for p in STORE.iterdir() if p.is_file()}
    assert top <= {"reading.md", "skipped_pairs.json", "leaderboard.md", "leaderboard.csv", "summary.csv",
                   "vs_sft.csv", "leaderboard.html", "leaderboard.png", "leaderboard_curves.png"}, top
    assert not list(STORE.glob("*/inputs.jsonl"))  # the datasets' questions and contexts stay out of the repository


def test_the_doc_is_what_the_leaderboard_command_renders(tmp_path) -> None:
    written = render_leaderboards(STORE, tmp_path)
    assert written["leaderboard.md"].read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize("cell", CELLS, ids=lambda p: str(p.relative_to(STORE)))
def test_every_score_re_derives_from_its_predictions(cell: Path) -> None:
    config = json.loads((cell / "config.json").read_text())["config"]
    task = load_tasks().get(config["cell"]["task"])
    metrics = json.loads((cell / "metrics.json").read_text())
    records = [json.loads(line) for line in (cell / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == config["eval"]["limit_eval"] or config["eval"]["limit_eval"] is None
    for name, value in metrics.items():
        rescored = [task.scorer.score_one(r["prediction"], r["references"])[name] for r in records]
        assert rescored == [r[name] for r in records]  # each stored per-example score, recomputed
        assert math.isclose(sum(rescored) / len(rescored), value, rel_tol=0, abs_tol=1e-9), name
