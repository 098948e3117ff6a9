"""Token alignment: positional and character-offset pairs, coverage, gathers and reductions."""
from __future__ import annotations

import pytest
import torch

from methods.alignment import align, compact, gather_rows, sample_mean, token_mean
from tests.methods.helpers import make_batch

# "Hello world" split differently by the two sides; "ab" split identically except for one merge.
STUDENT = [["He", "llo", " world"], ["a", "b"]]
TEACHER = [["Hello", " world"], ["a", "b"]]


def test_positional_pairs_the_jth_text_tokens_and_never_the_eos():
    batch = make_batch(STUDENT, TEACHER, student_eos=True, teacher_eos=True)
    alignment = align(batch, "positional")
    assert alignment.mask.tolist() == [[True, True], [True, True]]
    assert alignment.student_index.tolist() == [[0, 1], [0, 1]]
    assert alignment.teacher_index.tolist() == [[0, 1], [0, 1]]
    assert alignment.coverage.item() == pytest.approx(4 / 5)  # "He", "llo", "a", "b" of 5 student text tokens


def test_positional_skips_masked_tokens_in_the_middle():
    batch = make_batch(STUDENT, TEACHER)
    batch.student.answer_mask[0, 1] = False  # e.g. a token without characters
    alignment = align(batch, "positional")
    assert alignment.student_index[0].tolist() == [0, 2]
    assert alignment.teacher_index[0].tolist() == [0, 1]


def test_positional_masks_the_shorter_side_and_zeroes_its_indices():
    batch = make_batch([["a", "b", "c"]], [["ab", "c"]])
    alignment = align(batch, "positional")
    assert alignment.mask.tolist() == [[True, True]]
    batch = make_batch([["ab", "c"], ["a", "b", "c"]], [["a", "b", "c"], ["abc"]])
    alignment = align(batch, "positional")
    assert alignment.mask.tolist() == [[True, True], [True, False]]
    assert alignment.teacher_index.tolist() == [[0, 1], [0, 0]]


def test_offsets_pair_only_identical_character_spans():
    batch = make_batch(STUDENT, TEACHER)
    alignment = align(batch, "offsets")
    assert alignment.mask.tolist() == [[True, False], [True, True]]
    assert alignment.student_index.tolist() == [[2, 0], [0, 1]]  # " world"; "a", "b"
    assert alignment.teacher_index.tolist() == [[1, 0], [0, 1]]
    assert alignment.coverage.item() == pytest.approx(3 / 5)


def test_offsets_leave_ambiguous_spans_unpaired():
    batch = make_batch([["a", "b", "c"]], [["a", "b", "c"]])
    batch.student.answer_offsets[0, 1] = batch.student.answer_offsets[0, 0]  # two student tokens claim "a"
    alignment = align(batch, "offsets")
    assert alignment.student_index[0, alignment.mask[0]].tolist() == [2]
    assert alignment.coverage.item() == pytest.approx(1 / 3)


def test_offsets_ignore_masked_tokens_even_with_equal_offsets():
    batch = make_batch([["a", "b"]], [["a", "b"]], student_eos=True, teacher_eos=True)
    alignment = align(batch, "offsets")  # both EOS carry (-1, -1)
    assert alignment.mask.sum().item() == 2


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="unknown alignment 'chars'"):
        align(make_batch(STUDENT, TEACHER), "chars")


def test_gathers_take_side_tensors_to_the_pairs():
    batch = make_batch(STUDENT, TEACHER, student_eos=True)
    alignment = align(batch, "offsets")
    features = torch.arange(2 * 4 * 3).reshape(2, 4, 3)
    assert torch.equal(alignment.student(features)[0, 0], features[0, 2])
    assert torch.equal(alignment.teacher(features)[1, 1], features[1, 1])
    assert alignment.student_rows(batch.student).tolist() == [
        [batch.student.answer_rows[0, 2].item(), batch.student.answer_rows[0, 0].item()],
        batch.student.answer_rows[1, :2].tolist(),
    ]
    assert gather_rows(torch.tensor([[5, 6, 7]]), torch.tensor([[2, 0]])).tolist() == [[7, 5]]


def test_compact_left_justifies_and_pads_to_a_size():
    index, valid = compact(torch.tensor([[False, True, True], [True, False, False]]), size=4)
    assert index.tolist() == [[1, 2, 0, 0], [0, 0, 0, 0]]
    assert valid.tolist() == [[True, True, False, False], [True, False, False, False]]


def test_reductions_by_hand_never_read_masked_values():
    values = torch.tensor([[1.0, 3.0, float("nan")], [4.0, float("inf"), 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert sample_mean(values, mask).item() == pytest.approx((2.0 + 4.0) / 2)
    assert token_mean(values, mask).item() == pytest.approx(8.0 / 3)
    empty = torch.zeros_like(mask)
    assert sample_mean(values, empty).item() == 0.0 and token_mean(values, empty).item() == 0.0
