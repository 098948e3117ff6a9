"""dskd-cma and dskdv2-eta against float64 references written from spec §5 and §17 (loops over rows, no module
helper), plus hand cases: a pseudo-inverse projector reproduces the teacher's logits on the shared vocabulary, and
identical models give zero t2s and s2t KD."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from methods.batch import TeacherOutputs
from methods.dskd_cma import DSKDCMA, DSKDCMAConfig
from methods.dskdv2_eta import DSKDv2ETA, DSKDv2ETAConfig
from methods.model_parts import ModelWeights
from tests.methods.helpers import eos_vocab, make_batch, prepared

D = torch.float64


def weights(vocab: int, hidden: int, seed: int) -> ModelWeights:
    g = torch.Generator().manual_seed(seed)
    return ModelWeights(torch.randn(vocab, hidden, generator=g), torch.randn(vocab, hidden, generator=g))


def kl(target: torch.Tensor, pred: torch.Tensor, tau: float) -> float:
    p, q = (target.to(D) / tau).softmax(-1), (pred.to(D) / tau).softmax(-1)
    return float((p * (p.log() - q.log())).sum())


def answer_positions(labels: torch.Tensor) -> list[int]:
    """Sequence positions of the answer tokens (labels != -100); the row predicting the token at p is p - 1."""
    return [p for p in range(labels.numel()) if int(labels[p]) != -100]


def std(rows: list[torch.Tensor]) -> float:
    x = torch.cat([r.flatten() for r in rows]).to(D)
    return float(((x - x.mean()) ** 2).sum() / (x.numel() - 1)) ** 0.5


def linear(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    out = module.weight.detach().to(D) @ x.to(D)
    return out + module.bias.detach().to(D) if module.bias is not None else out


# ------------------------------------------------------------------------------------------------------------------
# dskd-cma
# ------------------------------------------------------------------------------------------------------------------
V_S, V_T, D_S, D_T = 5, 7, 3, 4


def cma_case(seed: int):
    batch = make_batch([["a", "b", "c"], ["d", "e"]], [["ab", "c"], ["d", "e"]], student_vocab=V_S, teacher_vocab=V_T,
                       student_eos=True, teacher_eos=False)
    g = torch.Generator().manual_seed(seed)
    s_hidden = torch.randn(*batch.student.input_ids.shape, D_S, generator=g)
    student_logits = 3 * torch.randn(*batch.student.input_ids.shape, V_S, generator=g)
    t_hidden = torch.randn(*batch.teacher.input_ids.shape, D_T, generator=g)
    t_logits = 3 * torch.randn(*batch.teacher.answer_ids.shape, V_T, generator=g)
    batch = dataclasses.replace(batch, student=dataclasses.replace(batch.student, hidden=s_hidden))
    teacher = TeacherOutputs(mask=batch.teacher.answer_mask, logits=t_logits, hidden_states=t_hidden)
    return batch, student_logits, teacher


def cma_reference(method: DSKDCMA, batch, student_logits, teacher, ce: float) -> dict[str, float]:
    """Spec §5 row by row in float64: attention over each example's teacher answer rows."""
    s_w, t_w = method._weights
    proj, tau = method.projectors, method.config.temperature
    s_emb, t_emb = s_w.embeddings.to(D), t_w.embeddings.to(D)
    examples = []
    for b in range(len(batch.answers)):
        s_pos, t_pos = answer_positions(batch.student.labels[b]), answer_positions(batch.teacher.labels[b])
        s_in = [int(batch.student.input_ids[b, p - 1]) for p in s_pos]
        s_tg = [int(batch.student.input_ids[b, p]) for p in s_pos]
        t_in = [int(batch.teacher.input_ids[b, p - 1]) for p in t_pos]
        t_tg = [int(batch.teacher.input_ids[b, p]) for p in t_pos]
        examples.append((s_pos, t_pos, s_in, s_tg, t_in, t_tg))
    # one global std per tensor over every teacher answer row of the batch
    keys = [torch.cat([t_emb[i], t_emb[t]]) for ex in examples for i, t in zip(ex[4], ex[5])]
    hiddens = [teacher.hidden_states[b, p - 1] for b, ex in enumerate(examples) for p in ex[1]]
    targets = [t_emb[t] for ex in examples for t in ex[5]]
    k_std, h_std, e_std = std(keys), std(hiddens), std(targets)
    t2s_ce = t2s_kd = s2t_kd = 0.0
    agree = n_s = 0
    for b, (s_pos, t_pos, s_in, s_tg, t_in, t_tg) in enumerate(examples):
        q = [linear(proj["query"], torch.cat([s_emb[i], s_emb[t]])) for i, t in zip(s_in, s_tg)]
        k = [torch.cat([t_emb[i], t_emb[t]]) / k_std for i, t in zip(t_in, t_tg)]
        v = [linear(proj["t2s"], teacher.hidden_states[b, p - 1].to(D) / h_std + t_emb[t] / e_std)
             for p, t in zip(t_pos, t_tg)]
        scores = torch.tensor([[float(qi @ kj) / (2 * D_T) ** 0.5 for kj in k] for qi in q], dtype=D)
        for j, (p, label) in enumerate(zip(s_pos, s_tg)):
            a = scores[j].softmax(-1)
            t2s = sum(a[i] * v[i] for i in range(len(v))) @ s_w.head.to(D).T
            t2s_ce += float(-t2s.log_softmax(-1)[label])
            if int(t2s.argmax()) == label:
                agree += 1
                t2s_kd += kl(t2s, student_logits[b, p - 1], tau)
            n_s += 1
        s_values = [linear(proj["s2t"], batch.student.hidden[b, p - 1]) for p in s_pos]
        for i in range(len(t_pos)):
            a = scores[:, i].softmax(-1)
            s2t = sum(a[j] * s_values[j] for j in range(len(s_values))) @ t_w.head.to(D).T
            s2t_kd += kl(teacher.logits[b, i], s2t, tau)
    kd = (t2s_ce + t2s_kd + s2t_kd) / n_s
    return {"loss": 0.5 * ce + 0.5 * kd, "kd": kd, "t2s_kd": t2s_kd / n_s, "s2t_kd": s2t_kd / n_s,
            "t2s_accuracy": agree / n_s}


