"""MultiLevelOT: the paper variant (``mlot``) and the code-faithful variant (``mlot-official``)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from methods.mlot import MLOT, MLOTConfig, MLOTOfficial, MLOTOfficialConfig
from tests.methods.helpers import answer_logits, make_batch, run_loss, widen

# --- the paper variant ---------------------------------------------------------------------------------------

TEACHER_ROWS = [[0.6, 0.3, 0.1], [0.1, 0.6, 0.3]]  # column sums (.7, .9, .4) -> columns 1, 0
STUDENT_ROWS = [[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]]  # column sums (.7, .45, .85) -> columns 2, 0
TEACHER_K = [[0.3, 0.6], [0.6, 0.1]]
STUDENT_K = [[0.25, 0.5], [0.6, 0.2]]
HAND = MLOTConfig(k=2, teacher_k=3, sinkhorn_iterations=300)  # converged, so the 2x2 closed form applies


def logits_of(*samples: list[list[float]]) -> torch.Tensor:
    return torch.tensor(list(samples)).log()


def tempered_ranked(rows: list[list[float]], tau: float, k: int) -> list[list[float]]:
    """SR + Tr of ``softmax(log p / tau) = p^(1/tau) / sum(p^(1/tau))`` over the FULL vocabulary of each row."""
    tempered = [[x ** (1 / tau) / sum(y ** (1 / tau) for y in row) for x in row] for row in rows]
    sums = [sum(row[v] for row in tempered) for v in range(len(rows[0]))]
    columns = sorted(range(len(sums)), key=lambda v: -sums[v])[:k]
    return [[row[v] for v in columns] for row in tempered]


def two_by_two_sinkhorn_cost(cost: list[list[float]], epsilon: float) -> float:
    """<P, C> of the converged entropic plan with marginals (1/2, 1/2): P = [[x, 1/2-x], [1/2-x, x]] and
    x^2 / (1/2-x)^2 = K11 K22 / (K12 K21)."""
    ratio = math.exp(-(cost[0][0] + cost[1][1] - cost[0][1] - cost[1][0]) / (2 * epsilon))
    x = ratio / (2 * (1 + ratio))
    return x * (cost[0][0] + cost[1][1]) + (0.5 - x) * (cost[0][1] + cost[1][0])


def test_paper_variant_by_hand():
    batch = make_batch([["a", "b"]], [["a", "b"]])
    out, _ = run_loss(MLOT(HAND), batch, logits_of(STUDENT_ROWS), logits_of(TEACHER_ROWS), ce=2.0)
    had = (0.05 + 0.1 + 0.0 + 0.1) / 2  # token mean of the rows' sum |t - s|
    sl = (-(0.3 * math.log(0.25) + 0.6 * math.log(0.5)) - (0.6 * math.log(0.6) + 0.1 * math.log(0.2))) / 2
    t2, s2 = tempered_ranked(TEACHER_ROWS, 2.0, 2), tempered_ranked(STUDENT_ROWS, 2.0, 2)
    cost = [[sum(abs(a - b) for a, b in zip(t, s)) for s in s2] for t in t2]
    sd = two_by_two_sinkhorn_cost(cost, 0.1)
    assert out["had"].item() == pytest.approx(had, abs=1e-6)
    assert out["sl"].item() == pytest.approx(sl, abs=1e-6)
    assert out["sd"].item() == pytest.approx(sd, abs=1e-6)
    assert out["loss"].item() == pytest.approx(2.0 + 0.15 * (had + 0.1 * sl + 0.1 * sd), abs=1e-6)


def test_paper_variant_had_and_sl_are_token_means_over_the_batch():
    # Sample 2: one row, identical on both sides -> HAD row 0. Token mean (.15 + .1 + 0) / 3, not (.125 + 0) / 2.
    batch = make_batch([["a", "b"], ["c"]], [["a", "b"], ["c"]])
    same = [0.2, 0.3, 0.5]
    student = logits_of(STUDENT_ROWS, [same, same])
    teacher = logits_of(TEACHER_ROWS, [same, same])
    out, _ = run_loss(MLOT(HAND), batch, student, teacher)
    assert out["had"].item() == pytest.approx(0.25 / 3, abs=1e-6)


def paper_reference(batch, student, teacher, cfg: MLOTConfig, paired_rows: bool = False) -> dict[str, float]:
    """MultiLevelOT as the paper writes it (spec §1.1), from the FULL answer-row logits, in float64: per sequence,
    p = softmax(z / tau) over the whole vocabulary, SR by column sums, Tr to k; HAD and SL at tau = 1 over the
    positional pairs (token means); SD at tau_SD with Sinkhorn's matrix scaling (N iterations, marginals 1/n)."""
    k = min(cfg.k, student.size(-1), teacher.size(-1))

    def ranked(logits: torch.Tensor, tau: float) -> torch.Tensor:
        p = torch.softmax(logits.double() / tau, -1)
        return p[:, p.sum(0).argsort(descending=True)[:k]]

    had = sl = pairs = 0.0
    sds = []
    for b in range(student.size(0)):
        n_s, n_t = int(batch.student.answer_mask[b].sum()), int(batch.teacher.answer_mask[b].sum())
        n = min(n_s, n_t)
        rows_s, rows_t = (n, n) if paired_rows else (n_s, n_t)
        s, t = ranked(student[b, :rows_s], 1.0), ranked(teacher[b, :rows_t], 1.0)
        had += float((t[:n] - s[:n]).abs().sum())
        sl -= float((t[:n] * s[:n].log()).sum())
        pairs += n
        s, t = ranked(student[b, :rows_s], cfg.sd_temperature), ranked(teacher[b, :rows_t], cfg.sd_temperature)
        cost = (t[:, None, :] - s[None, :, :]).abs().sum(-1)
        kernel = torch.exp(-cost / cfg.sinkhorn_epsilon)
        u, v = torch.ones(rows_t, dtype=torch.float64), torch.ones(rows_s, dtype=torch.float64)
        for _ in range(cfg.sinkhorn_iterations):
            u = (1 / rows_t) / (kernel @ v)
            v = (1 / rows_s) / (kernel.T @ u)
        sds.append(float((u[:, None] * kernel * v[None, :] * cost).sum()))
    return {"had": had / pairs, "sl": sl / pairs, "sd": sum(sds) / len(sds)}


