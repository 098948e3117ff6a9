"""QED (Natural Questions with explanations): extractive QA over a Wikipedia passage.

- **test** = ``qed-dev.jsonlines`` (1,355 examples, the evaluation set of the published work), in file order.
  ``answer`` = the first span string of the first NQ annotator (``original_nq_answers[0][0]``), the published
  reference. ``references`` = that string, then every other NQ span string (all annotators), then, for
  ``explanation_type == "single_sentence"``, the QED annotators' ``annotation.answer[*].paragraph_reference``
  strings; duplicates removed. The extra references only raise a prediction's best match, as with SQuAD's
  several answers. The 151 ``none`` rows (QED annotators judged the passage not to answer the question) are
  **kept**: they still have NQ answers, and dropping them would change the published n.
- **train** = the six pre-release shards ``prerelease_train_shards_2020-08-26/nq-train-0{0..5}-qed.jsonlines``
  in shard then line order: ``answer`` = ``answer_text[0]``, ``references`` = all ``answer_text``. The 20 rows
  whose ``answer_text`` is ``[""]`` (span ``[-1, -1]``: no answer in the passage) have no target and are
  **skipped**, leaving 7,147 of 7,167.
- Context = ``paragraph_text`` only: the spec's optional ``Title:`` line is off, so train and eval prompts match.
- Example ids are the NQ ``example_id`` as a string (NQ train and NQ dev ids do not overlap).
- Every example is its own cluster for resampling (``Example.cluster`` left empty).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from tasks.base import (
    DataError,
    Example,
    ExtractiveQATask,
    Split,
    as_object,
    get_field,
    get_str,
    make_example,
    read_jsonl,
)
from tasks.registry import TASKS

TEST_FILE = "qed-dev.jsonlines"
TRAIN_DIR = "prerelease_train_shards_2020-08-26"
TRAIN_SHARDS = tuple(f"nq-train-0{i}-qed.jsonlines" for i in range(6))


@TASKS.register("qed")
class QED(ExtractiveQATask):
    """QED / Natural Questions extractive QA (test: QED dev 1,355; metric: SQuAD F1)."""

    data_subdir = "qed"

    def data_files(self) -> list[Path]:
        return [self.data_dir / TEST_FILE, *(self.data_dir / TRAIN_DIR / shard for shard in TRAIN_SHARDS)]

    def _read(self, split: Split) -> Iterator[Example]:
        if split == "test":
            for where, record in read_jsonl(self.data_dir / TEST_FILE):
                yield _test_example(record, where)
        else:
            for shard in TRAIN_SHARDS:
                for where, record in read_jsonl(self.data_dir / TRAIN_DIR / shard):
                    example = _train_example(record, where)
                    if example is not None:
                        yield example


def _common(record: dict[str, Any], where: str) -> tuple[str, str, str]:
    """(id, context, question) of a record in either format."""
    example_id = get_field(record, "example_id", where, int)
    return str(example_id), get_str(record, "paragraph_text", where), get_str(record, "question_text", where)


def _test_example(record: dict[str, Any], where: str) -> Example:
    example_id, context, question = _common(record, where)
    annotators = get_field(record, "original_nq_answers", where, list)
    nq_answers: list[str] = []
    for i, spans in enumerate(annotators):
        if not isinstance(spans, list) or not spans:
            raise DataError(f"{where}: field 'original_nq_answers[{i}]' should be a non-empty list of spans")
        for j, span in enumerate(spans):
            span_where = f"{where}, original_nq_answers[{i}][{j}]"
            nq_answers.append(get_str(as_object(span, span_where), "string", span_where, non_empty=True))
    if not nq_answers:
        raise DataError(f"{where}: field 'original_nq_answers' is empty")
    annotation = get_field(record, "annotation", where, dict)
    qed_answers: list[str] = []
    if get_str(annotation, "explanation_type", f"{where}, annotation") == "single_sentence":
        for k, entry in enumerate(get_field(annotation, "answer", f"{where}, annotation", list)):
            entry_where = f"{where}, annotation.answer[{k}]"
            reference = get_field(as_object(entry, entry_where), "paragraph_reference", entry_where, dict)
            qed_answers.append(get_str(reference, "string", f"{entry_where}.paragraph_reference"))
    return make_example(example_id, context, question, nq_answers[0], [*nq_answers, *qed_answers])


def _train_example(record: dict[str, Any], where: str) -> Example | None:
    example_id, context, question = _common(record, where)
    answers = get_field(record, "answer_text", where, list)
    if not answers or not all(isinstance(a, str) for a in answers):
        raise DataError(f"{where}: field 'answer_text' should be a non-empty list of strings")
    if not answers[0].strip():
        return None  # no answer span in the passage
    return make_example(example_id, context, question, answers[0], answers)
