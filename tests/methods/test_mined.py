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
from methods.edit_alignment import dtw_align, strip_markers
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


def naive_dtw_cost(student: list[str], teacher: list[str]) -> int:
    inf = float("inf")
    acc = [[inf] * (len(teacher) + 1) for _ in range(len(student) + 1)]
    acc[0][0] = 0
    for i in range(1, len(student) + 1):
        for j in range(1, len(teacher) + 1):
            cost = Levenshtein.distance(strip_markers(student[i - 1]), strip_markers(teacher[j - 1]))
            acc[i][j] = cost + min(acc[i - 1][j - 1], acc[i - 1][j], acc[i][j - 1])
    return acc[-1][-1]


tokens = st.lists(st.text(alphabet="ab▁c", max_size=4), min_size=1, max_size=9)


@settings(max_examples=150, deadline=None)
@given(tokens, tokens)
def test_dtw_returns_a_minimum_cost_warping_path(student, teacher):
    aligned = dtw_align(student, teacher)
    path = [(i, j) for i, positions in enumerate(aligned) for j in positions]
    assert path[0] == (0, 0) and path[-1] == (len(student) - 1, len(teacher) - 1)
    assert all((i1 - i0, j1 - j0) in {(1, 0), (0, 1), (1, 1)} for (i0, j0), (i1, j1) in zip(path, path[1:]))
    cost = sum(Levenshtein.distance(strip_markers(student[i]), strip_markers(teacher[j])) for i, j in path)
    assert cost == naive_dtw_cost(student, teacher)


# --- tiny tokenizers and batches --------------------------------------------------------------------------------


def tiny_tokenizer(tokens: list[str], byte_level: bool = False) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}))
    backend.decoder = decoders.ByteLevel() if byte_level else decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def token_view(answers: list[list[str]], tokenizer: PreTrainedTokenizerFast, prompt: int = 2, eos: str | None = None) -> TokenView:
    """A right-padded view whose answers follow a ``prompt``-token prompt; an optional EOS is trained, not distilled."""
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


