"""A pair's prompt protocol (run.json ``prompt_protocol``) labels it in a task's tables only where the task's pairs
were prompted differently (issue 26)."""
from pathlib import Path

from benchmark.store import CellRecord, StoreScan, _protocol


def protocol(teacher_style: str, template: str | None = None) -> dict:
    return {"prompt_protocol": {"teacher": {"style": teacher_style, "shots": 5, "chat_template": template},
                                "student": {"style": "plain", "shots": 0, "chat_template": None}}}


def scan(*cells: tuple[str, str, str]) -> StoreScan:
    records = tuple(CellRecord(task, pair, "sft", 1, "hash", "f1", {"f1": 50.0}, 1.0, prompt_protocol=text)
                    for task, pair, text in cells)
    return StoreScan(Path("runs"), records, (), (), {"qed": "f1", "squad": "f1"})


def test_the_protocol_reads_as_one_line_per_pair():
    assert _protocol(protocol("chat", "1a2b")) == "teacher chat 5-shot (template 1a2b) · student plain 0-shot"
    assert _protocol(protocol("plain")) == "teacher plain 5-shot · student plain 0-shot"
    assert _protocol({}) == ""


def test_pairs_are_labelled_with_their_protocol_only_where_it_differs():
    chat, plain = _protocol(protocol("chat", "1a2b")), _protocol(protocol("plain"))
    store = scan(("qed", "a", chat), ("qed", "b", plain), ("squad", "a", plain), ("squad", "b", plain))
    assert store.pair_labels("qed") == {"a": f"a [{chat}]", "b": f"b [{plain}]"}
    assert store.pair_labels("squad") == {"a": "a", "b": "b"}
