"""A cell's hash holds what the cell reads and nothing else: teacher settings only for methods that read a teacher,
``teacher.topk`` only for top-k readers, the evaluation side for every cell."""
from __future__ import annotations

import pytest

from benchmark.config import Settings
from benchmark.models.pairs import PAIRS
from benchmark.run.context import TaskPairContext
from benchmark.store import CellKey, config_hash
from methods.registry import load_methods
from tasks.metrics import SQUAD
from tests.support.toy_task import ToyTask, toy_examples

BASE = Settings()


def cell_hash(settings: Settings, method: str | None, tmp_path) -> str:
    task = ToyTask(tmp_path, toy_examples(4, "train"), toy_examples(2, "test"))
    task.scorer = SQUAD  # the headline metric's direction enters every cell's config
    ctx = TaskPairContext.build(task, PAIRS.get("tiny-qwen2-to-gpt2"), settings, tmp_path / "cache")
    row = method or "untrained"
    instance = load_methods().get(method)() if method else None
    return config_hash(ctx.cell_config(CellKey("toy", ctx.pair.name, row, 1 if method else 0), instance))


@pytest.mark.parametrize("change, moves", [
    # method -> does the change move its hash?
    ({"teacher.topk": 50}, {"sft": False, "seqkd": False, "mined": False, "uld": True, "mlot": True, None: False}),
    ({"teacher.teacher_prep": "as-is"},
     {"sft": False, "seqkd": True, "mined": True, "uld": True, "mlot": True, None: False}),
    ({"prompt.teacher_shots": 3}, {"sft": False, "seqkd": True, "uld": True, None: False}),
    ({"train.learning_rate": 3e-4}, {"sft": True, "seqkd": True, "uld": True, None: False}),
    ({"data.limit_eval": 7}, {"sft": True, "uld": True, None: True}),
])
def test_a_setting_moves_only_the_hashes_of_cells_that_read_it(change, moves, tmp_path):
    changed = BASE.override(change)
    for method, expected in moves.items():
        assert (cell_hash(BASE, method, tmp_path) != cell_hash(changed, method, tmp_path)) is expected, (change, method)