def random_case(seed: int = 0, extra_rows: int = 0, teacher_vocab: int = 24):
    batch = make_batch([["He", "llo", " world"], ["a", "b"]], [["Hello", " world"], ["a", "b"]],
                       teacher_vocab=teacher_vocab, extra_rows=extra_rows)
    student = answer_logits(batch.student, 16, seed=seed)
    return batch, student, answer_logits(batch.teacher, teacher_vocab, seed=seed + 1)


PAPER = MLOTConfig(k=4, teacher_k=8)
OFFICIAL = MLOTOfficialConfig(k=4)
METHODS_UNDER_TEST = [MLOT(PAPER), MLOTOfficial(OFFICIAL)]
IDS = ["mlot", "mlot-official"]


def test_paper_variant_identical_inputs_give_zero_had_and_minimal_sd():
    batch = make_batch([["a", "b", "c"]], [["a", "b", "c"]], student_vocab=16, teacher_vocab=16, student_eos=False)
    same = answer_logits(batch.student, 16, scale=4.0)
    other = answer_logits(batch.student, 16, scale=4.0, seed=3)
    identical = run_loss(MLOT(PAPER), batch, same, same, cache_k=16)[0]
    different = run_loss(MLOT(PAPER), batch, other, same, cache_k=16)[0]
    assert identical["had"].item() == pytest.approx(0.0, abs=1e-6)
    assert identical["sd"] < 0.2 * different["sd"]


