"""Byte spans and groups of two tokenisations: hand cases, the §8.3 definition as properties, and the hard cases on
the real tokenizers (multi-byte characters, Ġ/▁ markers, byte fallback, BOS/EOS asymmetry, the prompt/answer seam)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.engine.collate import PairCollator, ViewEncoder
from benchmark.engine.prompting import PromptFormat
from benchmark.models.loading import ModelUnavailableError, load_family_tokenizer
from methods.spans import (
    AnswerSpans,
    GroupedBatch,
    TokenReader,
    group_tokens,
    token_log_probs,
)
from methods.token_text import TokenCanonicalizer
from tests.methods.helpers import EOS_TOKEN, make_batch
from tests.support.toy_task import ToyTask, toy_examples

PLAIN = TokenReader(TokenCanonicalizer(byte_level=False), {EOS_TOKEN: "eos_token", "<s>": "bos_token"})
FAMILIES = ("gpt2", "qwen2", "pythia-gptneox", "llama2", "mistral")
HARD = "Zürich!\n  北京 naïve 😀 3.14\tx"


@pytest.fixture(scope="module")
def tokenizers():
    try:
        return {family: load_family_tokenizer(family) for family in FAMILIES}
    except ModelUnavailableError as error:
        pytest.skip(str(error))


def lay(tokens: list[str], answer: str, reader: TokenReader = PLAIN) -> AnswerSpans:
    return AnswerSpans.lay(reader.read(tokens), answer.encode())


def group_strings(student: list[str], teacher: list[str], answer: str, readers=(PLAIN, PLAIN)) -> list[tuple]:
    groups = group_tokens(lay(student, answer, readers[0]), lay(teacher, answer, readers[1]))
    return [([student[i] for i in g.student], [teacher[k] for k in g.teacher], g.role) for g in groups]


def encode(tokenizer, text: str) -> list[str]:
    """The answer tokens as the collator makes them: no special tokens, then the EOS."""
    return tokenizer.tokenize(text) + [tokenizer.eos_token]


# --- spans by hand ----------------------------------------------------------------------------------------------


def test_spans_follow_the_bytes_of_each_piece():
    spans = lay(["Zü", "rich", EOS_TOKEN], "Zürich")
    assert spans.spans == ((0, 3), (3, 7), None)  # "ü" is two bytes
    assert spans.positions[2] == 7 and spans.verified == 7 and spans.text_tokens == 2


def test_the_seam_is_the_extra_leading_whitespace():
    # " " prefix, then a token straddling the seam, and a token that only writes the seam.
    assert lay([" 3", ".", "1"], "3.1").spans == ((0, 1), (1, 2), (2, 3))
    assert lay([" ", "3"], "3").spans == ((0, 0), (0, 1))
    assert lay([" ", "3"], "3").text_tokens == 1
    # An answer that itself begins with whitespace keeps it; only the extra whitespace is seam.
    assert lay(["  ", "\ta"], " \ta").spans == ((0, 1), (1, 3))


def test_tokens_past_the_first_differing_byte_get_no_span():
    # "é" composed (2 bytes) in the tokens, decomposed (e + U+0301, 3 bytes) in the answer: a normaliser at work.
    spans = lay(["ab", "é", "cd"], "abe\u0301cd")
    assert spans.spans == ((0, 2), None, None) and spans.verified == 2
    # Tokens cut by the answer-length limit simply never arrive: what is there is verified.
    assert lay(["ab", "c"], "abcdef").spans == ((0, 2), (2, 3))


def test_tokens_that_do_not_spell_the_answer_from_the_start_get_no_span():
    assert lay(["xy", "z"], "abc").spans == (None, None)
    assert lay(["a"], "  a").spans == (None,)  # less leading whitespace than the answer


# --- groups by hand ---------------------------------------------------------------------------------------------


def test_groups_by_hand():
    assert group_strings(["He", "llo", " world", EOS_TOKEN], ["Hello", " wor", "ld"], "Hello world") == [
        (["He", "llo"], ["Hello"], None),
        ([" world"], [" wor", "ld"], None),
    ]  # no EOS on the teacher side: the student EOS has no partner


def test_eos_pair_is_a_group_of_its_own_after_the_text():
    groups = group_tokens(lay(["ab", EOS_TOKEN], "ab"), lay(["a", "b", EOS_TOKEN], "ab"))
    assert [(g.student, g.teacher, g.start, g.end, g.role) for g in groups] == [
        ((0,), (0, 1), 0, 2, None), ((1,), (2,), 2, 2, "eos_token")
    ]


def test_seam_tokens_join_the_first_group():
    # Student with the plain " " prefix, teacher without (a chat template): they still share the first group.
    assert group_strings([" ", "3", "4"], ["34"], "34") == [([" ", "3", "4"], ["34"], None)]
    assert group_strings([" 3", "4"], [" ", "3", "4"], "34") == [([" 3"], [" ", "3"], None), (["4"], ["4"], None)]
    # A seam token on each side: they pair, as a group without answer bytes.
    groups = group_tokens(lay([" ", "3"], "3"), lay([" ", "3"], "3"))
    assert [(g.student, g.teacher, g.start, g.end, g.text_pair) for g in groups] == [
        ((0,), (0,), 0, 0, False), ((1,), (1,), 0, 1, True)
    ]


def test_bos_on_one_side_only_does_not_disturb_the_groups():
    # TRL #4392: a BOS on one side made the old string aligner flush the whole answer as one group.
    assert group_strings(["<s>", "a", "b", EOS_TOKEN], ["a", "b", EOS_TOKEN], "ab") == [
        (["a"], ["a"], None), (["b"], ["b"], None), ([EOS_TOKEN], [EOS_TOKEN], "eos_token")
    ]


def test_truncated_side_leaves_the_rest_ungrouped():
    # The teacher was cut after "ab"; the student's "cd" has no partner and the pending "c" group is dropped.
    assert group_strings(["ab", "cd"], ["a", "b", "c"], "abcd") == [(["ab"], ["a", "b"], None)]


def test_walk_resynchronises_after_a_disagreement_in_the_middle():
    groups = group_strings(["a", "bcd", "e"], ["ab", "c", "de"], "abcde")
    assert groups == [(["a", "bcd", "e"], ["ab", "c", "de"], None)]
    assert group_strings(["a", "bc", "d", " e"], ["ab", "cd", " e"], "abcd e")[-1] == ([" e"], [" e"], None)


tokens = st.lists(st.text(alphabet="ab é", min_size=1, max_size=3), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(tokens, st.data())
def test_groups_are_the_minimal_shared_spans(student, data):
    """§8.3 as properties, against any re-split of the same text: the groups tile the answer, each side's tokens
    in a group write exactly its bytes, and no group holds a byte position that is a boundary on both sides."""
    answer = "".join(student)
    teacher_cuts = data.draw(st.sets(st.integers(1, max(len(answer) - 1, 1)), max_size=len(answer)))
    cuts = [0, *sorted(c for c in teacher_cuts if c < len(answer)), len(answer)]
    teacher = [answer[a:b] for a, b in zip(cuts, cuts[1:])]
    s, t = lay(student, answer), lay(teacher, answer)
    groups = group_tokens(s, t)
    data_bytes = answer.encode()
    assert [g.start for g in groups] == [0] + [g.end for g in groups[:-1]]
    assert groups[-1].end == len(data_bytes)
    for g in groups:
        for side, indices in ((s, g.student), (t, g.teacher)):
            assert b"".join(side.pieces[i] for i in indices) == data_bytes[g.start : g.end]
            inner_ends = {side.spans[i][1] for i in indices[:-1]}
            other = t if side is s else s
            other_indices = g.teacher if side is s else g.student
            assert not inner_ends & {other.spans[i][1] for i in other_indices[:-1]}


# --- the real tokenizers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("prefix", [" ", ""], ids=["plain-prefix", "no-prefix"])
def test_real_tokenizers_lay_every_byte_of_the_answer(tokenizers, family, prefix):
    tokenizer = tokenizers[family]
    reader = TokenReader.from_tokenizer(tokenizer)
    tokens = encode(tokenizer, prefix + HARD)
    spans = AnswerSpans.lay(reader.read(tokens), HARD.encode())
    assert spans.verified == len(HARD.encode())
    assert spans.pieces[-1] == "eos_token" and spans.spans[-1] is None
    laid = [span for span in spans.spans if span is not None]
    assert [a for a, _ in laid] == [0] + [b for _, b in laid[:-1]]  # contiguous, no gap, no overlap


def test_multi_byte_characters_and_byte_fallback_on_real_tokenizers(tokenizers):
    readers = (TokenReader.from_tokenizer(tokenizers["gpt2"]), TokenReader.from_tokenizer(tokenizers["llama2"]))
    student, teacher = encode(tokenizers["gpt2"], " " + HARD), encode(tokenizers["llama2"], " " + HARD)
    groups = group_strings(student, teacher, HARD, readers)
    # "ü" is one byte-level piece "Ã¼" of two bytes inside "ĠZ Ã¼ rich"; Llama-2 writes "▁Zürich" whole.
    assert groups[0] == (["ĠZ", "Ã¼", "rich"], ["▁Zürich"], None)
    assert (["Ċ"], ["<0x0A>"], None) in groups  # one newline byte, written two ways
    # The emoji: Llama-2 has no piece for it and falls back to its four bytes; GPT-2 splits it 3 + 1.
    assert (["ĠðŁĺ"], ["▁", "<0xF0>", "<0x9F>", "<0x98>"], None) in groups
    assert (["Ģ"], ["<0x80>"], None) in groups
    assert groups[-1] == (["<|endoftext|>"], ["</s>"], "eos_token")


def test_leading_space_markers_meet_on_one_byte(tokenizers):
    readers = (TokenReader.from_tokenizer(tokenizers["pythia-gptneox"]), TokenReader.from_tokenizer(tokenizers["mistral"]))
    text = "the cat sat"
    groups = group_strings(encode(tokenizers["pythia-gptneox"], " " + text), encode(tokenizers["mistral"], " " + text),
                           text, readers)
    assert groups == [(["Ġthe"], ["▁the"], None), (["Ġcat"], ["▁cat"], None), (["Ġsat"], ["▁sat"], None),
                      (["<|endoftext|>"], ["</s>"], "eos_token")]


def test_sentencepiece_dummy_prefix_is_seam(tokenizers):
    # A chat-style answer has no prefix; Llama-2 still prepends "▁" (prepend_scheme "first").
    tokens = encode(tokenizers["llama2"], "42")
    assert tokens[:3] == ["▁", "4", "2"]
    readers = (TokenReader.from_tokenizer(tokenizers["gpt2"]), TokenReader.from_tokenizer(tokenizers["llama2"]))
    groups = group_strings(encode(tokenizers["gpt2"], " 42"), tokens, "42", readers)
    assert groups[0] == (["Ġ42"], ["▁", "4", "2"], None)


def kdflow_greedy(teacher: list[str], student: list[str]) -> list[tuple[int, int]]:
    """KDFlow / DSKDv2 ``align_sequences`` as methods-spec §16.2 describes it (markers stripped, growing histories)."""
    strip = [[token.replace("▁", "").replace("Ġ", "") for token in side] for side in (teacher, student)]
    y, x = strip
    i = j = 0
    history_t = history_s = ""
    pairs = []
    while i < len(y) and j < len(x):
        if history_t == history_s and y[i] == x[j]:
            pairs.append((i, j))
            history_t, history_s, i, j = history_t + y[i], history_s + x[j], i + 1, j + 1
        elif len(history_t) > len(history_s):
            history_s, j = history_s + x[j], j + 1
        elif len(history_t) < len(history_s):
            history_t, i = history_t + y[i], i + 1
        else:
            history_t, history_s, i, j = history_t + y[i], history_s + x[j], i + 1, j + 1
    return pairs


def test_byte_walk_resynchronises_where_the_greedy_exact_alignment_never_does(tokenizers):
    text = "one\ntwo three four"
    student, teacher = encode(tokenizers["gpt2"], " " + text)[:-1], encode(tokenizers["llama2"], " " + text)[:-1]
    assert student == ["Ġone", "Ċ", "two", "Ġthree", "Ġfour"]
    assert teacher == ["▁one", "<0x0A>", "two", "▁three", "▁four"]
    assert kdflow_greedy(teacher, student) == [(0, 0)]  # nothing after the newline is ever paired again
    readers = (TokenReader.from_tokenizer(tokenizers["gpt2"]), TokenReader.from_tokenizer(tokenizers["llama2"]))
    ours = group_strings(student, teacher, text, readers)
    assert ours == [([s], [t], None) for s, t in zip(student, teacher)]


def test_collated_batches_group_every_answer_byte_including_the_seam(tokenizers, tmp_path):
    task = ToyTask(tmp_path, toy_examples(6, "train"), toy_examples(1, "test"))
    pool = task.load("train")
    for student_family, teacher_family in [("gpt2", "qwen2"), ("pythia-gptneox", "llama2"), ("qwen2", "mistral")]:
        student_tok, teacher_tok = tokenizers[student_family], tokenizers[teacher_family]
        collator = PairCollator(ViewEncoder(task, student_tok, PromptFormat("plain", 0), pool, 32),
                                ViewEncoder(task, teacher_tok, PromptFormat("plain", 1), pool, 32))
        batch = collator(pool)
        grouped = GroupedBatch.build(batch, TokenReader.from_tokenizer(student_tok), TokenReader.from_tokenizer(teacher_tok))
        text = grouped.mask & ~grouped.special
        assert grouped.byte_share(text).item() == 1.0, (student_family, teacher_family)
        assert bool(grouped.special.any(1).all())  # every example ends with its EOS pair
        # A token that writes only the seam " " (Qwen2 and the SentencePiece tokenizers before a digit) carries no
        # answer text (answer_mask False) yet joins the first group; only the EOS stays out of the text groups.
        for view, side, tokenizer in ((batch.student, grouped.student, student_tok),
                                      (batch.teacher, grouped.teacher, teacher_tok)):
            text_groups = (side.member >= 0) & ~grouped.special.gather(1, side.member.clamp_min(0))
            seam = view.answer_token_mask() & ~view.answer_mask & text_groups
            assert bool((side.member[seam] == 0).all())
            assert int(seam.sum()) == int(tokenizer.tokenize(" 3 lazy dogs")[0] in ("Ġ", "▁"))


# --- tensors ----------------------------------------------------------------------------------------------------


def hand_batch():
    return make_batch([["He", "llo", " world"], ["a", "b"]], [["Hello", " wor", "ld"], ["a", "b"]],
                      student_eos=True, teacher_eos=True)


def test_grouped_batch_tensors_by_hand():
    grouped = GroupedBatch.build(hand_batch(), PLAIN, PLAIN)
    assert grouped.mask.tolist() == [[True, True, True], [True, True, True]]
    assert grouped.special.tolist() == [[False, False, True], [False, False, True]]
    assert grouped.student.member.tolist() == [[0, 0, 1, 2], [0, 1, 2, -1]]
    assert grouped.teacher.member.tolist() == [[0, 1, 1, 2], [0, 1, 2, -1]]
    assert grouped.student.first.tolist() == [[0, 2, 3], [0, 1, 2]]
    assert grouped.teacher.last.tolist() == [[0, 2, 3], [0, 1, 2]]
    assert grouped.exact.tolist() == [[False, False, True], [True, True, True]]
    assert grouped.nbytes.tolist() == [[5, 6, 0], [1, 1, 0]]
    values = torch.tensor([[1.0, 2.0, 4.0, 8.0], [1.0, 2.0, 4.0, float("nan")]])
    assert grouped.student.group_sum(values).tolist() == [[3.0, 4.0, 8.0], [1.0, 2.0, 4.0]]
    assert grouped.byte_share(grouped.exact).item() == pytest.approx(2 / 13)  # "a", "b" of 11 + 2 bytes
    assert grouped.one_to_one_share().item() == pytest.approx(2 / 5)  # "a", "b" of 5 student text tokens


def test_exact_alignment_pairs_single_tokens_with_equal_bytes():
    batch = hand_batch()
    alignment = GroupedBatch.build(batch, PLAIN, PLAIN).exact_alignment()
    assert alignment.mask.tolist() == [[True, False, False], [True, True, True]]
    assert alignment.student_index.tolist() == [[3, 0, 0], [0, 1, 2]]  # the EOS pair; "a", "b", EOS
    assert alignment.teacher_index.tolist() == [[3, 0, 0], [0, 1, 2]]
    assert alignment.coverage.item() == pytest.approx(4 / 7)  # of 7 student answer tokens (EOS included)


def test_mismatched_token_strings_are_an_error():
    batch = hand_batch()
    batch.student.answer_tokens[0] = batch.student.answer_tokens[0][:-1]
    with pytest.raises(ValueError, match="student example 0: 3 answer token strings but 4 labelled answer tokens"):
        GroupedBatch.build(batch, PLAIN, PLAIN)


def test_token_log_probs_read_the_right_row():
    rows = torch.randn(2, 3, 5)
    ids = torch.tensor([[1, 4, 0], [2, 2, 3]])
    logp = torch.log_softmax(rows, -1)
    expected = torch.stack([torch.stack([logp[b, a, ids[b, a]] for a in range(3)]) for b in range(2)])
    assert torch.allclose(token_log_probs(rows, ids), expected, atol=1e-6)
    shifted = token_log_probs(rows, ids, shift=1)
    assert torch.allclose(shifted[:, :2], torch.stack([torch.stack([logp[b, a + 1, ids[b, a]] for a in range(2)])
                                                       for b in range(2)]), atol=1e-6)
