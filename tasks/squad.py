"""SQuAD v1.1: extractive QA over Wikipedia paragraphs, from the official ``dev-v1.1.json`` only.

The train file is not available offline, so the dev set (48 articles, 10,570 questions) is split **by
article**, which keeps every context on one side: the articles are ranked by the SHA-256 hex digest of their
UTF-8 ``title``; the :data:`TEST_ARTICLES` (10) lowest form **test** (1,578 questions), the other 38 the
**train** pool (8,992). Within a split, questions keep their file order. ``answer`` = the first answer text,
``references`` = all answer texts (usually three). Context = the paragraph (no title line). Ids are the
SQuAD question ids; the cluster is the article title (questions on one article are resampled together).
"""
from __future__ import annotations

import hashlib
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
    read_json,
)
from tasks.registry import TASKS

DATA_FILE = "dev-v1.1.json"
TEST_ARTICLES = 10


def held_out_titles(titles: list[str]) -> set[str]:
    """The titles of the held-out test articles (see the module docstring)."""
    ranked = sorted(titles, key=lambda title: hashlib.sha256(title.encode("utf-8")).hexdigest())
    return set(ranked[:TEST_ARTICLES])


@TASKS.register("squad", aliases=("squad1.1",))
class SQuAD(ExtractiveQATask):
    """SQuAD v1.1 extractive QA (dev set split by article; metric: SQuAD F1)."""

    data_subdir = "squad"

    def data_files(self) -> list[Path]:
        return [self.data_dir / DATA_FILE]

    def _read(self, split: Split) -> Iterator[Example]:
        path = self.data_dir / DATA_FILE
        articles = get_field(as_object(read_json(path), f"{path}, top level"), "data", f"{path}, top level", list)
        wheres = [f"{path}, data[{i}]" for i in range(len(articles))]
        titles = [get_str(as_object(a, where), "title", where) for a, where in zip(articles, wheres)]
        held_out = held_out_titles(titles)
        for article, title, where in zip(articles, titles, wheres):
            if (title in held_out) == (split == "test"):
                yield from _article_examples(article, title, where)


def _article_examples(article: dict[str, Any], title: str, where: str) -> Iterator[Example]:
    for j, paragraph in enumerate(get_field(article, "paragraphs", where, list)):
        p_where = f"{where}.paragraphs[{j}]"
        context = get_str(as_object(paragraph, p_where), "context", p_where, non_empty=True)
        for k, qa in enumerate(get_field(paragraph, "qas", p_where, list)):
            q_where = f"{p_where}.qas[{k}]"
            qa = as_object(qa, q_where)
            answers = [
                get_str(as_object(answer, f"{q_where}.answers[{m}]"), "text", f"{q_where}.answers[{m}]", non_empty=True)
                for m, answer in enumerate(get_field(qa, "answers", q_where, list))
            ]
            if not answers:
                raise DataError(f"{q_where}: field 'answers' is empty")
            qid = get_str(qa, "id", q_where, non_empty=True)
            yield make_example(qid, context, get_str(qa, "question", q_where), answers[0], answers, cluster=title)
