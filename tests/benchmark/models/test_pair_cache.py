"""The on-disk cache of data derived from a pair's tokenizers (MinED's vocabulary map): hits, keys, damage."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmark.models import pair_cache
from benchmark.models.pair_cache import cached_vocab_map
from methods.token_text import VocabInfo
from methods.vocab_map import build_vocab_map


def info(tokens: list[str], byte_level: bool = False) -> VocabInfo:
    return VocabInfo(vocab={t: i for i, t in enumerate(tokens)}, byte_level=byte_level)


TEACHER, STUDENT = info(["▁the", "▁dog", "▁sat"]), info(["Ġthe", "Ġdog", "Ġsa"], byte_level=True)


def no_build(*args, **kwargs):
    raise AssertionError("the map was rebuilt although a valid cache entry exists")


def cache_files(cache_dir: Path) -> list[Path]:
    """The cache's entries: lock files stay beside them by design (removing one would race its next waiter)."""
    return sorted(p for p in cache_dir.iterdir() if p.suffix != ".lock")


def test_cache_hit_returns_the_stored_map(tmp_path, monkeypatch):
    first = cached_vocab_map(TEACHER, STUDENT, tmp_path)
    assert [p.suffix for p in cache_files(tmp_path)] == [".json", ".npy"]  # no temporary files left behind
    monkeypatch.setattr(pair_cache, "build_vocab_map", no_build)
    second = cached_vocab_map(TEACHER, STUDENT, tmp_path)
    assert second.teacher_to_student.tolist() == first.teacher_to_student.tolist() == [0, 1, 2]
    assert second.exact_matches == first.exact_matches == 2


def test_changed_tokenizer_gets_its_own_entry(tmp_path, monkeypatch):
    cached_vocab_map(TEACHER, STUDENT, tmp_path)
    changed = info(["Ġthe", "Ġdog", "Ġsat"], byte_level=True)
    assert cached_vocab_map(TEACHER, changed, tmp_path).teacher_to_student.tolist() == [0, 1, 2]
    assert cached_vocab_map(TEACHER, changed, tmp_path).exact_matches == 3
    assert len(cache_files(tmp_path)) == 4
    monkeypatch.setattr(pair_cache, "build_vocab_map", no_build)
    assert cached_vocab_map(TEACHER, STUDENT, tmp_path).exact_matches == 2


@pytest.mark.parametrize("damage", ["truncate_array", "truncate_manifest", "delete_manifest", "other_key"])
def test_damaged_cache_is_rebuilt(tmp_path, damage):
    expected = cached_vocab_map(TEACHER, STUDENT, tmp_path).teacher_to_student.tolist()
    manifest = next(tmp_path.glob("*.json"))
    array = manifest.with_suffix(".npy")
    if damage == "truncate_array":
        array.write_bytes(array.read_bytes()[:-8])
    elif damage == "truncate_manifest":
        manifest.write_text(manifest.read_text()[:20])
    elif damage == "delete_manifest":
        manifest.unlink()
    else:
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "student": "0" * 64}))
    calls = []

    def counting_build(teacher, student):
        calls.append(1)
        return build_vocab_map(teacher, student)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pair_cache, "build_vocab_map", counting_build)
        assert cached_vocab_map(TEACHER, STUDENT, tmp_path).teacher_to_student.tolist() == expected
    assert calls == [1]
    assert np.load(array).tolist() == expected  # the rebuilt entry is whole again
    assert json.loads(manifest.read_text())["student"] == STUDENT.fingerprint()


# --- the overlap of a pair --------------------------------------------------------------------------------------


def test_vocabulary_overlap_is_measured_once_per_pair(tmp_path, monkeypatch):
    first = pair_cache.cached_vocabulary_overlap(STUDENT, TEACHER, tmp_path)
    assert (first.shared, first.student_size, first.teacher_size) == (2, 3, 3)  # " the", " dog" (bytes)
    assert first.student_share == pytest.approx(2 / 3) and first.jaccard == pytest.approx(2 / 4)
    monkeypatch.setattr(pair_cache, "vocabulary_overlap", no_build)
    assert pair_cache.cached_vocabulary_overlap(STUDENT, TEACHER, tmp_path) == first
    changed = info(["Ġthe", "Ġdog", "Ġsat"], byte_level=True)  # another tokenizer: another entry, built anew
    with pytest.raises(AssertionError, match="rebuilt"):
        pair_cache.cached_vocabulary_overlap(changed, TEACHER, tmp_path)


def test_the_pair_index_loads_no_tokenizer_once_measured(tmp_path):
    loads = []

    def vocabs():
        loads.append(1)
        return STUDENT, TEACHER

    identity = {"student": "s-spec", "teacher": "t-spec"}
    first = pair_cache.indexed_vocabulary_overlap(identity, vocabs, tmp_path)
    assert pair_cache.indexed_vocabulary_overlap(identity, vocabs, tmp_path) == first and loads == [1]
    assert pair_cache.indexed_vocabulary_overlap({**identity, "teacher": "other"}, vocabs, tmp_path) == first
    assert loads == [1, 1]


def test_text_overlap_is_keyed_by_task_data_and_prefixes(tmp_path, monkeypatch):
    from benchmark.models.loading import load_family_tokenizer

    student, teacher = load_family_tokenizer("gpt2"), load_family_tokenizer("llama2")
    answers = ["the dog sat", "3 dogs\nsat"]
    args = (student, teacher, answers, (" ", " "), "qed")
    first = pair_cache.cached_text_overlap(*args, "data-1", tmp_path)
    assert first.answers == 2 and 0 < first.one_to_one_share < 1  # the newline is written differently, yet aligned
    monkeypatch.setattr(pair_cache, "measure_text_overlap", no_build)
    assert pair_cache.cached_text_overlap(*args, "data-1", tmp_path) == first
    for changed in ((*args, "data-2"), (student, teacher, answers, (" ", ""), "qed", "data-1")):
        with pytest.raises(AssertionError, match="rebuilt"):
            pair_cache.cached_text_overlap(*changed, tmp_path)


def test_ls_pairs_measures_the_overlap_from_tokenizers_or_says_why_not(tmp_path, monkeypatch):
    from benchmark.cli.commands.ls import overlap_note

    from benchmark.models.loading import ModelSpec
    from benchmark.models.pairs import PAIRS, Pair

    assert overlap_note(PAIRS.get("tiny-qwen2-to-gpt2"), tmp_path) == "O_V 0.841 · Jaccard 0.265"
    monkeypatch.setattr(pair_cache, "vocabulary_overlap", no_build)  # the second listing reads the cache
    assert overlap_note(PAIRS.get("tiny-qwen2-to-gpt2"), tmp_path) == "O_V 0.841 · Jaccard 0.265"
    missing = Pair("gguf-missing", ModelSpec("Missing", "gguf", "no-such-model"), PAIRS.get("tiny-qwen2-to-gpt2").student)
    assert overlap_note(missing, tmp_path).startswith("overlap: not measured (Missing: unknown offline model 'no-such-model'")