@pytest.mark.parametrize("seed", [0, 1, 3])  # seed 0: no t2s row agrees with its label; 1 and 3: some do
def test_dskd_cma_equals_the_float64_reference(seed):
    torch.manual_seed(seed)
    method = DSKDCMA(DSKDCMAConfig(temperature=2.0))
    method.build_modules(weights(V_S, D_S, 10 + seed), weights(V_T, D_T, 20 + seed))
    batch, student_logits, teacher = cma_case(seed)
    out = method.loss(batch, student_logits, teacher, torch.tensor(1.5))
    expected = cma_reference(method, batch, student_logits, teacher, 1.5)
    assert (expected["t2s_accuracy"] > 0) == (seed != 0)
    for name, value in expected.items():
        assert float(out[name].detach()) == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_dskd_cma_masks_padding_and_trains_every_projector():
    """Garbage behind the masks (teacher rows past its answer, student rows past its EOS) changes nothing, and every
    projector gets a gradient while the teacher's tensors get none."""
    torch.manual_seed(1)
    method = DSKDCMA()
    own = method.build_modules(weights(V_S, D_S, 1), weights(V_T, D_T, 2))
    batch, student_logits, teacher = cma_case(1)  # some t2s rows agree with their label
    base = method.loss(batch, student_logits, teacher, torch.tensor(1.0))["loss"]
    t_pad = ~batch.teacher.answer_token_mask()
    noisy = dataclasses.replace(teacher, logits=torch.where(t_pad.unsqueeze(-1), 1e4, teacher.logits))
    noisy_loss = method.loss(batch, student_logits, noisy, torch.tensor(1.0))["loss"]
    assert float(noisy_loss.detach()) == pytest.approx(float(base.detach()), rel=1e-6)
    logits, hidden = student_logits.clone().requires_grad_(), batch.student.hidden.clone().requires_grad_()
    leaves = teacher.logits.clone().requires_grad_(), teacher.hidden_states.clone().requires_grad_()
    batch = dataclasses.replace(batch, student=dataclasses.replace(batch.student, hidden=hidden))
    method.loss(batch, logits, dataclasses.replace(teacher, logits=leaves[0], hidden_states=leaves[1]),
                torch.tensor(1.0))["loss"].backward()
    assert logits.grad is not None and hidden.grad.abs().sum() > 0  # the student learns through s2t
    assert all(leaf.grad is None for leaf in leaves)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in own.module.parameters())


