"""MinED: the DTW token alignment and the projected-logit KL loss."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein
from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

from methods.batch import DistillBatch, TeacherOutputs, TokenView
from methods.edit_alignment import TIE_ORDERS, dtw_align, strip_markers
from methods.mined import MinED, MinEDConfig
from methods.registry import METHODS
from methods.resources import PairResources

# --- DTW --------------------------------------------------------------------------------------------------------


def test_identical_sequences_align_on_the_diagonal():
    tokens = ["▁The", "▁cat", "▁sat", "."]
    assert dtw_align(tokens, tokens) == [[0], [1], [2], [3]]


def test_boundary_markers_are_ignored():
    assert dtw_align([" the", "▁cat"], ["Ġthe", "cat"]) == [[0], [1]]


def test_student_pieces_of_one_teacher_word_share_its_position():
    assert dtw_align(["▁I", "▁play", "ing"], ["ĠI", "Ġplaying"]) == [[0], [1], [1]]


def test_student_word_spanning_teacher_pieces_gets_all_of_them():
    assert dtw_align(["▁I", "▁playing"], ["ĠI", "Ġplay", "ing"]) == [[0], [1, 2]]


def test_empty_side_aligns_nothing():
    assert dtw_align(["a", "b"], []) == [[], []]
    assert dtw_align([], ["a"]) == []


def test_a_three_way_tie_takes_the_diagonal_in_either_order():
    for tie_order in TIE_ORDERS:
        assert dtw_align(["a", "a"], ["a", "a"], tie_order) == [[0], [1]]


@pytest.mark.parametrize("tie_order, expected", [("teacher-first", [[0], [0], [1, 2]]),
                                                 ("student-first", [[0, 1], [2], [2]])])
def test_tie_between_a_teacher_and_a_student_step(tie_order, expected):
    # Student "a b a", teacher "b a b": local costs [[1, 0, 1], [0, 1, 0], [1, 0, 1]] (student rows), accumulated
    # D = [[1, 1, 2], [1, 2, 1], [2, 1, 2]]. At the end (2, 2): diagonal D[1][1] = 2, student step D[1][2] = 1,
    # teacher step D[2][1] = 1. Teacher first (DSKD): (2, 1), diagonal to (1, 0), student step to (0, 0), so the last
    # student "a" takes teacher 1 and 2. Student first: (1, 2), diagonal to (0, 1), teacher step to (0, 0).
    assert dtw_align(["a", "b", "a"], ["b", "a", "b"], tie_order) == expected


def test_unknown_tie_order_is_an_error():
    with pytest.raises(ValueError, match="tie_order must be one of"):
        dtw_align(["a"], ["a"], "diagonal-last")


def naive_dtw(student: list[str], teacher: list[str], tie_order: str) -> list[list[int]]:
    """Reference written from DSKD's recurrence and back-trace: teacher rows i, student columns j; walking back, take
    the FIRST minimum of (diagonal, teacher step, student step), or (diagonal, student step, teacher step)."""
    inf = float("inf")
    acc = [[inf] * (len(student) + 1) for _ in range(len(teacher) + 1)]
    acc[0][0] = 0
    for i in range(1, len(teacher) + 1):
        for j in range(1, len(student) + 1):
            cost = Levenshtein.distance(strip_markers(teacher[i - 1]), strip_markers(student[j - 1]))
            acc[i][j] = cost + min(acc[i - 1][j - 1], acc[i - 1][j], acc[i][j - 1])
    i, j = len(teacher), len(student)
    aligned: list[list[int]] = [[] for _ in student]
    while True:
        aligned[j - 1].insert(0, i - 1)
        if (i, j) == (1, 1):
            return aligned
        moves = {"diagonal": (i - 1, j - 1), "teacher": (i - 1, j), "student": (i, j - 1)}
        order = ["diagonal", "teacher", "student"] if tie_order == "teacher-first" else ["diagonal", "student", "teacher"]
        i, j = moves[min(order, key=lambda move: acc[moves[move][0]][moves[move][1]])]


tokens = st.lists(st.text(alphabet="ab▁c", max_size=4), min_size=1, max_size=9)


@settings(max_examples=150, deadline=None)
@given(tokens, tokens, st.sampled_from(TIE_ORDERS))
def test_dtw_equals_the_reference_warping_path(student, teacher, tie_order):
    aligned = dtw_align(student, teacher, tie_order)
    assert aligned == naive_dtw(student, teacher, tie_order)
    path = [(i, j) for i, positions in enumerate(aligned) for j in positions]
    assert all((i1 - i0, j1 - j0) in {(1, 0), (0, 1), (1, 1)} for (i0, j0), (i1, j1) in zip(path, path[1:]))


# --- tiny tokenizers and batches --------------------------------------------------------------------------------


def tiny_tokenizer(tokens: list[str], byte_level: bool = False) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}))
    backend.decoder = decoders.ByteLevel() if byte_level else decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def token_view(answers: list[list[str]], tokenizer: PreTrainedTokenizerFast, prompt: int = 2, eos: str | None = None) -> TokenView:
    """A right-padded view whose answers follow a ``prompt``-token prompt of id 0 tokens; an optional EOS is
    labelled (and masked in ``answer_mask``)."""
    vocab = tokenizer.get_vocab()
    width = max(len(a) for a in answers) + (eos is not None)
    length = prompt + width
    view = TokenView(
        input_ids=torch.zeros(len(answers), length, dtype=torch.long),
        attention_mask=torch.zeros(len(answers), length, dtype=torch.long),
        labels=torch.full((len(answers), length), -100),
        answer_rows=torch.zeros(len(answers), width, dtype=torch.long),
        answer_ids=torch.zeros(len(answers), width, dtype=torch.long),
        answer_mask=torch.zeros(len(answers), width, dtype=torch.bool),
        answer_offsets=torch.full((len(answers), width, 2), -1),
        answer_tokens=[],
    )
    for b, answer in enumerate(answers):
        strings = answer + ([eos] if eos is not None else [])
        ids = torch.tensor([vocab[t] for t in strings])
        n = len(ids)
        view.input_ids[b, prompt : prompt + n] = ids
        view.attention_mask[b, : prompt + n] = 1
        view.labels[b, prompt : prompt + n] = ids
        view.answer_rows[b, :n] = torch.arange(prompt - 1, prompt - 1 + n)
        view.answer_ids[b, :n] = ids
        view.answer_mask[b, : len(answer)] = True
        ends = torch.tensor([len(t) for t in answer]).cumsum(0)
        view.answer_offsets[b, : len(answer)] = torch.stack([ends - torch.tensor([len(t) for t in answer]), ends], -1)
        view.answer_tokens.append(strings)
    return view


def make_batch(student: TokenView, teacher: TokenView) -> DistillBatch:
    return DistillBatch([str(b) for b in range(len(student.answer_tokens))], ["" for _ in student.answer_tokens], student, teacher)


def prepared(student_tokens: list[str], teacher_tokens: list[str], byte_level: bool = False, **config) -> MinED:
    method = MinED(MinEDConfig(**config))
    method.prepare(PairResources(tiny_tokenizer(student_tokens, byte_level), tiny_tokenizer(teacher_tokens, byte_level)))
    return method


def softmax(values: list[float], temperature: float) -> list[float]:
    top = max(values)
    weights = [math.exp((v - top) / temperature) for v in values]
    return [w / sum(weights) for w in weights]


def kl(target: list[float], student: list[float], temperature: float = 2.0) -> float:
    p, q = softmax(target, temperature), softmax(student, temperature)
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q) if pi > 0)


# --- loss -------------------------------------------------------------------------------------------------------

WORDS = ["Ġthe", "Ġcat", "Ġsat", ".", "Ġon", "Ġsit"]
TEACHER_WORDS = ["Ġthe", "Ġcat", "Ġsit", ".", "Ġon"]


MODES = ["inputs", "targets"]


@pytest.mark.parametrize("aligned_tokens", MODES)
def test_identical_pair_gives_zero_kd(aligned_tokens):
    method = prepared(WORDS, WORDS, byte_level=True, aligned_tokens=aligned_tokens)
    answers = [["Ġthe", "Ġcat", "Ġsat", "."], ["Ġthe", "."]]
    student, teacher = token_view(answers, tiny_tokenizer(WORDS, True)), token_view(answers, tiny_tokenizer(WORDS, True))
    batch = make_batch(student, teacher)
    logits = torch.randn(2, student.input_ids.size(1), len(WORDS))
    outputs = TeacherOutputs(mask=teacher.answer_mask, logits=teacher.gather_answer_rows(logits))
    terms = method.loss(batch, logits, outputs, torch.tensor(0.0))
    assert terms["kd"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["fallback_share"].item() == 0.0


@pytest.mark.parametrize("aligned_tokens", MODES)
def test_hand_computed_kl_on_a_four_token_student(aligned_tokens):
    # Rows read by their inputs ("a" of the prompt, then "a") or by their targets ("a", "b"): the diagonal either way.
    student_vocab, teacher_vocab = ["a", "b", "c", "d"], ["a", "b", "c", "e", "x"]
    method = prepared(student_vocab, teacher_vocab, aligned_tokens=aligned_tokens)
    # "e" and "x" are one edit from every student token: the first, "a", takes them; "d" gets no teacher id.
    assert method.vocab_map.teacher_to_student.tolist() == [0, 1, 2, 0, 0]
    student = token_view([["a", "b"]], tiny_tokenizer(student_vocab), prompt=1)
    teacher = token_view([["a", "b"]], tiny_tokenizer(teacher_vocab), prompt=3)
    student_rows = [[0.0, 1.0, -1.0, 0.5], [0.2, 0.1, 0.0, -0.3]]
    logits = torch.zeros(1, 3, 4)
    logits[0, :2] = torch.tensor(student_rows)
    teacher_rows = torch.tensor([[[1.0, 2.0, 0.5, 3.0, -1.0], [0.0, 1.0, 0.0, 0.0, 0.0]]])
    terms = method.loss(make_batch(student, teacher), logits, TeacherOutputs(teacher.answer_mask, teacher_rows), torch.tensor(1.3))
    # Projected rows: a = max(a, e, x); the unreached "d" sits at -1e5 and carries no target mass.
    expected = (kl([3.0, 2.0, 0.5, -1e5], student_rows[0]) + kl([0.0, 1.0, 0.0, -1e5], student_rows[1])) / 2
    assert terms["kd"].item() == pytest.approx(expected, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(0.5 * 1.3 + 0.5 * expected, rel=1e-5)
    assert terms["fallback_share"].item() == 0.0


def test_teacher_logit_columns_past_the_tokenizer_are_ignored():
    # Model heads are often wider than their tokenizer (Qwen2: 151,936 logits for 151,646 tokens).
    method = prepared(["a", "b", "c", "d"], ["a", "b", "c", "e", "x"])
    student = token_view([["a", "b"]], tiny_tokenizer(["a", "b", "c", "d"]))
    teacher = token_view([["a", "b"]], tiny_tokenizer(["a", "b", "c", "e", "x"]))
    batch, logits, ce = make_batch(student, teacher), torch.randn(1, 4, 4), torch.tensor(0.0)
    teacher_rows = torch.randn(1, 2, 5)
    wide = torch.cat([teacher_rows, torch.full((1, 2, 3), 50.0)], -1)
    narrow = method.loss(batch, logits, TeacherOutputs(teacher.answer_mask, teacher_rows), ce)["kd"]
    assert method.loss(batch, logits, TeacherOutputs(teacher.answer_mask, wide), ce)["kd"].item() == narrow.item()
    with pytest.raises(ValueError, match="does not fit"):
        method.loss(batch, logits, TeacherOutputs(teacher.answer_mask, teacher_rows[..., :4]), ce)


def test_unmatched_alignments_fall_back_to_one_hot_targets():
    student_vocab = ["the", "dog", "dot", "play", "ing", "playing"]
    teacher_vocab = ["the", "dot", "play", "ing", "playing", "zebra"]
    method = prepared(student_vocab, teacher_vocab, aligned_tokens="targets")
    student_answers = [["the", "dog", "playing"], ["play", "ing"]]
    teacher_answers = [["the", "dot", "play", "ing"], ["playing"]]
    assert dtw_align(student_answers[0], teacher_answers[0]) == [[0], [1], [2, 3]]
    student = token_view(student_answers, tiny_tokenizer(student_vocab))
    teacher = token_view(teacher_answers, tiny_tokenizer(teacher_vocab))
    logits = torch.randn(2, student.input_ids.size(1), len(student_vocab))
    teacher_logits = torch.randn(2, 4, len(teacher_vocab))
    terms = method.loss(make_batch(student, teacher), logits, TeacherOutputs(teacher.answer_mask, teacher_logits), torch.tensor(0.0))

    # Only "the" keeps a teacher target: "dog"~"dot" maps to "dot" (mismatch), "playing" spans two teacher
    # tokens, and "play"/"ing" each sit on one "playing" that maps to the student's "playing".
    assert terms["fallback_share"].item() == pytest.approx(4 / 5)
    rows = student.gather_answer_rows(logits)
    mapping = method.vocab_map.teacher_to_student.tolist()
    projected = [max((teacher_logits[0, 0, t].item() for t in range(6) if mapping[t] == s), default=-1e5) for s in range(6)]

    def one_hot(token: str) -> list[float]:
        return [100.0 if s == student_vocab.index(token) else -1e5 for s in range(6)]

    expected = [
        kl(projected, rows[0, 0].tolist()),
        kl(one_hot("dog"), rows[0, 1].tolist()),
        kl(one_hot("playing"), rows[0, 2].tolist()),
        kl(one_hot("play"), rows[1, 0].tolist()),
        kl(one_hot("ing"), rows[1, 1].tolist()),
    ]
    assert terms["kd"].item() == pytest.approx(sum(expected) / 5, rel=1e-5)


def distilled(view: TokenView, aligned_tokens: str) -> torch.Tensor:
    """``[B, A]``: the answer positions whose rows are distilled (every labelled row when reading inputs; the
    answer tokens with text when reading targets)."""
    return view.answer_token_mask() if aligned_tokens == "inputs" else view.answer_mask


def answer_row_mask(view: TokenView, positions: torch.Tensor) -> torch.Tensor:
    """``[B, L]``: the sequence rows whose logits predict the answer ``positions`` (and whose inputs feed them)."""
    used = torch.zeros(view.input_ids.shape, dtype=torch.bool)
    for b, a in positions.nonzero().tolist():
        used[b, view.answer_rows[b, a]] = True
    return used


def _masked_case(seed: int, garbage: bool, aligned_tokens: str = "inputs"):
    """One batch with a short example, a student EOS and padding; ``garbage`` rewrites everything the loss must not
    read: logits rows and ids outside the distilled rows, input ids no distilled row is fed, the token strings."""
    generator = torch.Generator().manual_seed(seed)
    method = prepared(WORDS, TEACHER_WORDS, byte_level=True, aligned_tokens=aligned_tokens)
    answers = [["Ġthe", "Ġcat", "Ġsat", "Ġon", "Ġthe", "."], ["Ġcat", "."]]
    student = token_view(answers, tiny_tokenizer(WORDS, True), eos=".")
    teacher_answers = [["Ġthe", "Ġcat", "Ġsit", "Ġon", "Ġthe", "."], ["Ġcat", "."]]
    teacher = token_view(teacher_answers, tiny_tokenizer(TEACHER_WORDS, True), prompt=4)
    logits = torch.randn(2, student.input_ids.size(1), len(WORDS), generator=generator)
    teacher_logits = torch.randn(2, teacher.answer_mask.size(1), len(TEACHER_WORDS), generator=generator)
    if garbage:
        used = answer_row_mask(student, distilled(student, aligned_tokens))
        logits = torch.where(used.unsqueeze(-1), logits, torch.full_like(logits, 1e4))
        teacher_logits[~distilled(teacher, aligned_tokens)] = float("nan")
        for view in (student, teacher):
            view.input_ids[~answer_row_mask(view, distilled(view, aligned_tokens))] = 3
            view.answer_ids[~distilled(view, aligned_tokens)] = 3
            view.answer_tokens[1] = view.answer_tokens[1][:2] + ["Ġgarbage"] * 5
    return method, make_batch(student, teacher), logits, TeacherOutputs(teacher.answer_mask, teacher_logits)


@pytest.mark.parametrize("aligned_tokens, fallback", [("inputs", 3 / 10), ("targets", 1 / 8)])
def test_masked_and_padded_positions_cannot_change_the_loss(aligned_tokens, fallback):
    # targets: "Ġsat" (student) sits on "Ġsit" (teacher), which maps to the student's "Ġsit": 1 of 8 rows falls back.
    # inputs: the row fed "Ġsat" as well; and each student EOS row (fed ".") aligns alone to the teacher's last row
    # (fed "Ġthe" and "Ġcat"): 3 of 10 rows.
    clean = _masked_case(0, garbage=False, aligned_tokens=aligned_tokens)
    dirty = _masked_case(0, garbage=True, aligned_tokens=aligned_tokens)
    ce = torch.tensor(0.7)
    clean_terms, dirty_terms = clean[0].loss(*clean[1:], ce), dirty[0].loss(*dirty[1:], ce)
    assert torch.isfinite(dirty_terms["loss"])
    assert dirty_terms["loss"].item() == pytest.approx(clean_terms["loss"].item(), rel=1e-6)
    assert dirty_terms["fallback_share"].item() == clean_terms["fallback_share"].item() == pytest.approx(fallback)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_logits_give_finite_loss_and_gradients(dtype):
    method, batch, logits, teacher = _masked_case(1, garbage=False)
    logits = (torch.sign(logits) * 1e4).to(dtype).requires_grad_()
    teacher = TeacherOutputs(teacher.mask, (torch.sign(teacher.logits) * 1e4).to(dtype))
    terms = method.loss(batch, logits, teacher, torch.tensor(1.0))
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"]) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("aligned_tokens", MODES)
def test_gradients_reach_the_distilled_student_rows_only(aligned_tokens):
    # inputs: every labelled row, the EOS row included; targets: the answer tokens with text.
    method, batch, logits, teacher = _masked_case(2, garbage=False, aligned_tokens=aligned_tokens)
    logits.requires_grad_()
    method.loss(batch, logits, teacher, torch.tensor(0.0))["loss"].backward()
    expected = answer_row_mask(batch.student, distilled(batch.student, aligned_tokens))
    assert torch.equal(logits.grad.abs().sum(-1) > 0, expected)
    assert int(expected.sum()) == (10 if aligned_tokens == "inputs" else 8)


# Tiny vocabularies whose id 0 is "c", the prompt token of every view below.
SMALL_STUDENT = ["c", "a", "b", "</s>"]
SMALL_TEACHER = ["c", "a", "b", "</s>", "ab"]  # "ab" maps to "a" (edit distance 1, the first such student id)


def small_case(teacher_answer: list[str], aligned_tokens: str):
    method = prepared(SMALL_STUDENT, SMALL_TEACHER, aligned_tokens=aligned_tokens)
    student = token_view([["a", "b"]], tiny_tokenizer(SMALL_STUDENT), prompt=1, eos="</s>")
    teacher = token_view([teacher_answer], tiny_tokenizer(SMALL_TEACHER), prompt=3, eos="</s>")
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(1, student.input_ids.size(1), 4, generator=generator)
    teacher_rows = torch.randn(1, teacher.answer_ids.size(1), 5, generator=generator)
    terms = method.loss(make_batch(student, teacher), logits, TeacherOutputs(teacher.answer_mask, teacher_rows),
                        torch.tensor(0.0))
    return terms, student.gather_answer_rows(logits)[0], teacher_rows[0], method.vocab_map.teacher_to_student.tolist()


def projected(teacher_row: torch.Tensor, mapping: list[int]) -> list[float]:
    """The teacher row in the student vocabulary: the max over the teacher ids mapped to each student id."""
    return [max((teacher_row[t].item() for t in range(len(mapping)) if mapping[t] == s), default=-1e5)
            for s in range(len(SMALL_STUDENT))]


def one_hot(token: str) -> list[float]:
    return [100.0 if s == SMALL_STUDENT.index(token) else -1e5 for s in range(len(SMALL_STUDENT))]


def test_reading_inputs_distils_the_eos_row():
    # Rows fed "c" (prompt), "a", "b" on both sides: the diagonal, every row projected, the EOS row included.
    terms, student, teacher, mapping = small_case(["a", "b"], "inputs")
    expected = sum(kl(projected(teacher[r], mapping), student[r].tolist()) for r in range(3)) / 3
    assert terms["kd"].item() == pytest.approx(expected, rel=1e-5) and terms["fallback_share"].item() == 0.0
    terms, *_ = small_case(["a", "b"], "targets")  # the same rows read by their targets: the EOS row is skipped
    expected = sum(kl(projected(teacher[r], mapping), student[r].tolist()) for r in range(2)) / 2
    assert terms["kd"].item() == pytest.approx(expected, rel=1e-5)


def test_reading_inputs_aligns_the_tokens_one_position_earlier():
    # Student rows fed c, a, b (predicting a, b, </s>); teacher rows fed c, ab (predicting ab, </s>).
    # inputs: DTW pairs c-c, a-c, b-ab: row 0 takes teacher row 0; row 1 (fed "a" vs "c") and row 2 (fed "b" vs
    # "ab", which maps to "a") fall back to their targets "b" and "</s>".
    terms, student, teacher, mapping = small_case(["ab"], "inputs")
    expected = (kl(projected(teacher[0], mapping), student[0].tolist()) + kl(one_hot("b"), student[1].tolist())
                + kl(one_hot("</s>"), student[2].tolist())) / 3
    assert terms["kd"].item() == pytest.approx(expected, rel=1e-5)
    assert terms["fallback_share"].item() == pytest.approx(2 / 3)
    # targets: "a" and "b" both sit on "ab" -> "a": row 0 takes teacher row 0, row 1 falls back; no EOS row.
    terms, *_ = small_case(["ab"], "targets")
    expected = (kl(projected(teacher[0], mapping), student[0].tolist()) + kl(one_hot("b"), student[1].tolist())) / 2
    assert terms["kd"].item() == pytest.approx(expected, rel=1e-5)
    assert terms["fallback_share"].item() == pytest.approx(1 / 2)


def test_loss_needs_prepare_and_full_logits():
    method = MinED()
    _, batch, logits, teacher = _masked_case(3, garbage=False)
    with pytest.raises(RuntimeError, match="prepare"):
        method.loss(batch, logits, teacher, torch.tensor(0.0))
    with pytest.raises(ValueError, match="full logits"):
        method.loss(batch, logits, TeacherOutputs(teacher.mask), torch.tensor(0.0))


def test_prepare_reuses_the_cached_map(tmp_path, monkeypatch):
    """Through the harness's resources the map is built once per pair and then read from the cache."""
    from benchmark.models import pair_cache

    student, teacher = tiny_tokenizer(WORDS, True), tiny_tokenizer(["▁the", "▁cat"])
    MinED().prepare(pair_cache.CachedPairResources(student, teacher, tmp_path))
    assert len(list((tmp_path / "pairs").glob("*.npy"))) == 1
    monkeypatch.setattr(pair_cache, "build_vocab_map", lambda *a: pytest.fail("rebuilt a cached map"))
    method = MinED()
    method.prepare(pair_cache.CachedPairResources(student, teacher, tmp_path))
    assert method.vocab_map.teacher_to_student.tolist() == [0, 1]


def test_registration_and_config():
    assert METHODS.get("mined") is MinED
    assert MinED().teacher_request().needs == "full_logits"
    config = MinEDConfig.from_dict({"temperature": 1.0})
    assert (config.ce_weight, config.kd_weight, config.temperature) == (0.5, 0.5, 1.0)
    with pytest.raises(ValueError, match="unknown config key"):
        MinEDConfig.from_dict({"kappa": 0.5})
    assert (MinEDConfig().aligned_tokens, MinEDConfig().dtw_tie_order) == ("inputs", "teacher-first")  # DSKD
    with pytest.raises(ValueError, match="^aligned_tokens='outputs': expected one of inputs, targets$"):
        MinEDConfig(aligned_tokens="outputs")
    with pytest.raises(ValueError, match="^dtw_tie_order='random': expected one of teacher-first, student-first$"):
        MinEDConfig(dtw_tie_order="random")
    with pytest.raises(ValueError, match="^temperature=0.0: expected a finite number > 0$"):
        MinEDConfig(temperature=0.0)
    with pytest.raises(ValueError, match=r"^one_hot_logit=-100000.0: expected a number > fill_logit \(-100000.0\)$"):
        MinEDConfig(one_hot_logit=-1e5)
