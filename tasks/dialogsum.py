"""DialogSum: one-sentence-style summaries of everyday dialogues.

- **train** = ``dialogsum.train.jsonl`` (12,460; ``answer`` = ``references[0]`` = ``summary``);
  **test** = ``dialogsum.test.jsonl`` (500; ``answer`` = ``summary1``, ``references`` = ``summary1..3``,
  ROUGE takes the best of the three). File order; ids are ``fname``. The dev and hidden-test files are not used.
- Context = ``dialogue`` as written (one turn per line); there is no question.
- Every example is its own cluster for resampling (``Example.cluster`` left empty).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from tasks.base import Example, Split, Task, get_str, make_example, read_jsonl
from tasks.metrics import ROUGE
from tasks.registry import TASKS

FILES = {"train": "dialogsum.train.jsonl", "test": "dialogsum.test.jsonl"}
TEST_SUMMARIES = ("summary1", "summary2", "summary3")


@TASKS.register("dialogsum")
class DialogSum(Task):
    """DialogSum dialogue summarization (test: 500 × 3 references; metric: ROUGE-Lsum)."""

    metric = "rougeLsum"
    scorer = ROUGE
    max_new_tokens = 64
    system_message = (
        "You are a dialogue-summarization assistant. Summarize the dialogue in one sentence, "
        "referring to the speakers by their names."
    )
    data_subdir = "dialogsum"

    def data_files(self) -> list[Path]:
        return [self.data_dir / FILES["train"], self.data_dir / FILES["test"]]

    def format_query(self, example: Example) -> str:
        return f"Dialogue: {example.context}\nSummary:"

    def _read(self, split: Split) -> Iterator[Example]:
        fields = TEST_SUMMARIES if split == "test" else ("summary",)
        for where, record in read_jsonl(self.data_dir / FILES[split]):
            summaries = [get_str(record, field, where, non_empty=True) for field in fields]
            dialogue = get_str(record, "dialogue", where, non_empty=True)
            yield make_example(get_str(record, "fname", where, non_empty=True), dialogue, "", summaries[0], summaries)