def test_dskd_cma_needs_built_projectors_and_hidden_states():
    batch, student_logits, teacher = cma_case(0)
    with pytest.raises(RuntimeError, match="build_modules"):
        DSKDCMA().loss(batch, student_logits, teacher, torch.tensor(1.0))
    method = DSKDCMA()
    method.build_modules(weights(V_S, D_S, 1), weights(V_T, D_T, 2))
    with pytest.raises(ValueError, match="hidden states"):
        method.loss(batch, student_logits, dataclasses.replace(teacher, hidden_states=None), torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"^kd_rate=1.5: expected a finite number in \[0, 1\]$"):
        DSKDCMAConfig(kd_rate=1.5)


# ------------------------------------------------------------------------------------------------------------------
# dskdv2-eta
# ------------------------------------------------------------------------------------------------------------------
# Student He|llo|" world"|EOS, teacher Hello|" world"|EOS: " world" and the EOS pair are aligned exactly.
S_VOCAB, T_VOCAB = eos_vocab(["He", "llo", " world", "x"]), eos_vocab(["Hello", " world", "x", "z"])
S_SHARED, T_SHARED = [3, 4, 0], [2, 3, 0]  # O = (" world", "x", EOS) by canonical text plus the EOS role


def eta_case(seed: int, d_s: int = 4, d_t: int = 3):
    batch = make_batch([["He", "llo", " world"]], [["Hello", " world"]], student_vocab=5, teacher_vocab=5,
                       student_eos=True, teacher_eos=True, student_ids=S_VOCAB.vocab, teacher_ids=T_VOCAB.vocab)
    g = torch.Generator().manual_seed(seed)
    s_hidden = torch.randn(*batch.student.input_ids.shape, d_s, generator=g)
    student_logits = 2 * torch.randn(*batch.student.input_ids.shape, 5, generator=g)
    t_hidden = torch.randn(*batch.teacher.input_ids.shape, d_t, generator=g)
    s_w = ModelWeights(torch.randn(5, d_s, generator=g), torch.randn(5, d_s, generator=g))
    t_w = ModelWeights(torch.randn(5, d_t, generator=g), torch.randn(5, d_t, generator=g))
    t_logits = torch.stack([t_w.head @ h for h in t_hidden[0]])  # the teacher's own logits from its hidden states
    t_rows = batch.teacher.gather_answer_rows(t_logits.unsqueeze(0))
    batch = dataclasses.replace(batch, student=dataclasses.replace(batch.student, hidden=s_hidden))
    teacher = TeacherOutputs(mask=batch.teacher.answer_mask, logits=t_rows, hidden_states=t_hidden)
    return batch, student_logits, teacher, s_w, t_w


def eta_reference(s_w, t_w, batch, student_logits, teacher, tau: float, ce: float) -> dict[str, float]:
    """Spec §17.1-17.2 with §17.5 (canonical ŷ map, unmapped pairs dropped) in float64, pairs by hand."""
    s_head, t_head = s_w.head.to(D), t_w.head.to(D)
    p_t2s = t_head[T_SHARED].T @ torch.linalg.pinv(s_head[S_SHARED].T)  # W_t^O pinv(W_s^O), d_t x d_s
    p_s2t = s_head[S_SHARED].T @ torch.linalg.pinv(t_head[T_SHARED].T)  # W_s^O pinv(W_t^O), d_s x d_t
    to_student = dict(zip(T_SHARED, S_SHARED))
    s_pos, t_pos = answer_positions(batch.student.labels[0]), answer_positions(batch.teacher.labels[0])
    pairs = [(2, 1), (3, 2)]  # (student answer index, teacher answer index): " world" and the EOS pair
    t2s_ce = t2s_kd = s2t_kd = 0.0
    used = agree = 0
    for j, k in pairs:
        z_t = teacher.logits[0, k].to(D)
        label = to_student.get(int(z_t.argmax()))
        if label is None:
            continue
        used += 1
        h_t, h_s = teacher.hidden_states[0, t_pos[k] - 1].to(D), batch.student.hidden[0, s_pos[j] - 1].to(D)
        t2s = (h_t @ p_t2s) @ s_head.T
        t2s_ce += float(-t2s.log_softmax(-1)[label])
        if int(t2s.argmax()) == label:
            agree += 1
            t2s_kd += kl(t2s, student_logits[0, s_pos[j] - 1], tau)
        s2t_kd += kl(z_t, (h_s @ p_s2t) @ t_head.T, tau)
    used_ = max(used, 1)
    kd = t2s_ce / used_ + t2s_kd / max(agree, 1) + s2t_kd / used_
    return {"loss": 0.5 * ce + 0.5 * kd, "kd": kd, "t2s_ce": t2s_ce / used_, "t2s_kd": t2s_kd / max(agree, 1),
            "s2t_kd": s2t_kd / used_, "aligned_share": used / 4, "agree": agree}


