"""MinED vocabulary map: canonical token text and matching rules (its on-disk cache: tests/benchmark/models/test_pair_cache.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein
from tokenizers import Tokenizer, decoders, models
from transformers import GPT2Tokenizer, LlamaTokenizer, PreTrainedTokenizerFast

from methods.token_text import TokenCanonicalizer, VocabInfo
from methods.vocab_map import build_vocab_map

TOKENIZERS = Path(__file__).resolve().parents[3] / "shared" / "tokenizers"


def info(tokens: list[str], byte_level: bool = False, **kwargs) -> VocabInfo:
    return VocabInfo(vocab={t: i for i, t in enumerate(tokens)}, byte_level=byte_level, **kwargs)


def mapped(teacher: VocabInfo, student: VocabInfo) -> list[int]:
    return build_vocab_map(teacher, student).teacher_to_student.tolist()


# --- canonical text ---------------------------------------------------------------------------------------------


def test_byte_level_strings_decode_to_text():
    canon = TokenCanonicalizer(byte_level=True, literals=frozenset({"<|endoftext|>"}))
    assert canon("Ġthe") == " the"
    assert canon("Ċ") == "\n"
    assert canon("ĠZ") == " Z"
    assert canon("Ã¼") == "ü"  # two bytes, one character
    assert canon("åĮĹ") == "北"
    assert canon("å") == "\udce5"  # a lone lead byte: surrogate escape
    assert canon("<|endoftext|>") == "<|endoftext|>"
    assert canon("already decoded") == "already decoded"  # the space is not in the byte alphabet


def test_sentencepiece_strings_decode_to_text():
    canon = TokenCanonicalizer(byte_level=False)
    assert canon("▁the") == " the"
    assert canon("▁▁") == "  "
    assert canon("<0x0A>") == "\n"
    assert canon("<0xE5>") == "\udce5"  # the same fragment a byte-level vocabulary writes as "å"
    assert canon("<s>") == "<s>"


@pytest.mark.parametrize("tokenizer_class, folder", [(GPT2Tokenizer, "gpt2"), (LlamaTokenizer, "llama2")])
def test_canonical_tokens_of_real_tokenizers_spell_the_text(tokenizer_class, folder):
    if not (TOKENIZERS / folder).is_dir():
        pytest.skip("shared tokenizer files are not present")
    tokenizer = tokenizer_class.from_pretrained(TOKENIZERS / folder)
    text = "The quick brown fox can't jump over 3 lazy dogs in Zürich!\n  北京 naïve"
    canon = VocabInfo.from_tokenizer(tokenizer).canonicalizer()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    joined = "".join(canon(t) for t in tokens)
    # A character split across tokens comes back as surrogate-escaped fragments that rejoin to its bytes.
    assert joined.encode("utf-8", "surrogateescape").decode("utf-8").strip() == text  # SentencePiece adds a leading "▁"
    assert [canon.text_of_id(i) for i in ids] == [canon(t) for t in tokens]  # ids read through the vocabulary


def test_an_id_without_a_token_is_an_error():
    canon = VocabInfo(vocab={"a": 0, "b": 2}, byte_level=False).canonicalizer()
    assert canon.text_of_id(2) == "b"
    with pytest.raises(ValueError, match="token id 1 has no token in this vocabulary of 3 ids"):
        canon.text_of_id(1)
    with pytest.raises(ValueError, match="token id 3 has no token"):
        canon.text_of_id(3)


# --- matching rules ---------------------------------------------------------------------------------------------


def test_exact_match_wins_over_an_earlier_near_match():
    assert mapped(info(["cat"]), info(["cab", "cat", "cut"])) == [1]


def test_boundary_markers_of_both_families_meet():
    teacher = info(["▁the", "<0x0A>", "the", "<0xE5>"])  # SentencePiece
    student = info(["the", "Ġthe", "Ċ", "å"], byte_level=True)
    vocab_map = build_vocab_map(teacher, student)
    assert vocab_map.teacher_to_student.tolist() == [1, 2, 0, 3]
    assert vocab_map.exact_share == 1.0


def test_edit_distance_ties_go_to_the_lowest_student_id():
    student = VocabInfo(vocab={"aby": 1, "abz": 0, "zzzz": 2}, byte_level=False)
    assert mapped(info(["abx"]), student) == [0]


def test_nearest_token_by_levenshtein_and_exact_share():
    vocab_map = build_vocab_map(info(["hello", "world", "worlds"]), info(["help", "hello", "word"]))
    assert vocab_map.teacher_to_student.tolist() == [1, 2, 2]
    assert vocab_map.exact_matches == 1 and vocab_map.exact_share == pytest.approx(1 / 3)


def test_special_tokens_map_by_role_then_among_specials():
    teacher = info(
        ["<|endoftext|>", "<|im_start|>", "hi", "<|im_end|>"],
        special_ids=frozenset({0, 1, 3}),
        roles={"eos_token": 0, "pad_token": 0},
    )
    student = info(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "hi", "<|im_e"],
        special_ids=frozenset({0, 1, 2}),
        roles={"eos_token": 2, "unk_token": 0},
    )
    # eos -> eos although the student also has "<|endoftext|>"; "<|im_end|>" matches among specials only.
    assert mapped(teacher, student) == [2, 1, 3, 2]


def test_ordinary_tokens_never_map_to_student_specials():
    student = info(["<s>", "x"], special_ids=frozenset({0}))
    assert mapped(info(["<s>"]), student) == [1]


def test_ids_without_a_token_stay_unmapped():
    teacher = VocabInfo(vocab={"a": 0, "b": 3}, byte_level=False)
    vocab_map = build_vocab_map(teacher, info(["a", "b"]))
    assert vocab_map.teacher_to_student.tolist() == [0, -1, -1, 1]
    assert vocab_map.mapped == 2


words = st.text(alphabet="abcd▁", min_size=0, max_size=5)


@settings(max_examples=60, deadline=None)
@given(st.lists(words, min_size=1, max_size=12, unique=True), st.lists(words, min_size=1, max_size=12, unique=True))
def test_map_equals_brute_force(teacher_tokens, student_tokens):
    canon = TokenCanonicalizer(byte_level=False)
    expected = []
    for token in teacher_tokens:
        distances = [Levenshtein.distance(canon(token), canon(s)) for s in student_tokens]
        expected.append(distances.index(min(distances)))  # exact match = distance 0 = first such id
    assert mapped(info(teacher_tokens), info(student_tokens)) == expected


# --- reading tokenizers -----------------------------------------------------------------------------------------


def tiny_tokenizer(tokens: list[str], decoder, **special: str) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}))
    backend.decoder = decoder
    return PreTrainedTokenizerFast(tokenizer_object=backend, **special)


def test_vocab_info_from_tokenizers():
    byte_level = VocabInfo.from_tokenizer(tiny_tokenizer(["</s>", "Ġthe"], decoders.ByteLevel(), eos_token="</s>"))
    assert byte_level.byte_level and byte_level.roles == {"eos_token": 0}
    assert byte_level.special_ids == {0} and byte_level.literals == {"</s>"}
    sentencepiece = VocabInfo.from_tokenizer(tiny_tokenizer(["▁the"], decoders.Metaspace()))
    assert not sentencepiece.byte_level and sentencepiece.roles == {} and sentencepiece.special_ids == set()


def test_fingerprint_tracks_vocab_and_specials():
    base = info(["a", "b"])
    assert base.fingerprint() == info(["a", "b"]).fingerprint()
    assert base.fingerprint() != info(["b", "a"]).fingerprint()
    assert base.fingerprint() != info(["a", "b"], special_ids=frozenset({0})).fingerprint()
    assert base.fingerprint() != info(["a", "b"], byte_level=True).fingerprint()

