"""Vocabulary and text overlap (§19): hand cases, the shared vocabulary's rules, the real tokenizers."""
from __future__ import annotations

import pytest

from benchmark.models.loading import ModelUnavailableError, load_family_tokenizer
from methods.overlap import (
    measure_text_overlap,
    shared_vocabulary,
    text_overlap,
    vocabulary_overlap,
)
from methods.spans import AnswerSpans, TokenReader
from methods.token_text import TokenCanonicalizer, VocabInfo

# Byte-level student and SentencePiece teacher; shared on canonical bytes: " the", "\n", "é".
STUDENT = VocabInfo({"Ġthe": 0, "a": 1, "Ċ": 2, "Ã©": 3, "zz": 4, "yy": 5, "<|endoftext|>": 6}, byte_level=True,
                    special_ids=frozenset({6}), roles={"eos_token": 6, "bos_token": 6, "pad_token": 6})
TEACHER = VocabInfo({"<s>": 0, "</s>": 1, "▁the": 2, "<0x0A>": 3, "é": 4, "b": 5, "<0xC3>": 6, "<0x61>": 7},
                    byte_level=False, special_ids=frozenset({0, 1}), roles={"bos_token": 0, "eos_token": 1})


def test_vocabulary_overlap_by_hand():
    overlap = vocabulary_overlap(STUDENT, TEACHER)
    # Student: 6 ordinary tokens, of which " the", "\n", "é" and "a" (<0x61> writes it) are teacher bytes.
    assert overlap.student_size == 6 and overlap.teacher_size == 6
    assert overlap.shared == 4
    assert overlap.student_share == pytest.approx(4 / 6)
    assert overlap.nemo == pytest.approx(4 / 6)
    assert overlap.jaccard == pytest.approx(4 / (6 + 6 - 4))


def test_nemo_and_student_share_differ_when_the_student_is_larger():
    student = VocabInfo({t: i for i, t in enumerate(["a", "b", "c", "d"])}, byte_level=False)
    teacher = VocabInfo({t: i for i, t in enumerate(["a", "b"])}, byte_level=False)
    overlap = vocabulary_overlap(student, teacher)
    assert (overlap.student_share, overlap.nemo, overlap.jaccard) == (0.5, 1.0, 0.5)


def test_shared_vocabulary_canonical_prefers_ordinary_pieces_and_pairs_roles_once():
    pairs = shared_vocabulary(STUDENT, TEACHER, "canonical")
    # Sorted by canonical text: "\n", " the", "a" (the teacher's byte piece <0x61>), "é"; then eos (bos: id 6 used).
    assert list(zip(pairs.student, pairs.teacher)) == [(2, 3), (0, 2), (1, 7), (3, 4), (6, 1)]
    teacher = VocabInfo({**TEACHER.vocab, "a": 8}, byte_level=False, special_ids=TEACHER.special_ids, roles=TEACHER.roles)
    pairs = shared_vocabulary(STUDENT, teacher)
    assert (1, 8) in zip(pairs.student, pairs.teacher)  # the ordinary "a" now, not the byte piece


def test_shared_vocabulary_raw_matches_strings_only():
    pairs = shared_vocabulary(STUDENT, TEACHER, "raw")
    assert len(pairs) == 0  # "Ġthe" vs "▁the", "Ċ" vs "<0x0A>", "Ã©" vs "é": nothing is spelled alike
    with pytest.raises(ValueError, match="unknown token matching 'fuzzy'; expected one of canonical, raw"):
        shared_vocabulary(STUDENT, TEACHER, "fuzzy")


def test_text_overlap_by_hand():
    reader = TokenReader(TokenCanonicalizer(byte_level=False), {})
    answers = [(["He", "llo", " world"], ["Hello", " world"]), (["a", "b"], ["a", "b"])]
    tokenised = [tuple(AnswerSpans.lay(reader.read(tokens), "".join(s).encode()) for tokens in (s, t))
                 for s, t in answers]
    overlap = text_overlap(tokenised)
    assert overlap.one_to_one_share == pytest.approx(3 / 5)  # " world", "a", "b" of 5 student tokens
    assert overlap.byte_share == pytest.approx(8 / 13)
    assert overlap.student_group_size == pytest.approx(5 / 4) and overlap.teacher_group_size == 1.0
    assert overlap.answers == 2


# --- real tokenizers --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizers():
    try:
        return {f: load_family_tokenizer(f) for f in ("gpt2", "pythia-gptneox", "qwen2", "llama2", "mistral")}
    except ModelUnavailableError as error:
        pytest.skip(str(error))


def test_a_tokenizer_overlaps_itself_completely(tokenizers):
    info = VocabInfo.from_tokenizer(tokenizers["llama2"])
    overlap = vocabulary_overlap(info, info)
    # SentencePiece writes some bytes twice (an ordinary piece and a byte piece): the set is smaller than the list.
    assert overlap.student_share == 1.0 and overlap.jaccard == 1.0 and overlap.shared < overlap.student_size
    text = measure_text_overlap(tokenizers["gpt2"], tokenizers["gpt2"], ["Zürich 3.14", "naïve\n  x"])
    assert (text.one_to_one_share, text.byte_share, text.student_group_size) == (1.0, 1.0, 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("first, second, readme", [
    ("gpt2", "pythia-gptneox", 0.58), ("gpt2", "qwen2", 0.26), ("gpt2", "llama2", 0.28), ("gpt2", "mistral", 0.35),
    ("pythia-gptneox", "llama2", 0.36), ("pythia-gptneox", "mistral", 0.44), ("qwen2", "llama2", 0.17),
    ("llama2", "mistral", 0.61),
])
def test_jaccard_on_canonical_bytes_reproduces_the_shared_tokenizers_table(tokenizers, first, second, readme):
    """``shared/tokenizers/README.md`` lists Jaccard indices measured independently of this code (two decimals)."""
    overlap = vocabulary_overlap(VocabInfo.from_tokenizer(tokenizers[first]), VocabInfo.from_tokenizer(tokenizers[second]))
    assert overlap.jaccard == pytest.approx(readme, abs=0.005)