@pytest.mark.parametrize("cache_k", [None, 24], ids=["live", "cached-complete"])
@pytest.mark.parametrize("sequence_rows", ["all", "paired"])
@pytest.mark.parametrize("sd_temperature", [2.0, 1.0, 0.7])
def test_paper_variant_equals_a_full_vocabulary_reference(cache_k, sequence_rows, sd_temperature):
    # The cached teacher holds every entry (K = V_t = 24), so the top-K form loses nothing and must equal the
    # full-vocabulary quantity; sample 0 has 3 student and 2 teacher tokens (unequal lengths).
    cfg = dataclasses.replace(PAPER, teacher_k=24, sd_temperature=sd_temperature, sequence_rows=sequence_rows)
    batch, student, teacher = random_case()
    out = run_loss(MLOT(cfg), batch, student, teacher, cache_k=cache_k, temperatures=[sd_temperature])[0]
    expected = paper_reference(batch, student, teacher, cfg, paired_rows=sequence_rows == "paired")
    for term, value in expected.items():
        assert out[term].item() == pytest.approx(value, rel=1e-5), term


def test_the_two_readings_of_unequal_lengths_differ_only_when_lengths_differ():
    # Both readings equal their references above; here: the student's third row moves SD (it is in the plan or
    # not), and with equal lengths the readings coincide.
    batch, student, teacher = random_case()  # sample 0: 3 student vs 2 teacher tokens
    paired = MLOT(dataclasses.replace(PAPER, sequence_rows="paired"))
    all_rows, first_rows = (run_loss(method, batch, student, teacher)[0]["sd"].item() for method in (MLOT(PAPER), paired))
    assert abs(all_rows - first_rows) > 1e-3
    equal = make_batch([["a", "b"], ["c"]], [["a", "b"], ["c"]])
    student, teacher = answer_logits(equal.student, 16, seed=3), answer_logits(equal.teacher, 24, seed=4)
    both = [run_loss(method, equal, student, teacher)[0]["loss"].item() for method in (MLOT(PAPER), paired)]
    assert both[0] == pytest.approx(both[1], abs=1e-7)


def test_paper_variant_clips_k_to_the_smaller_vocabulary():
    batch, student, teacher = random_case()  # vocabularies 16 (student) and 24 (teacher), k = 50, K = 100
    cfg = MLOTConfig()
    expected = paper_reference(batch, student, teacher, cfg)  # Tr to min(k, V_s, V_t) = 16 columns
    for cache_k in (None, 24):
        out = run_loss(MLOT(cfg), batch, student, teacher, cache_k=cache_k)[0]
        for term, value in expected.items():
            assert out[term].item() == pytest.approx(value, rel=1e-5), term


def test_paper_variant_needs_the_teacher_normaliser_at_tau_sd():
    batch, student, teacher = random_case()
    assert MLOT(PAPER).teacher_request().temperatures == (1.0, 2.0)
    assert MLOT(dataclasses.replace(PAPER, sd_temperature=1.0)).teacher_request().temperatures == (1.0,)
    with pytest.raises(ValueError, match=r"no log-normaliser at temperature 2.0 \(it holds \[1.0, 3.0\]\)"):
        run_loss(MLOT(PAPER), batch, student, teacher, cache_k=8, temperatures=[3.0])


def test_paper_variant_cached_and_live_teacher_agree():
    batch, student, teacher = random_case()
    live = run_loss(MLOT(PAPER), batch, student, teacher)[0]["loss"]
    cached = run_loss(MLOT(PAPER), batch, student, teacher, cache_k=8)[0]["loss"]
    assert torch.allclose(live, cached, atol=1e-6)


