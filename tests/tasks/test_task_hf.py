"""tasks.load and Task.to_hf: task splits as Hugging Face datasets with the evaluator's fields, ids and order."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import tasks
from benchmark.core.paths import default_data_dir
from benchmark.core.registry import RegistryError
from tasks.base import DataError, Example
from tasks.pubmedqa import PubMedQA

DATA_DIR = default_data_dir()
needs_data = pytest.mark.skipif(DATA_DIR is None, reason="task data not found (set CTKD_DATA_DIR or provide ../shared/data)")
COLUMNS = ["id", "context", "question", "answer", "references", "cluster"]


@needs_data
@pytest.mark.parametrize("name,split", [("qed", "test"), ("dialogsum", "test"), ("fairytaleqa", "test"),
                                        ("pubmedqa", "train"), ("squad", "test")])
def test_to_hf_has_the_examples_fields_ids_and_order(name: str, split: str) -> None:
    task = tasks.load(name)
    examples = task.load(split)
    dataset = task.to_hf(split)
    assert dataset.column_names == COLUMNS and len(dataset) == len(examples)
    assert dataset["id"] == [e.id for e in examples]
    for i in (0, len(examples) // 2, len(examples) - 1):
        row = dataset[i]
        assert Example(**{**row, "references": tuple(row["references"])}) == examples[i]


def test_to_hf_of_a_synthetic_task_and_its_schema(tmp_path: Path) -> None:
    folder = tmp_path / "pubmedqa"
    folder.mkdir()
    records = {"11": {"QUESTION": "Q1?", "CONTEXTS": ["a", "b"], "LONG_ANSWER": "first\nanswer"},
               "22": {"QUESTION": "Q2?", "CONTEXTS": ["c"], "LONG_ANSWER": "second"}}
    (folder / "ori_pqal.json").write_text(json.dumps(records), encoding="utf-8")
    (folder / "test_ground_truth.json").write_text(json.dumps({"22": "no"}), encoding="utf-8")
    task = PubMedQA(tmp_path)
    assert task.to_hf("train").to_list() == [{"id": "11", "context": "a b", "question": "Q1?", "answer": "first answer",
                                              "references": ["first answer"], "cluster": ""}]
    assert task.to_hf("test")["id"] == ["22"]
    features = task.to_hf("test").features
    assert features["id"].dtype == "string" and features["references"].feature.dtype == "string"
    with pytest.raises(ValueError, match="unknown split 'dev'; expected one of train, test"):
        task.to_hf("dev")  # type: ignore[arg-type]


def test_load_resolves_aliases_and_reports_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pubmedqa").mkdir()
    task = tasks.load("pubmed", tmp_path)
    assert isinstance(task, PubMedQA) and task.data_dir == tmp_path / "pubmedqa"
    monkeypatch.setenv("CTKD_DATA_DIR", str(tmp_path))
    assert tasks.load("pubmedqa").data_dir == tmp_path / "pubmedqa"  # the run's default data directory
    with pytest.raises(RegistryError, match="unknown task 'pubmedq'.*did you mean 'pubmedqa'"):
        tasks.load("pubmedq", tmp_path)
    with pytest.raises(DataError, match="data directory for task 'qed' not found"):
        tasks.load("qed", tmp_path)