def eta_method(s_w, t_w, **config) -> DSKDv2ETA:
    method = prepared(DSKDv2ETA(DSKDv2ETAConfig(**config)), S_VOCAB, T_VOCAB)
    method.build_modules(s_w, t_w)
    return method


@pytest.mark.parametrize("seed", range(4))
def test_dskdv2_eta_equals_the_float64_reference(seed):
    batch, student_logits, teacher, s_w, t_w = eta_case(seed)
    out = eta_method(s_w, t_w, temperature=2.0).loss(batch, student_logits, teacher, torch.tensor(1.5))
    expected = eta_reference(s_w, t_w, batch, student_logits, teacher, 2.0, 1.5)
    for name in ("loss", "kd", "t2s_ce", "t2s_kd", "s2t_kd", "aligned_share"):
        assert float(out[name].detach()) == pytest.approx(expected[name], rel=1e-4, abs=1e-6), name


def test_dskdv2_eta_reference_covers_agreeing_and_dropped_pairs():
    """The seeds above include pairs whose t2s argmax is the label (t2s KD non-zero), batches where both pairs are
    used, and pairs whose ŷ has no student token ("Hello" or "z"), which are dropped."""
    refs = [eta_reference(s_w, t_w, b, z, t, 2.0, 1.0) for b, z, t, s_w, t_w in map(eta_case, range(4))]
    assert any(r["agree"] > 0 for r in refs)
    assert {r["aligned_share"] for r in refs} == {0.0, 0.25, 0.5}


def test_pseudo_inverse_projector_reproduces_the_teacher_logits_on_the_shared_vocabulary():
    """With |O| = 3 <= d_s = 4 the least-squares map is exact: P_t2s(h_t) read by the student head on O gives the
    teacher's logits on O."""
    _, _, teacher, s_w, t_w = eta_case(0, d_s=4, d_t=3)
    method = eta_method(s_w, t_w)
    h_t = teacher.hidden_states[0]
    projected = method.projectors["t2s"](h_t) @ s_w.head[S_SHARED].T
    assert torch.allclose(projected, h_t @ t_w.head[T_SHARED].T, atol=1e-4)


def test_identical_models_give_zero_t2s_and_s2t_kd():
    """Teacher = student (one vocabulary, one head, the same hidden states): both projections are the identity on
    the head's row space, so t2s reproduces the student's logits and s2t the teacher's."""
    vocab = eos_vocab(["a", "b", "c", "d"])
    batch = make_batch([["a", "b", "c"]], [["a", "b", "c"]], student_vocab=5, teacher_vocab=5, student_eos=True,
                       teacher_eos=True, student_ids=vocab.vocab, teacher_ids=vocab.vocab)
    g = torch.Generator().manual_seed(0)
    w = ModelWeights(torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g))
    rows = torch.randn(4, 3, generator=g)  # the hidden state at each answer row, the same on both sides
    hidden = {}
    for side in ("student", "teacher"):
        view = getattr(batch, side)
        hidden[side] = torch.randn(*view.input_ids.shape, 3, generator=g)
        hidden[side][0, view.answer_rows[0, :4]] = rows
    logits = hidden["student"] @ w.head.T
    batch = dataclasses.replace(batch, student=dataclasses.replace(batch.student, hidden=hidden["student"]))
    teacher = TeacherOutputs(mask=batch.teacher.answer_mask, logits=(rows @ w.head.T).unsqueeze(0),
                             hidden_states=hidden["teacher"])
    method = prepared(DSKDv2ETA(), vocab, vocab)
    method.build_modules(w, w)
    out = method.loss(batch, logits, teacher, torch.tensor(1.0))
    assert float(out["aligned_share"]) == 1.0  # every token, the EOS included, has its partner
    assert float(out["t2s_accuracy"]) == 1.0  # t2s argmax = ŷ everywhere, so t2s KD reads every row
    assert float(out["s2t_kd"]) == pytest.approx(0.0, abs=1e-5)
    assert float(out["t2s_kd"]) == pytest.approx(0.0, abs=1e-5)