def test_paper_variant_gradient_reaches_every_valid_student_row():
    batch, student, teacher = random_case()
    out, logits = run_loss(MLOT(PAPER), batch, student, teacher)
    out["loss"].backward()
    rows = batch.student.answer_rows
    assert logits.grad[0, rows[0, :3]].abs().sum(-1).min() > 0  # SD reaches " world", which HAD/SL do not
    assert logits.grad[0, rows[0, 3]].abs().sum() == 0  # the EOS row is not distilled
    assert logits.grad[0, 0].abs().sum() == 0  # a prompt row


def test_paper_variant_offsets_alignment_restricts_had_and_sl_to_identical_spans():
    # Sample 0: only " world" is shared (student row 2, teacher row 1); sample 1 pairs "a" and "b".
    batch, student, teacher = random_case()
    offsets = run_loss(MLOT(dataclasses.replace(PAPER, alignment="offsets")), batch, student, teacher)[0]
    positional = run_loss(MLOT(PAPER), batch, student, teacher)[0]
    assert offsets["coverage"].item() == pytest.approx(3 / 5) and positional["coverage"].item() == pytest.approx(4 / 5)
    assert offsets["had"] != positional["had"]
    assert offsets["sd"].item() == pytest.approx(positional["sd"].item())  # SD never uses the alignment


def test_paper_config_and_contract():
    with pytest.raises(ValueError, match="unknown config key"):
        MLOTConfig.from_dict({"lambda": 0.1})
    with pytest.raises(ValueError, match=r"^k=60: expected an integer <= teacher_k \(50\)$"):
        MLOTConfig(k=60, teacher_k=50)
    default = MLOTConfig()
    assert (default.k, default.alpha, default.beta, default.gamma) == (50, 0.15, 0.1, 0.1)
    assert (default.sd_temperature, default.sinkhorn_epsilon, default.sinkhorn_iterations) == (2.0, 0.1, 20)
    assert MLOT().teacher_request().needs == "topk_logits"
    assert MLOT(MLOTConfig(teacher_k=64)).teacher_request().topk == 64


# --- properties shared by both variants ----------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS_UNDER_TEST, ids=IDS)
def test_invariant_to_permuting_either_vocabulary(method):
    batch, student, teacher = random_case()
    base = run_loss(method, batch, student, teacher)[0]
    permuted_s = run_loss(method, batch, student[..., torch.randperm(16)], teacher)[0]
    permuted_t = run_loss(method, batch, student, teacher[..., torch.randperm(24)])[0]
    for term in ("had", "sl", "sd", "loss"):
        assert base[term].item() == pytest.approx(permuted_s[term].item(), abs=1e-6)
        assert base[term].item() == pytest.approx(permuted_t[term].item(), abs=1e-6)


@pytest.mark.parametrize("method", METHODS_UNDER_TEST, ids=IDS)
def test_padded_positions_cannot_change_the_loss(method):
    batch, student, teacher = random_case()
    wide_batch = random_case(extra_rows=3)[0]
    base = run_loss(method, batch, student, teacher)[0]["loss"]
    wide = run_loss(method, wide_batch, widen(student, 3), widen(teacher, 3))[0]["loss"]
    assert torch.allclose(base, wide, atol=1e-6)


@pytest.mark.parametrize("method", METHODS_UNDER_TEST, ids=IDS)
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_extreme_logits_give_finite_values_and_gradients(method, scale):
    batch, student, teacher = random_case()
    out, logits = run_loss(method, batch, scale * student.sign(), scale * teacher)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("method", METHODS_UNDER_TEST, ids=IDS)
def test_bf16_inputs_match_float32(method):
    # Each KD term on its own (the total also holds CE = 2.0, which bf16 logits leave unchanged). The inputs are
    # rounded to bf16 (~0.4 % per logit); the math then runs in float32, so each term moves by about that much.
    batch, student, teacher = random_case()
    reference = run_loss(method, batch, student, teacher)[0]
    out, logits = run_loss(method, batch, student.bfloat16(), teacher.bfloat16())
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    for term in ("had", "sl", "sd"):
        assert out[term].item() == pytest.approx(reference[term].item(), rel=2e-2), term
    kd = out["loss"].item() - 2.0
    assert kd == pytest.approx(reference["loss"].item() - 2.0, rel=1e-2)