def test_identical_pair_gives_zero_kd():
    method = prepared(WORDS, WORDS, byte_level=True)
    answers = [["Ġthe", "Ġcat", "Ġsat", "."], ["Ġthe", "."]]
    student, teacher = token_view(answers, tiny_tokenizer(WORDS, True)), token_view(answers, tiny_tokenizer(WORDS, True))
    batch = make_batch(student, teacher)
    logits = torch.randn(2, student.input_ids.size(1), len(WORDS))
    outputs = TeacherOutputs(mask=teacher.answer_mask, logits=teacher.gather_answer_rows(logits))
    terms = method.loss(batch, logits, outputs, torch.tensor(0.0))
    assert terms["kd"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["fallback_share"].item() == 0.0


def test_hand_computed_kl_on_a_four_token_student():
    student_vocab, teacher_vocab = ["a", "b", "c", "d"], ["a", "b", "c", "e", "x"]
    method = prepared(student_vocab, teacher_vocab)
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
    method = prepared(student_vocab, teacher_vocab)
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


def answer_row_mask(view: TokenView, logits: torch.Tensor) -> torch.Tensor:
    """``[B, L]``: the logits rows that predict distilled answer tokens."""
    used = torch.zeros(logits.shape[:2], dtype=torch.bool)
    for b, a in view.answer_mask.nonzero().tolist():
        used[b, view.answer_rows[b, a]] = True
    return used


def _masked_case(seed: int, garbage: bool):
    """One batch with a short example, a student EOS and padding; ``garbage`` rewrites everything outside the masks."""
    generator = torch.Generator().manual_seed(seed)
    method = prepared(WORDS, TEACHER_WORDS, byte_level=True)
    answers = [["Ġthe", "Ġcat", "Ġsat", "Ġon", "Ġthe", "."], ["Ġcat", "."]]
    student = token_view(answers, tiny_tokenizer(WORDS, True), eos=".")
    teacher_answers = [["Ġthe", "Ġcat", "Ġsit", "Ġon", "Ġthe", "."], ["Ġcat", "."]]
    teacher = token_view(teacher_answers, tiny_tokenizer(TEACHER_WORDS, True), prompt=4)
    logits = torch.randn(2, student.input_ids.size(1), len(WORDS), generator=generator)
    teacher_logits = torch.randn(2, teacher.answer_mask.size(1), len(TEACHER_WORDS), generator=generator)
    if garbage:
        used = answer_row_mask(student, logits)
        logits = torch.where(used.unsqueeze(-1), logits, torch.full_like(logits, 1e4))  # prompt, EOS and padding rows
        teacher_logits[~teacher.answer_mask] = float("nan")
        student.answer_ids[~student.answer_mask] = 3
        for view in (student, teacher):
            view.answer_tokens[1] = view.answer_tokens[1][:2] + ["Ġgarbage"] * 5
    return method, make_batch(student, teacher), logits, TeacherOutputs(teacher.answer_mask, teacher_logits)


def test_masked_and_padded_positions_cannot_change_the_loss():
    clean = _masked_case(0, garbage=False)
    dirty = _masked_case(0, garbage=True)
    ce = torch.tensor(0.7)
    clean_terms, dirty_terms = clean[0].loss(*clean[1:], ce), dirty[0].loss(*dirty[1:], ce)
    assert torch.isfinite(dirty_terms["loss"])
    assert dirty_terms["loss"].item() == pytest.approx(clean_terms["loss"].item(), rel=1e-6)
    assert dirty_terms["fallback_share"].item() == clean_terms["fallback_share"].item() == pytest.approx(1 / 8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_logits_give_finite_loss_and_gradients(dtype):
    method, batch, logits, teacher = _masked_case(1, garbage=False)
    logits = (torch.sign(logits) * 1e4).to(dtype).requires_grad_()
    teacher = TeacherOutputs(teacher.mask, (torch.sign(teacher.logits) * 1e4).to(dtype))
    terms = method.loss(batch, logits, teacher, torch.tensor(1.0))
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"]) and torch.isfinite(logits.grad).all()


def test_gradients_reach_the_student_answer_rows_only():
    method, batch, logits, teacher = _masked_case(2, garbage=False)
    logits.requires_grad_()
    method.loss(batch, logits, teacher, torch.tensor(0.0))["loss"].backward()
    assert torch.equal(logits.grad.abs().sum(-1) > 0, answer_row_mask(batch.student, logits))


def test_loss_needs_prepare_and_full_logits():
    method = MinED()
    _, batch, logits, teacher = _masked_case(3, garbage=False)
    with pytest.raises(RuntimeError, match="prepare"):
        method.loss(batch, logits, teacher, torch.tensor(0.0))
    with pytest.raises(ValueError, match="full logits"):
        method.loss(batch, logits, TeacherOutputs(teacher.mask), torch.tensor(0.0))


def test_prepare_reuses_the_cached_map(tmp_path, monkeypatch):
    """Through the harness's resources the map is built once per pair and then read from the cache."""
    from benchmark import pair_cache

    student, teacher = tiny_tokenizer(WORDS, True), tiny_tokenizer(["▁the", "▁cat"])
    MinED().prepare(pair_cache.CachedPairResources(student, teacher, tmp_path))
    assert len(list((tmp_path / "pairs").glob("*.npy"))) == 1
    monkeypatch.setattr(pair_cache, "build_vocab_map", lambda *a: pytest.fail("rebuilt a cached map"))
    method = MinED()
    method.prepare(pair_cache.CachedPairResources(student, teacher, tmp_path))
    assert method.vocab_map.teacher_to_student.tolist() == [0, 1]


def test_registration_and_config():
    assert METHODS.get("mined") is MinED
    assert MinED.teacher_needs == "full_logits"
    config = MinEDConfig.from_dict({"temperature": 1.0})
    assert (config.ce_weight, config.kd_weight, config.temperature) == (0.5, 0.5, 1.0)
    with pytest.raises(ValueError, match="unknown config key"):
        MinEDConfig.from_dict({"kappa": 0.5})
    with pytest.raises(ValueError):
        MinEDConfig(temperature=0.0)
