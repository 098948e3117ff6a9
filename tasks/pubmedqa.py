"""PubMedQA (PQA-L, expert-labelled): generative QA over PubMed abstracts.

- **test** = the 500 PMIDs of ``test_ground_truth.json`` (the official test split); **train** = the other 500
  PMIDs of ``ori_pqal.json``. Both keep the order of ``ori_pqal.json``; ids are the PMIDs.
- Context = the abstract sections ``CONTEXTS`` joined with a space; question = ``QUESTION``;
  ``answer`` = ``references[0]`` = ``LONG_ANSWER`` (the abstract's conclusion). The yes/no/maybe label is not used.
- Every example (abstract) is its own cluster for resampling (``Example.cluster`` left empty).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from tasks.base import (
    DataError,
    Example,
    GenerativeQATask,
    Split,
    as_object,
    get_field,
    get_str,
    make_example,
    read_json,
)
from tasks.registry import TASKS

DATA_FILE = "ori_pqal.json"
TEST_IDS_FILE = "test_ground_truth.json"


@TASKS.register("pubmedqa", aliases=("pubmed",))
class PubMedQA(GenerativeQATask):
    """PubMedQA PQA-L long-answer generation (test: official 500; metric: ROUGE-Lsum)."""

    data_subdir = "pubmedqa"
    max_new_tokens = 96  # long answers average ~40 words

    def data_files(self) -> list[Path]:
        return [self.data_dir / DATA_FILE, self.data_dir / TEST_IDS_FILE]

    def _read(self, split: Split) -> Iterator[Example]:
        path = self.data_dir / DATA_FILE
        records = as_object(read_json(path), f"{path}, top level")
        test_path = self.data_dir / TEST_IDS_FILE
        test_ids = set(as_object(read_json(test_path), f"{test_path}, top level"))
        unknown = sorted(test_ids - records.keys())
        if unknown:
            raise DataError(f"{test_path}: test PMID(s) {unknown[:5]} absent from {path}")
        for pmid, record in records.items():
            if (pmid in test_ids) != (split == "test"):
                continue
            where = f"{path}, record {pmid!r}"
            record = as_object(record, where)
            contexts = get_field(record, "CONTEXTS", where, list)
            if not contexts or not all(isinstance(c, str) for c in contexts):
                raise DataError(f"{where}: field 'CONTEXTS' should be a non-empty list of strings")
            question = get_str(record, "QUESTION", where, non_empty=True)
            answer = get_str(record, "LONG_ANSWER", where, non_empty=True)
            yield make_example(pmid, " ".join(contexts), question, answer)
