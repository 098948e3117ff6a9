"""A task with in-memory examples, for tests that must not depend on dataset files."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tasks.base import Example, Task
from tasks.metrics import squad_scores, squad_scores_one


class ToyTask(Task):
    name = "toy"
    metric = "f1"
    max_new_tokens = 8
    default_shots = 1
    system_message = "Answer briefly."
    data_subdir = ""

    def __init__(self, data_dir: str | Path, train: Sequence[Example], test: Sequence[Example]) -> None:
        super().__init__(data_dir)
        self._splits = {"train": list(train), "test": list(test)}

    def load(self, split: str) -> list[Example]:
        return list(self._splits[split])

    def data_files(self) -> list[Path]:
        return []

    def format_query(self, example: Example) -> str:
        return f"Context: {example.context}\nQuestion: {example.question}\nAnswer:"

    def score(self, predictions, references):
        return squad_scores(predictions, references)

    def score_one(self, prediction, references):
        return squad_scores_one(prediction, references)


def toy_examples(n: int, prefix: str = "e") -> list[Example]:
    words = ["Zürich", "playing football", "the 1901 Nobel Prize", "Wilhelm Conrad Röntgen", "don't stop", "3 lazy dogs"]
    return [
        Example(f"{prefix}{i}", f"Some context number {i} mentions {words[i % len(words)]}.", f"What is item {i}?",
                words[i % len(words)], (words[i % len(words)],))
        for i in range(n)
    ]
