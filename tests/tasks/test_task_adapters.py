"""The five task adapters on the real shared data (skipped when absent) and on small malformed copies."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from benchmark.core.paths import default_data_dir
from tasks.base import DataError, Example, Task
from tasks.dialogsum import DialogSum
from tasks.fairytaleqa import FairytaleQA
from tasks.pubmedqa import PubMedQA
from tasks.qed import QED
from tasks.registry import load_tasks
from tasks.squad import SQuAD, held_out_titles

DATA_DIR = default_data_dir()

# name -> (train count, test count, max_new_tokens, end of query)
EXPECTED = {
    "qed": (7147, 1355, 32, "\nAnswer:"),  # 7,167 train rows minus 20 with no answer span
    "squad": (8992, 1578, 32, "\nAnswer:"),
    "fairytaleqa": (8548, 1007, 32, "\nAnswer:"),
    "pubmedqa": (500, 500, 96, "\nAnswer:"),
    "dialogsum": (12460, 500, 64, "\nSummary:"),
}


def _real_task(name: str) -> Task:
    if DATA_DIR is None or not (DATA_DIR / name).is_dir():
        pytest.skip(f"shared data for {name!r} not found (looked in {DATA_DIR}; set CTKD_DATA_DIR)")
    return load_tasks().get(name)(DATA_DIR)


class _Loaded(dict[str, tuple[Task, list[Example], list[Example]]]):
    """name -> (task, train, test), each real task loaded on first use."""

    def __missing__(self, name: str) -> tuple[Task, list[Example], list[Example]]:
        task = _real_task(name)
        self[name] = (task, task.load("train"), task.load("test"))
        return self[name]


@pytest.fixture(scope="module")
def real() -> _Loaded:
    """Real tasks shared by the tests of this module (each split is read once)."""
    return _Loaded()


# -- real data ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(EXPECTED))
def test_split_counts_ids_and_answers(real: _Loaded, name: str) -> None:
    task, train, test = real[name]
    n_train, n_test, max_new_tokens, _ = EXPECTED[name]
    assert (len(train), len(test)) == (n_train, n_test)
    ids = [example.id for example in train + test]
    assert len(set(ids)) == len(ids)
    for example in train + test:
        assert example.answer and "\n" not in example.answer
        assert example.references and example.references[0] == example.answer
        assert all(ref and "\n" not in ref for ref in example.references)
        assert example.context.strip()
    assert (task.max_new_tokens, task.default_shots) == (max_new_tokens, 2)
    task.load("test").clear()  # callers get a copy of the cached split
    assert task.load("test") == test


@pytest.mark.parametrize("name", list(EXPECTED))
def test_shots_are_deterministic(real: _Loaded, name: str) -> None:
    task, train, _ = real[name]
    first = [s.id for s in task.select_shots(train, 2, seed=0)]
    assert [s.id for s in task.select_shots(train, 2, seed=0)] == first
    assert [s.id for s in task.select_shots(train, 2, seed=1)] != first
    assert task.select_shots(train, 0) == []
    with pytest.raises(ValueError, match="shots requested"):
        task.select_shots(train[:1], 2)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_prompt_item_shape_and_scoring(real: _Loaded, name: str) -> None:
    task, train, test = real[name]
    shots = task.select_shots(train, task.default_shots, seed=0)
    item = task.prompt_item(test[0], shots)
    end = EXPECTED[name][3]
    assert item.query == task.format_query(test[0]) and item.query.endswith(end)
    assert item.shots == tuple((task.format_query(s), s.answer) for s in shots)
    assert item.prompt == "\n\n".join([f"{query} {answer}" for query, answer in item.shots] + [item.query])
    assert (item.id, item.answer, item.references) == (test[0].id, test[0].answer, test[0].references)
    assert item.system == task.system_message and item.system
    # Gold answers are among the references, so they score 100 on the headline metric.
    gold = task.score([e.answer for e in test[:20]], [e.references for e in test[:20]])
    assert gold[task.metric] == pytest.approx(100.0)
    assert task.score_one("zzz qqq", test[0].references)[task.metric] == 0.0


def test_qed_references(real: _Loaded) -> None:
    _, train, test = real["qed"]
    first = test[0]
    assert first.id == "-3290814144789249484"
    assert first.question == "who got the first nobel prize in physics"
    assert first.answer == "Wilhelm Conrad Röntgen , of Germany"
    assert first.references == ("Wilhelm Conrad Röntgen , of Germany", "Wilhelm Conrad Röntgen")
    assert not {e.id for e in train} & {e.id for e in test}


def test_squad_split_is_by_article(real: _Loaded) -> None:
    _, train, test = real["squad"]
    assert len(train) + len(test) == 10570
    articles = json.loads((DATA_DIR / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    title_of = {p["context"]: a["title"] for a in articles for p in a["paragraphs"]}
    train_titles = {title_of[e.context] for e in train}
    test_titles = {title_of[e.context] for e in test}
    assert (len(train_titles), len(test_titles)) == (38, 10)
    assert not train_titles & test_titles
    assert "Warsaw" in test_titles and "Super_Bowl_50" in train_titles
    assert all(e.cluster_id == title_of[e.context] for e in train + test)  # the article is the cluster


@pytest.mark.parametrize(("name", "clusters"), [("fairytaleqa", 23), ("squad", 10), ("qed", 1355),
                                                ("pubmedqa", 500), ("dialogsum", 500)])
def test_test_split_clusters(real: _Loaded, name: str, clusters: int) -> None:
    """Stories (FairytaleQA) and articles (SQuAD) group examples; elsewhere each example is its own cluster."""
    _, _, test = real[name]
    assert len({e.cluster_id for e in test}) == clusters
    if clusters == len(test):
        assert all(e.cluster == "" and e.cluster_id == e.id for e in test)


def test_fairytaleqa_references_and_context(real: _Loaded) -> None:
    _, _, test = real["fairytaleqa"]
    # answer1 and answer4 are always both present in test; in 108 rows they are the same string.
    assert [sum(len(e.references) == n for e in test) for n in (1, 2)] == [108, 899]
    example = next(e for e in test if e.id == "enchanted-wreath#19")  # cor_section "14, 17"
    assert example.question == "Why did the mother tell her daughter not to speak?"
    story = DATA_DIR / "fairytaleqa/data-by-train-split/section-stories/test/enchanted-wreath-story.csv"
    with story.open(encoding="utf-8", newline="") as handle:
        sections = {row["section"]: row["text"] for row in csv.DictReader(handle)}
    assert example.context == sections["14"] + "\n" + sections["17"]


def test_pubmedqa_split_follows_official_test_ids(real: _Loaded) -> None:
    _, train, test = real["pubmedqa"]
    official = json.loads((DATA_DIR / "pubmedqa" / "test_ground_truth.json").read_text(encoding="utf-8"))
    assert {e.id for e in test} == set(official)
    assert not {e.id for e in train} & set(official)
    assert all(e.question.endswith("?") for e in test[:20])


def test_dialogsum_test_has_three_references(real: _Loaded) -> None:
    task, train, test = real["dialogsum"]
    # summary1..3, de-duplicated: in 10 dialogues two of the three summaries are identical.
    assert [sum(len(e.references) == n for e in test) for n in (1, 2, 3)] == [0, 10, 490]
    assert test[0].id == "test_0" and train[0].id == "train_0"
    assert test[0].context.startswith("#Person1#:") and test[0].question == ""
    assert task.format_query(test[0]) == f"Dialogue: {test[0].context}\nSummary:"


# -- small synthetic copies -----------------------------------------------------------------------------
QED_DEV = {
    "example_id": -1, "title_text": "T", "url": "u", "question_text": "who got the prize",
    "paragraph_text": "The prize went to Ann Lee , of Oslo .", "sentence_starts": [0],
    "original_nq_answers": [[{"start": 18, "end": 33, "string": "Ann Lee , of Oslo"}],
                            [{"start": 18, "end": 25, "string": "Ann Lee"}]],
    "annotation": {"explanation_type": "single_sentence",
                   "answer": [{"paragraph_reference": {"start": 18, "end": 25, "string": "Ann Lee ,"}}]},
}
QED_TRAIN = {"example_id": 7, "paragraph_text": "Webbed toes is syndactyly .", "question_text": "what are webbed toes",
             "title_text": "T", "answer_spans": [[15, 25]], "answer_text": ["syndactyly"], "annotation": [],
             "sentence_starts": [0], "answer_type": "single_sentence"}


def _write_jsonl(path: Path, records: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def _qed_dir(root: Path, dev: list[Any]) -> Path:
    _write_jsonl(root / "qed" / "qed-dev.jsonlines", dev)
    for i in range(6):
        no_answer = {**QED_TRAIN, "example_id": 100 + i, "answer_text": [""], "answer_spans": [[-1, -1]]}
        _write_jsonl(root / "qed" / "prerelease_train_shards_2020-08-26" / f"nq-train-0{i}-qed.jsonlines",
                     [{**QED_TRAIN, "example_id": i}, no_answer])
    return root


def test_qed_synthetic_references_and_skipped_rows(tmp_path: Path) -> None:
    none_row = {**QED_DEV, "example_id": -2, "annotation": {"explanation_type": "none"}}
    task = QED(_qed_dir(tmp_path, [QED_DEV, none_row]))
    test = task.load("test")
    assert test[0].references == ("Ann Lee , of Oslo", "Ann Lee", "Ann Lee ,")
    assert test[1].references == ("Ann Lee , of Oslo", "Ann Lee")  # `none` rows kept, NQ answers only
    assert [e.id for e in task.load("train")] == ["0", "1", "2", "3", "4", "5"]  # empty answer_text skipped


@pytest.mark.parametrize(
    ("line2", "expected"),
    [
        ({k: v for k, v in QED_DEV.items() if k != "question_text"}, "missing field 'question_text'"),
        ({**QED_DEV, "example_id": "x"}, "field 'example_id' should be int, got str"),
        ({**QED_DEV, "original_nq_answers": [[{"start": 0}]]}, "original_nq_answers[0][0]: missing field 'string'"),
        ('{"example_id": 1, "question_text": ', "invalid JSON"),
    ],
)
def test_qed_malformed_record(tmp_path: Path, line2: Any, expected: str) -> None:
    task = QED(_qed_dir(tmp_path, [QED_DEV, line2]))
    with pytest.raises(DataError) as info:
        task.load("test")
    message = str(info.value)
    assert f"{tmp_path / 'qed' / 'qed-dev.jsonlines'}, line 2" in message and expected in message
    assert "\n" not in message


def test_squad_malformed_record(tmp_path: Path) -> None:
    qa = {"id": "q1", "question": "Who?", "answers": [{"answer_start": 0, "text": "Ann"}]}
    articles = [{"title": f"A{i}", "paragraphs": [{"context": f"Ann {i}.", "qas": [{**qa, "id": f"q{i}"}]}]}
                for i in range(12)]
    del articles[3]["paragraphs"][0]["qas"][0]["question"]
    path = tmp_path / "squad" / "dev-v1.1.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    expected = r"dev-v1\.1\.json, data\[3\]\.paragraphs\[0\]\.qas\[0\]: missing field 'question'"
    with pytest.raises(DataError, match=expected):
        SQuAD(tmp_path).load("test" if "A3" in held_out_titles([a["title"] for a in articles]) else "train")


QUESTION_FIELDS = ["question_id", "local-or-sum", "cor_section", "attribute1", "attribute2", "question", "ex-or-im1",
                   "answer1", "answer2", "answer3", "ex-or-im2", "answer4", "answer5", "answer6"]


def _write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, header, restval="")
        writer.writeheader()
        writer.writerows(rows)


def _fairytale_dir(root: Path, questions: list[dict[str, str]]) -> Path:
    base = root / "fairytaleqa" / "data-by-train-split"
    sections = [{"section": "1", "text": "One."}, {"section": "2", "text": "Two a."},
                {"section": "2", "text": "Two b."}, {"section": "3", "text": "Three\n\nparagraphs."}]
    for split in ("train", "test"):
        _write_csv(base / "questions" / split / "tale-questions.csv", QUESTION_FIELDS, questions)
        _write_csv(base / "section-stories" / split / "tale-story.csv", ["section", "text"], sections)
    return root


def test_fairytaleqa_synthetic_context_and_references(tmp_path: Path) -> None:
    rows = [{"question_id": "1", "cor_section": "3, 1", "question": "Q?", "answer1": "A\nb", "answer4": "c"},
            {"question_id": "1", "cor_section": "2", "question": "Q2?", "answer1": "d", "answer4": ""}]
    task = FairytaleQA(_fairytale_dir(tmp_path, rows))
    first, second = task.load("test")
    assert first.context == "Three\n\nparagraphs.\nOne." and first.references == ("A b", "c")
    assert second.context == "Two a.\nTwo b." and second.references == ("d",)
    assert (first.id, second.id) == ("tale#1", "tale#2")
    assert first.cluster_id == second.cluster_id == "tale"  # one story, one cluster
    assert len(task.data_files()) == 4


@pytest.mark.parametrize(
    ("row2", "expected"),
    [
        ({"cor_section": "1", "question": "Q?", "answer1": " "}, "field 'answer1' is empty"),
        ({"cor_section": "1, 9", "question": "Q?", "answer1": "a"}, "field 'cor_section' names section(s) ['9']"),
    ],
)
def test_fairytaleqa_malformed_row(tmp_path: Path, row2: dict[str, str], expected: str) -> None:
    rows = [{"cor_section": "1", "question": "Q?", "answer1": "a"}, row2]
    task = FairytaleQA(_fairytale_dir(tmp_path, rows))
    with pytest.raises(DataError) as info:
        task.load("train")
    assert "tale-questions.csv, row 2: " in str(info.value) and expected in str(info.value)


def test_pubmedqa_malformed_record(tmp_path: Path) -> None:
    good = {"QUESTION": "Q?", "CONTEXTS": ["a", "b"], "LONG_ANSWER": "L", "final_decision": "yes"}
    folder = tmp_path / "pubmedqa"
    folder.mkdir()
    (folder / "test_ground_truth.json").write_text(json.dumps({"1": "yes"}))
    (folder / "ori_pqal.json").write_text(json.dumps({"1": good, "2": good, "3": {**good, "CONTEXTS": "a b"}}))
    task = PubMedQA(tmp_path)
    assert [(e.id, e.context) for e in task.load("test")] == [("1", "a b")]
    with pytest.raises(DataError, match=r"ori_pqal\.json, record '3': field 'CONTEXTS' should be list, got str"):
        task.load("train")


def test_dialogsum_malformed_record(tmp_path: Path) -> None:
    good = {"fname": "test_0", "dialogue": "#Person1#: Hi.\n#Person2#: Hi.", "summary1": "s1", "summary2": "s2",
            "summary3": "s3"}
    _write_jsonl(tmp_path / "dialogsum" / "dialogsum.train.jsonl", [])
    _write_jsonl(tmp_path / "dialogsum" / "dialogsum.test.jsonl", [good, {**good, "fname": "test_1", "summary2": 5}])
    with pytest.raises(DataError, match=r"dialogsum\.test\.jsonl, line 2: field 'summary2' should be str, got int"):
        DialogSum(tmp_path).load("test")


def test_missing_data_directory_and_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data directory for task 'dialogsum' not found: .*nowhere"):
        DialogSum(tmp_path / "nowhere")
    (tmp_path / "dialogsum").mkdir()
    with pytest.raises(DataError, match=r"data file not found: .*dialogsum\.test\.jsonl"):
        DialogSum(tmp_path).load("test")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        DialogSum(tmp_path).load("dev")  # type: ignore[arg-type]