# --- the official variant: numbers derived by hand from spec §1.2 ------------------------------------------


def softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    top = max(row)
    weights = [math.exp((x - top) / temperature) for x in row]
    return [w / sum(weights) for w in weights]


def official_by_hand(student: list[list[list[float]]], teacher: list[list[list[float]]], ce: float,
                     cfg: MLOTOfficialConfig) -> dict[str, float]:
    """Spec §1.2 step by step on Python lists; ``student[b]`` / ``teacher[b]`` hold only the valid answer rows."""

    def probabilities(rows: list[list[float]], temperature: float, length: int) -> list[list[float]]:
        out = []
        for row in rows:
            if cfg.std_scaling:  # step 1: / (unbiased std + eps), no mean subtraction
                mean = sum(row) / len(row)
                std = math.sqrt(sum((x - mean) ** 2 for x in row) / (len(row) - 1))
                row = [x / (std + cfg.std_epsilon) for x in row]
            out.append(softmax(row, temperature))
        return out + [[0.0] * len(rows[0])] * (length - len(rows))  # step 2: zero rows up to L

    def ranked(side: list[list[list[float]]]) -> list[list[list[float]]]:  # step 3
        vocab = len(side[0][0])
        def order(samples):
            sums = [sum(row[v] for rows in samples for row in rows) for v in range(vocab)]
            return sorted(range(vocab), key=lambda v: -sums[v])[: cfg.k]
        if cfg.ranking == "tokenwise":  # each row sorted on its own (zero rows stay zero), first k
            return [[sorted(row, reverse=True)[: cfg.k] for row in rows] for rows in side]
        shared = order(side)
        return [[[row[v] for v in (shared if cfg.ranking == "batch" else order([rows]))] for row in rows]
                for rows in side]

    length = max(len(rows) for rows in student + teacher)
    s = ranked([probabilities(rows, cfg.student_temperature, length) for rows in student])
    t = ranked([probabilities(rows, cfg.teacher_temperature, length) for rows in teacher])
    width = max(len(s[0][0]), len(t[0][0]))  # the code zero-pads the smaller side to a common width
    s, t = ([[row + [0.0] * (width - len(row)) for row in rows] for rows in side] for side in (s, t))
    batch = range(len(student))
    valid = [min(len(student[b]), len(teacher[b])) for b in batch]

    had = sum(sum(sum(abs(x - y) for x, y in zip(s[b][j], t[b][j])) for j in range(valid[b])) / valid[b]
              for b in batch) / len(student)

    sl_rows = []
    for b in batch:
        for j in range(length if cfg.padded_rows else valid[b]):
            weights, logged = (s[b][j], t[b][j]) if cfg.sl_reversed else (t[b][j], s[b][j])
            if cfg.sl_softmax:
                weights, logged = softmax(weights), softmax(logged)
            sl_rows.append(-sum(w * math.log(max(q, 1e-30)) for w, q in zip(weights, logged)))
    sl = sum(sl_rows) / len(sl_rows)

    sd = 0.0
    for b in batch:
        t_rows = t[b] if cfg.padded_rows else t[b][: len(teacher[b])]
        s_rows = s[b] if cfg.padded_rows else s[b][: len(student[b])]
        pt = [softmax(row, cfg.sd_temperature) for row in t_rows]
        ps = [softmax(row, cfg.sd_temperature) for row in s_rows]
        cost = [[sum(abs(x - y) for x, y in zip(a, c)) for c in ps] for a in pt]
        plan = [[math.exp(-value / cfg.sinkhorn_regularization) for value in row] for row in cost]
        for _ in range(cfg.sinkhorn_iterations):
            plan = [[value / sum(row) for value in row] for row in plan]
            columns = [sum(row[c] for row in plan) for c in range(len(ps))]
            plan = [[value / columns[c] for c, value in enumerate(row)] for row in plan]
        sd += cfg.sd_scale * sum(p * c for prow, crow in zip(plan, cost) for p, c in zip(prow, crow))
    loss = cfg.ce_weight * ce + cfg.distil_factor * (had + cfg.sl_weight * sl + cfg.sd_weight * sd)
    return {"had": had, "sl": sl, "sd": sd, "loss": loss}


