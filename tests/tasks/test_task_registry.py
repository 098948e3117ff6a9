"""tasks.registry: names and aliases, the data directory, task creation and data fingerprints."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from benchmark.core.paths import default_data_dir
from benchmark.core.registry import RegistryError
from tasks import registry
from tasks.base import DataError
from tasks.fairytaleqa import FairytaleQA
from tasks.pubmedqa import PubMedQA
from tasks.registry import TASKS, data_fingerprint, load_tasks

NAMES = ["qed", "squad", "fairytaleqa", "pubmedqa", "dialogsum"]


def test_builtin_tasks_and_aliases() -> None:
    # Registration order follows import order (other test modules import adapters directly).
    assert load_tasks() is TASKS and sorted(TASKS.names()) == sorted(NAMES)
    assert len(load_tasks()) == len(NAMES)  # loading twice registers nothing twice
    assert TASKS.get("fairytale") is FairytaleQA and TASKS.get("pubmed") is PubMedQA
    for name in NAMES:
        task_class = TASKS.get(name)
        assert task_class.name == name
        assert task_class.metric in task_class.scorer.keys
        assert TASKS.description(name)


def test_unknown_task_lists_registered_names() -> None:
    with pytest.raises(RegistryError) as info:
        load_tasks().get("sqaud")
    message = str(info.value)
    assert "unknown task 'sqaud'" in message and "did you mean 'squad'" in message
    assert "registered: " + ", ".join(sorted(NAMES)) in message


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CTKD_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("CTKD_DATA_DIR")
    shared = Path(registry.__file__).resolve().parents[2] / "shared" / "data"
    assert default_data_dir() == (shared if shared.is_dir() else None)


def _pubmed_copy(root: Path, answer: str) -> PubMedQA:
    folder = root / "pubmedqa"
    folder.mkdir(parents=True)
    record = {"QUESTION": "Q?", "CONTEXTS": ["c"], "LONG_ANSWER": answer}
    (folder / "ori_pqal.json").write_text(json.dumps({"1": record, "2": record}), encoding="utf-8")
    (folder / "test_ground_truth.json").write_text(json.dumps({"1": "yes"}), encoding="utf-8")
    return PubMedQA(root)


def test_data_fingerprint_covers_names_and_bytes(tmp_path: Path) -> None:
    first = data_fingerprint(_pubmed_copy(tmp_path / "a", "same"))
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert data_fingerprint(_pubmed_copy(tmp_path / "b", "same")) == first  # location does not matter
    assert data_fingerprint(_pubmed_copy(tmp_path / "c", "different")) != first
    # The documented layout: per file in name order, length-prefixed relative name, length-prefixed bytes.
    digest = hashlib.sha256()
    for name in ("ori_pqal.json", "test_ground_truth.json"):
        content = (tmp_path / "a" / "pubmedqa" / name).read_bytes()
        digest.update(len(name).to_bytes(8, "big") + name.encode() + len(content).to_bytes(8, "big") + content)
    assert first == digest.hexdigest()


def test_data_fingerprint_of_missing_file(tmp_path: Path) -> None:
    task = _pubmed_copy(tmp_path, "x")
    (task.data_dir / "test_ground_truth.json").unlink()
    with pytest.raises(DataError, match="data file not found: .*test_ground_truth.json"):
        data_fingerprint(task)