QUIRKS_OFF = dict(std_scaling=False, ranking="sequence", sl_softmax=False, sl_reversed=False, padded_rows=False)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"ranking": "tokenwise"}, QUIRKS_OFF, {"k": 7, "sinkhorn_iterations": 1}, {"sd_temperature": 0.05}],
    ids=["code", "tokenwise", "quirks-off", "k-beyond-vocab", "sharp-sd"],
)
def test_official_variant_matches_spec_by_hand(overrides):
    # Student: 3 and 1 text rows (+ EOS); teacher: 2 and 2 rows (an empty-string token stands in for a second
    # teacher row) -> L = 3, padded rows on both sides.
    batch = make_batch([["a", "b", "c"], ["d"]], [["ab", "c"], ["d", ""]], student_vocab=5, teacher_vocab=6)
    student = answer_logits(batch.student, 5, seed=3)
    teacher = answer_logits(batch.teacher, 6, seed=4)
    cfg = dataclasses.replace(MLOTOfficialConfig(k=3), **overrides)
    out, _ = run_loss(MLOTOfficial(cfg), batch, student, teacher, ce=1.25)
    s_rows = [student[0, :3].tolist(), student[1, :1].tolist()]
    t_rows = [teacher[0, :2].tolist(), teacher[1, :2].tolist()]
    expected = official_by_hand(s_rows, t_rows, 1.25, cfg)
    for term, value in expected.items():
        assert out[term].item() == pytest.approx(value, rel=1e-5), term


@pytest.mark.parametrize("ranking, had", [("batch", 0.45), ("tokenwise", 0.1)])
def test_official_rankings_on_a_hand_case_where_they_differ(ranking, had):
    # Commit 712cfb4 (batch): one column order from the batch's column sums, student (.7, .5, .8) -> columns 2, 0
    # and teacher (.4, .5, 1.1) -> columns 2, 1; HAD = (.4 + .3 + .1 + .1) / 2. Commit d8d298f (tokenwise): each row's
    # own two largest values, student (.6, .3), (.7, .2) and teacher (.5, .3), (.6, .2); HAD = (.1 + .1) / 2.
    batch = make_batch([["a"], ["b"]], [["a"], ["b"]], student_vocab=3, teacher_vocab=3)
    student = logits_of([[0.6, 0.3, 0.1]], [[0.1, 0.2, 0.7]])
    teacher = logits_of([[0.2, 0.3, 0.5]], [[0.2, 0.2, 0.6]])
    out = run_loss(MLOTOfficial(MLOTOfficialConfig(k=2, std_scaling=False, ranking=ranking)), batch, student, teacher)[0]
    assert out["had"].item() == pytest.approx(had, abs=1e-6)


def test_official_config_and_contract():
    with pytest.raises(ValueError, match="unknown config key"):
        MLOTOfficialConfig.from_dict({"alpha": 0.15})
    with pytest.raises(ValueError, match="^ranking='row': expected one of batch, tokenwise, sequence$"):
        MLOTOfficialConfig(ranking="row")
    default = MLOTOfficialConfig()
    assert default.ranking == "batch"
    assert (default.k, default.sinkhorn_iterations, default.sd_scale, default.distil_factor) == (50, 10, 0.001, 1.5)
    assert MLOTOfficial().teacher_request().needs == "full_logits"
