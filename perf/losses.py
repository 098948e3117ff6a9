"""Values, speed and memory of the KD losses (ULD, MultiLevelOT) against independent full-vocabulary references,
and value and speed of the byte-aligned losses (GOLD, ALM, eta-kl).

Run from the repository root::

    python -m perf.losses [--device cpu|cuda] [--repeats N] [--quick] [--threads N]

1. Values, on "peaked" and on "flat" logits. Every variant (ULD top-k at k = 100 and 1,000 and exact, at tau = 1
   and 2; ``mlot`` from the cached top-100 and from live logits, with both readings of unequal lengths;
   ``mlot-official`` with the batch and the tokenwise ranking) against a reference written below from the formulas,
   on the FULL vocabularies, sharing no code with ``methods/``: each term, the reference's, the relative difference.
   For ULD top-k the difference is the lower bound's gap; for ``mlot`` against the full-vocabulary reference it is
   what the teacher's top-K loses (columns outside a row's top-100 count 0), and a second reference that truncates
   the teacher the same way checks the implementation itself to float precision.
2. Cost, on peaked logits: the median forward+backward time (into the student logits) and the peak memory of each
   loss and of its reference, the speed-up, and the loss time as a share of a forward+backward of a
   SmolLM2-135M-shaped student (a random ``LlamaConfig`` model, nothing downloaded) on the same batch; ULD exact
   against top-k. Timings on a shared CPU are noisy: compare ratios within one run only.

3. The byte-aligned losses on a synthetic pair at the same shapes (``aligned_inputs``): both sides write the same
   answer text, the teacher merging 8 pairs of student tokens per answer into one token (so 128 student tokens are
   120 teacher tokens, in 112 one-to-one groups and 8 two-to-one groups), every fourth token starting with a space.
   ``gold`` (k = 100, from the cache and from live logits) against ``gold`` with k = the teacher's vocabulary (the
   full sort of TRL: the top-k + tail form is its lower bound); ``alm`` and ``eta-kl`` from live logits and from the
   cache (``alm`` exact; ``eta-kl signal=topk`` a lower bound of the live KL). Median forward+backward time, and its
   share of the student model's.
4. The projection family on the same synthetic pair (cost only): ``dskd-cma`` and ``dskdv2-eta`` with random hidden
   states, embeddings and heads (teacher hidden size 896, Qwen2.5-0.5B), and ``xtoken`` (P-KL and gold) with the
   exact-map projection of the pair; forward+backward time (projectors included) and its share of the student's.
   Their values are checked against float64 references in ``tests/methods/test_dskd.py`` and ``test_xtoken.py``.

Published shapes: batch 2, 128 student answer tokens (120 on the teacher side, a different tokenizer; the second
sample 3 tokens shorter on both sides), student vocabulary 49,152 (SmolLM2), teacher vocabulary 151,936 (Qwen2.5).
"Peaked" logits are like a language model's: N(0, 2^2) plus 8 boosted candidates per row (+14 down to +7): top-1
~0.6, top-100 ~0.90 (student) / ~0.79 (teacher) of the mass. "Flat" logits are N(0, 1): no token stands out.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the allocation before the call. On CPU (tracemalloc does
not see torch's allocator), the peak resident set size above the RSS before the call: Linux ``VmHWM`` from
``/proc/self/status``, reset before each call by writing 5 to ``/proc/self/clear_refs``. Memory is measured first, in
its own pass, with glibc's mmap threshold pinned to 128 KiB (``mallopt``) from the start: otherwise freed heap
memory that a later call reuses would not show in its peak. The timings follow with the threshold at 32 MiB.
When other processes keep the cores busy, every multi-threaded op waits for all its threads to be scheduled (~8 ms
per op measured here, against 0.06 ms with one thread), which penalises the many small ops of Sinkhorn;
``--threads 1`` gives steadier numbers then.
"""
from __future__ import annotations

import argparse
import ctypes
import statistics
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.engine.memory import PeakMemory
from methods.alm import ALM
from methods.batch import DistillBatch, TeacherOutputs, TokenView, log_normalisers
from methods.dskd_cma import DSKDCMA
from methods.dskdv2_eta import DSKDv2ETA
from methods.eta_kl import EtaKL, EtaKLConfig
from methods.gold import GOLD, GOLDConfig
from methods.mlot import MLOT, MLOTConfig, MLOTOfficial, MLOTOfficialConfig
from methods.model_parts import ModelWeights
from methods.projection_matrix import Projection
from methods.spans import TokenizerPair
from methods.token_text import VocabInfo
from methods.uld import ULD, ULDConfig
from methods.vocab_subsets import teacher_subset
from methods.xtoken import XToken, XTokenConfig

Terms = dict[str, Tensor]
Run = Callable[[Tensor], Terms]


@dataclass(frozen=True)
class Shapes:
    batch: int
    prompt: int
    student_answer: int
    teacher_answer: int
    student_vocab: int
    teacher_vocab: int
    # Student model (SmolLM2-135M at full size).
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int


FULL = Shapes(2, 16, 128, 120, 49_152, 151_936, hidden=576, layers=30, heads=9, kv_heads=3, intermediate=1536)
QUICK = Shapes(2, 4, 12, 10, 512, 1024, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128)
CACHE_K = 100  # the default teacher-cache k
TEACHER_HIDDEN = 896  # Qwen2.5-0.5B, for the projection family's teacher side
CACHE_TEMPERATURES = (2.0,)  # besides 1: the temperatures the variants below request


# --- inputs ----------------------------------------------------------------------------------------------------


def peaked_logits(*shape: int, generator: torch.Generator) -> Tensor:
    logits = 2.0 * torch.randn(*shape, generator=generator)
    candidates = torch.randint(shape[-1], (*shape[:-1], 8), generator=generator)
    return logits.scatter_add_(-1, candidates, torch.linspace(14.0, 7.0, 8).expand_as(candidates).contiguous())


def flat_logits(*shape: int, generator: torch.Generator) -> Tensor:
    return torch.randn(*shape, generator=generator)


LOGITS = {"peaked": peaked_logits, "flat": flat_logits}


def token_view(shapes: Shapes, answer: int, vocab: int, eos: bool, generator: torch.Generator) -> TokenView:
    """Right-padded view; sample b's answer is ``3 b`` tokens shorter than ``answer``."""
    width = answer + int(eos)
    lengths = [answer - 3 * b for b in range(shapes.batch)]
    input_ids = torch.randint(vocab, (shapes.batch, shapes.prompt + width), generator=generator)
    labels = torch.full_like(input_ids, -100)
    answer_mask = torch.zeros(shapes.batch, width, dtype=torch.bool)
    for b, n in enumerate(lengths):
        answer = slice(shapes.prompt, shapes.prompt + n + int(eos))
        labels[b, answer] = input_ids[b, answer]
        answer_mask[b, :n] = True
    answer_rows = (shapes.prompt - 1 + torch.arange(width)).expand(shapes.batch, -1).contiguous()
    starts = 4 * torch.arange(width).expand(shapes.batch, -1)
    offsets = torch.where(answer_mask.unsqueeze(-1), torch.stack([starts, starts + 4], -1), -1)
    return TokenView(
        input_ids, torch.ones_like(input_ids), labels, answer_rows,
        input_ids[:, shapes.prompt :], answer_mask, offsets,
    )


@dataclass
class Inputs:
    batch: DistillBatch
    student_logits: Tensor  # [B, L_s, V_s]
    teacher_logits: Tensor  # [B, A_t, V_t] at the teacher's answer rows
    live: TeacherOutputs
    cached: TeacherOutputs  # what the teacher cache serves: top-100 logits and ids, logsumexp(z / tau)
    ce: Tensor


def make_inputs(shapes: Shapes, kind: str, device: torch.device) -> Inputs:
    generator = torch.Generator().manual_seed(0)
    student = token_view(shapes, shapes.student_answer, shapes.student_vocab, True, generator)
    teacher = token_view(shapes, shapes.teacher_answer, shapes.teacher_vocab, False, generator)
    batch = DistillBatch([f"ex{b}" for b in range(shapes.batch)], [""] * shapes.batch, student, teacher).to(device)
    student_logits = LOGITS[kind](*student.input_ids.shape, shapes.student_vocab, generator=generator).to(device)
    teacher_logits = LOGITS[kind](*teacher.answer_mask.shape, shapes.teacher_vocab, generator=generator).to(device)
    mask = batch.teacher.answer_mask
    values, ids = torch.topk(teacher_logits, CACHE_K, dim=-1)
    cached = TeacherOutputs(mask, topk_logits=values, topk_ids=ids, logsumexp=torch.logsumexp(teacher_logits, -1),
                            tempered_logsumexp=log_normalisers(teacher_logits, CACHE_TEMPERATURES),
                            vocab_size=shapes.teacher_vocab)
    live = TeacherOutputs(mask, logits=teacher_logits, vocab_size=shapes.teacher_vocab)
    return Inputs(batch, student_logits, teacher_logits, live, cached, torch.tensor(2.0, device=device))


# --- independent references (written from the formulas; nothing from methods/) -----------------------------------


def lengths(view: TokenView) -> list[int]:
    return view.answer_mask.sum(1).tolist()


def log_probs(logits: Tensor, temperature: float, dtype: torch.dtype) -> Tensor:
    """Full-vocabulary log-softmax of ``logits / temperature`` as ``x - logsumexp(x)`` in ``dtype`` (float64 for
    values; float32 when the reference is timed against the methods)."""
    logits = logits.to(dtype) / temperature
    return logits - torch.logsumexp(logits, -1, keepdim=True)


def reference_uld(inputs: Inputs, student_logits: Tensor, temperature: float, dtype: torch.dtype) -> Terms:
    """ULD as published: softmax(z / tau) over each full vocabulary, full sort, zero-pad, positional rows, mean, mean."""
    batch = inputs.batch
    s = log_probs(batch.student.gather_answer_rows(student_logits), temperature, dtype).exp()
    t = log_probs(inputs.teacher_logits, temperature, dtype).exp()
    s, t = s.sort(-1, descending=True).values, t.sort(-1, descending=True).values
    size = max(s.size(-1), t.size(-1))
    s, t = F.pad(s, (0, size - s.size(-1))), F.pad(t, (0, size - t.size(-1)))
    per_sample = []
    for b, (n_s, n_t) in enumerate(zip(lengths(batch.student), lengths(batch.teacher))):
        n = min(n_s, n_t)
        per_sample.append((s[b, :n] - t[b, :n]).abs().sum(-1).mean())
    uld = torch.stack(per_sample).mean()
    return {"loss": inputs.ce + ULDConfig.weight * uld, "uld": uld}


def reference_mlot(
    inputs: Inputs, student_logits: Tensor, cfg: MLOTConfig, dtype: torch.dtype, teacher_k: int | None = None
) -> Terms:
    """The paper's MultiLevelOT on full vocabularies (spec §1.1), per sequence: p = softmax(z / tau) over the whole
    vocabulary, columns ranked by their sums over the sequence's rows (argsort), the first k kept; HAD and SL at
    tau = 1 over the first min(n_s, n_t) rows (token means over the batch); SD at tau_SD between all rows (or, with
    ``cfg.sequence_rows == "paired"``, the first min(n_s, n_t)) by Sinkhorn's matrix scaling with marginals 1/n,
    mean over sequences. ``teacher_k``: keep only each teacher row's ``teacher_k`` largest entries (as a top-K cache
    does); None: every entry."""
    batch = inputs.batch
    student_rows = batch.student.gather_answer_rows(student_logits)
    k = min(cfg.k, student_rows.size(-1), inputs.teacher_logits.size(-1))

    def teacher_probs(logits: Tensor, tau: float) -> Tensor:
        p = log_probs(logits, tau, dtype).exp()
        if teacher_k is None:
            return p
        kept = p.topk(teacher_k, -1).indices
        return torch.zeros_like(p).scatter(-1, kept, p.gather(-1, kept))

    def ranked(p: Tensor) -> Tensor:
        return p[:, p.sum(0).argsort(descending=True)[:k]]

    had_sum = sl_sum = 0.0
    pairs, sds = 0, []
    for b, (n_s, n_t) in enumerate(zip(lengths(batch.student), lengths(batch.teacher))):
        n = min(n_s, n_t)
        rows_s, rows_t = (n, n) if cfg.sequence_rows == "paired" else (n_s, n_t)
        t = ranked(teacher_probs(inputs.teacher_logits[b, :rows_t], 1.0))
        log_s = log_probs(student_rows[b, :rows_s], 1.0, dtype)
        log_s = log_s[:, log_s.exp().sum(0).argsort(descending=True)[:k]]
        had_sum = had_sum + (t[:n] - log_s[:n].exp()).abs().sum()
        sl_sum = sl_sum - (t[:n] * log_s[:n]).sum()
        pairs += n
        t = ranked(teacher_probs(inputs.teacher_logits[b, :rows_t], cfg.sd_temperature))
        s = ranked(log_probs(student_rows[b, :rows_s], cfg.sd_temperature, dtype).exp())
        cost = torch.cdist(t, s, p=1)
        kernel = torch.exp(-cost / cfg.sinkhorn_epsilon)
        u, v = torch.ones_like(cost[:, 0]), torch.ones_like(cost[0])
        for _ in range(cfg.sinkhorn_iterations):
            u = (1 / rows_t) / (kernel @ v)
            v = (1 / rows_s) / (kernel.T @ u)
        sds.append((u[:, None] * kernel * v[None, :] * cost).sum())
    had, sl, sd = had_sum / pairs, sl_sum / pairs, torch.stack(sds).mean()
    loss = inputs.ce + cfg.alpha * (had + cfg.beta * sl + cfg.gamma * sd)
    return {"loss": loss, "had": had, "sl": sl, "sd": sd}


def reference_mlot_official(inputs: Inputs, student_logits: Tensor, cfg: MLOTOfficialConfig, dtype: torch.dtype) -> Terms:
    """The official steps transcribed literally (spec §1.2): std scaling, softmax, zero rows up to L; ``tokenwise``
    (d8d298f): sort every row of the [B, L, V] tensor first; then ``improved_sort`` (a permuted copy of the whole
    tensor by the argsort of the batch column sums), [:k]; plain Sinkhorn per sequence."""
    batch = inputs.batch
    n_s, n_t = lengths(batch.student), lengths(batch.teacher)
    rows = max(n_s + n_t)

    def left_justified(logits: Tensor, counts: list[int]) -> Tensor:
        logits = logits.to(dtype) / (logits.to(dtype).std(-1, keepdim=True) + cfg.std_epsilon)
        out = [torch.cat([log_probs(logits[b, :n], 1.0, dtype).exp(), logits.new_zeros(rows - n, logits.size(-1))])
               for b, n in enumerate(counts)]
        return torch.stack(out)

    def improved_sort(p: Tensor) -> Tensor:
        if cfg.ranking == "tokenwise":
            p = p.sort(-1, descending=True).values
        return p[:, :, p.sum((0, 1)).argsort(descending=True)][:, :, : cfg.k]

    s = improved_sort(left_justified(batch.student.gather_answer_rows(student_logits), n_s))
    t = improved_sort(left_justified(inputs.teacher_logits, n_t))
    had = torch.stack([(s[b, :n] - t[b, :n]).abs().sum(-1).mean() for b, n in enumerate(map(min, n_s, n_t))]).mean()
    sl = -(torch.softmax(s, -1) * torch.log_softmax(t, -1)).sum(-1).mean()
    sd = torch.zeros((), dtype=dtype, device=s.device)
    for b in range(s.size(0)):
        p_t, p_s = torch.softmax(t[b] / cfg.sd_temperature, -1), torch.softmax(s[b] / cfg.sd_temperature, -1)
        cost = torch.cdist(p_t, p_s, p=1)
        plan = torch.exp(-cost / cfg.sinkhorn_regularization)
        for _ in range(cfg.sinkhorn_iterations):
            plan = plan / plan.sum(1, keepdim=True)
            plan = plan / plan.sum(0, keepdim=True)
        sd = sd + cfg.sd_scale * (plan * cost).sum()
    loss = inputs.ce + cfg.distil_factor * (had + cfg.sl_weight * sl + cfg.sd_weight * sd)
    return {"loss": loss, "had": had, "sl": sl, "sd": sd}


# --- the variants and their references ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    method: str  # the method and the options that differ from its defaults
    teacher: str  # "cached top-100" or "live logits"
    reference: str  # a key of references()
    run: Run


def references(inputs: Inputs, dtype: torch.dtype) -> dict[str, Run]:
    """The references by name (functions of the student logits), computing in ``dtype``."""
    paper, paired = MLOTConfig(), MLOTConfig(sequence_rows="paired")
    return {
        "full-sort ULD, tau 1": lambda z: reference_uld(inputs, z, 1.0, dtype),
        "full-sort ULD, tau 2": lambda z: reference_uld(inputs, z, 2.0, dtype),
        "paper, full vocabularies": lambda z: reference_mlot(inputs, z, paper, dtype),
        f"paper, teacher top-{CACHE_K}": lambda z: reference_mlot(inputs, z, paper, dtype, teacher_k=CACHE_K),
        "paper, paired rows, full vocabularies": lambda z: reference_mlot(inputs, z, paired, dtype),
        "literal code, batch ranking": lambda z: reference_mlot_official(inputs, z, MLOTOfficialConfig(), dtype),
        "literal code, tokenwise ranking": lambda z: reference_mlot_official(
            inputs, z, MLOTOfficialConfig(ranking="tokenwise"), dtype),
    }


def variants(inputs: Inputs) -> list[Variant]:
    batch, ce = inputs.batch, inputs.ce
    cached, live = f"cached top-{CACHE_K}", "live logits"
    forms = {cached: inputs.cached, live: inputs.live}

    def variant(label: str, method, teacher: str, reference: str) -> Variant:
        return Variant(label, teacher, reference, lambda z: method.loss(batch, z, forms[teacher], ce))

    uld, uld_1000, uld_exact = ULD(), ULD(ULDConfig(k=1000)), ULD(ULDConfig(mode="exact"))
    uld_2, uld_exact_2 = ULD(ULDConfig(temperature=2.0)), ULD(ULDConfig(mode="exact", temperature=2.0))
    mlot, mlot_paired = MLOT(), MLOT(MLOTConfig(sequence_rows="paired"))
    batch_ranked, tokenwise = MLOTOfficial(), MLOTOfficial(MLOTOfficialConfig(ranking="tokenwise"))
    return [
        variant("uld topk k=100", uld, cached, "full-sort ULD, tau 1"),
        variant("uld topk k=100", uld, live, "full-sort ULD, tau 1"),
        variant("uld topk k=1000", uld_1000, live, "full-sort ULD, tau 1"),
        variant("uld exact", uld_exact, live, "full-sort ULD, tau 1"),
        variant("uld topk k=100 tau=2", uld_2, cached, "full-sort ULD, tau 2"),
        variant("uld exact tau=2", uld_exact_2, live, "full-sort ULD, tau 2"),
        variant("mlot", mlot, cached, "paper, full vocabularies"),
        variant("mlot", mlot, cached, f"paper, teacher top-{CACHE_K}"),
        variant("mlot", mlot, live, f"paper, teacher top-{CACHE_K}"),
        variant("mlot sequence_rows=paired", mlot_paired, cached, "paper, paired rows, full vocabularies"),
        variant("mlot-official ranking=batch", batch_ranked, live, "literal code, batch ranking"),
        variant("mlot-official ranking=tokenwise", tokenwise, live, "literal code, tokenwise ranking"),
    ]


def timed_runs(inputs: Inputs) -> dict[str, tuple[Run, str]]:
    """What the cost table times: each loss (ULD top-k without the gap log, which runs the exact form besides) and
    the reference it is compared with."""
    batch, ce = inputs.batch, inputs.ce
    uld, uld_exact = ULD(ULDConfig(log_gap=False)), ULD(ULDConfig(mode="exact"))
    mlot, official = MLOT(), MLOTOfficial()
    return {
        f"uld topk, cached top-{CACHE_K}": (lambda z: uld.loss(batch, z, inputs.cached, ce), "full-sort ULD, tau 1"),
        "uld exact, live logits": (lambda z: uld_exact.loss(batch, z, inputs.live, ce), "full-sort ULD, tau 1"),
        f"mlot, cached top-{CACHE_K}": (lambda z: mlot.loss(batch, z, inputs.cached, ce), "paper, full vocabularies"),
        "mlot, live logits": (lambda z: mlot.loss(batch, z, inputs.live, ce), "paper, full vocabularies"),
        "mlot-official, live logits": (lambda z: official.loss(batch, z, inputs.live, ce), "literal code, batch ranking"),
    }


# --- measurement -------------------------------------------------------------------------------------------------


def timed(run: Run, student_logits: Tensor, repeats: int) -> float:
    """Median forward+backward time of ``run`` over ``repeats`` calls after one warm-up."""
    seconds = []
    for attempt in range(repeats + 1):
        leaf = student_logits.detach().requires_grad_()
        start = time.perf_counter()
        run(leaf)["loss"].backward()
        if leaf.device.type == "cuda":
            torch.cuda.synchronize()
        if attempt:
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def set_mmap_threshold(nbytes: int) -> None:
    """glibc serves allocations of ``nbytes`` or more with mmap, so they go back to the OS when freed (setting
    M_MMAP_THRESHOLD, -3, explicitly also stops glibc from raising it after frees). A small threshold set before
    anything is allocated lets peak RSS see each call's own allocations instead of reused heap memory."""
    ctypes.CDLL("libc.so.6").mallopt(-3, nbytes)


def peak_memory_mb(run: Run, student_logits: Tensor) -> float:
    """Peak memory of one forward+backward of ``run`` (after a warm-up call) above the level before it."""
    for _ in range(2):
        leaf = student_logits.detach().requires_grad_()
        memory = PeakMemory(student_logits.device)
        run(leaf)["loss"].backward()
        del leaf
    return memory.peak_mb() - memory.base_mb


def student_model_seconds(shapes: Shapes, inputs: Inputs, repeats: int) -> float:
    """Forward+backward of a random model with SmolLM2-135M's shape on the student side of the batch."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=shapes.student_vocab, hidden_size=shapes.hidden, num_hidden_layers=shapes.layers,
        num_attention_heads=shapes.heads, num_key_value_heads=shapes.kv_heads, intermediate_size=shapes.intermediate,
        tie_word_embeddings=True, max_position_embeddings=2048,
    )
    device = inputs.student_logits.device
    model = LlamaForCausalLM(config).to(device)
    view = inputs.batch.student
    seconds = []
    for attempt in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        model(input_ids=view.input_ids, attention_mask=view.attention_mask, labels=view.labels).loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if attempt:
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


# --- byte-aligned losses ----------------------------------------------------------------------------------------


def aligned_inputs(shapes: Shapes, kind: str, device: torch.device) -> tuple[Inputs, TokenizerPair]:
    """A batch whose two sides write one text (module docstring, 3.), both ending with EOS; its two vocabularies;
    and the teacher's live and cached forms (the cache holding what ``gold``, ``alm`` and ``eta-kl`` read)."""
    generator = torch.Generator().manual_seed(1)
    student_text = ["<eos>"] + [f"{' ' if i % 4 == 0 else ''}s{i}" for i in range(1, shapes.student_vocab)]
    merged: list[str] = []
    student = token_view(shapes, shapes.student_answer, shapes.student_vocab, True, generator)
    teacher = token_view(shapes, shapes.teacher_answer, shapes.teacher_vocab, True, generator)
    answers: list[str] = []
    for b, (n, n_teacher) in enumerate(zip(lengths(student), lengths(teacher))):
        ids = torch.randint(1, shapes.student_vocab, (n,), generator=generator).tolist()
        tokens = [student_text[i] for i in ids]
        joined = set(range(0, n - 1, n // (n - n_teacher))[: n - n_teacher])  # student pairs the teacher writes as one
        pieces, teacher_ids, i = [], [], 0
        while i < n:
            if i in joined:
                merged.append(tokens[i] + tokens[i + 1])
                pieces.append(merged[-1])
                teacher_ids.append(shapes.student_vocab + len(merged) - 1)
            else:
                pieces.append(tokens[i])
                teacher_ids.append(ids[i])
            i += 2 if i in joined else 1
        for view, row, strings in ((student, ids, tokens), (teacher, teacher_ids, pieces)):
            start, row = int(view.answer_rows[b, 0]) + 1, torch.tensor([*row, 0])  # + EOS (id 0)
            view.input_ids[b, start : start + len(row)] = view.labels[b, start : start + len(row)] = row
            view.answer_ids[b, : len(row)] = row
            view.answer_tokens.append([*strings, "<eos>"])
        answers.append("".join(tokens))
    teacher_text = student_text + merged
    teacher_text += [f"t{j}" for j in range(shapes.teacher_vocab - len(teacher_text))]

    def vocab(texts: list[str]) -> VocabInfo:
        return VocabInfo({t: i for i, t in enumerate(texts)}, byte_level=False, special_ids=frozenset({0}),
                         roles={"eos_token": 0})

    pair = TokenizerPair(vocab(student_text), vocab(teacher_text))
    batch = DistillBatch([f"ex{b}" for b in range(shapes.batch)], answers, student, teacher).to(device)
    student_logits = LOGITS[kind](*student.input_ids.shape, shapes.student_vocab, generator=generator).to(device)
    logits = LOGITS[kind](*teacher.answer_mask.shape, shapes.teacher_vocab, generator=generator).to(device)
    mask = batch.teacher.answer_mask
    values, ids = torch.topk(logits, CACHE_K, dim=-1)
    subsets = {name: teacher_subset(name, pair.student, pair.teacher).to(device) for name in ("boundary", "shared")}
    cached = TeacherOutputs(
        mask, topk_logits=values, topk_ids=ids, logsumexp=torch.logsumexp(logits, -1), vocab_size=shapes.teacher_vocab,
        token_logits=logits.gather(-1, batch.teacher.answer_ids.unsqueeze(-1)).squeeze(-1),
        subset_logsumexp={(name, 1.0): torch.logsumexp(logits[..., ids], -1) for name, ids in subsets.items()})
    live = TeacherOutputs(mask, logits=logits, vocab_size=shapes.teacher_vocab)
    return Inputs(batch, student_logits, logits, live, cached, torch.tensor(2.0, device=device)), pair


def aligned_rows(shapes: Shapes, inputs: Inputs, pair: TokenizerPair, repeats: int,
                 student_seconds: float) -> list[tuple[str, ...]]:
    """One line per byte-aligned loss: teacher form, value, reference value, relative difference, time, share."""
    batch, ce = inputs.batch, inputs.ce
    cached, live = f"cached top-{CACHE_K}", "live logits"
    forms = {cached: inputs.cached, live: inputs.live}
    methods = {"gold k=100": GOLD(), f"gold k={shapes.teacher_vocab}": GOLD(GOLDConfig(k=shapes.teacher_vocab)),
               "alm": ALM(), "eta-kl": EtaKL(), "eta-kl signal=topk": EtaKL(EtaKLConfig(signal="topk"))}
    for method in methods.values():
        method.prepare_pair(pair)
    reference = {"gold": (f"gold k={shapes.teacher_vocab}", live, "gold"), "alm": ("alm", live, "alm"),
                 "eta-kl": ("eta-kl", live, "kd")}
    runs = [("gold k=100", cached), ("gold k=100", live), (f"gold k={shapes.teacher_vocab}", live), ("alm", cached),
            ("alm", live), ("eta-kl", live), ("eta-kl signal=topk", cached)]
    rows = []
    for name, form in runs:
        run: Run = lambda z, m=methods[name], f=forms[form]: m.loss(batch, z, f, ce)  # noqa: E731
        ref_name, ref_form, term = reference[name.split(" ")[0]]
        with torch.no_grad():
            ours = float(run(inputs.student_logits)[term])
            expected = float(methods[ref_name].loss(batch, inputs.student_logits, forms[ref_form], ce)[term])
        seconds = timed(run, inputs.student_logits, repeats)
        rows.append((name, form, term, f"{ours:.6g}", f"{ref_name}, {ref_form}", f"{expected:.6g}",
                     f"{relative_difference(ours, expected):.1e}", f"{1000 * seconds:.1f}",
                     f"{100 * seconds / student_seconds:.1f}%"))
    return rows


def projection_rows(shapes: Shapes, inputs: Inputs, pair: TokenizerPair, repeats: int,
                    student_seconds: float) -> list[tuple[str, ...]]:
    """One line per projection-family loss (module docstring, 4.): time and share of the student's step."""
    generator = torch.Generator().manual_seed(2)
    device = inputs.student_logits.device

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator).to(device)

    batch = inputs.batch
    batch = replace(batch, student=replace(batch.student, hidden=randn(*batch.student.input_ids.shape, shapes.hidden)))
    live = replace(inputs.live, hidden_states=randn(*batch.teacher.input_ids.shape, TEACHER_HIDDEN))
    student = ModelWeights(randn(shapes.student_vocab, shapes.hidden), randn(shapes.student_vocab, shapes.hidden) / 24)
    teacher = ModelWeights(randn(shapes.teacher_vocab, TEACHER_HIDDEN), randn(shapes.teacher_vocab, TEACHER_HIDDEN) / 30)
    exact = torch.full((shapes.student_vocab, 4), -1, dtype=torch.long)
    exact[:, 0] = torch.arange(shapes.student_vocab)  # the teacher's first ids are the student's tokens
    weights = torch.zeros(exact.shape)
    weights[:, 0] = 1.0
    methods = {"dskd-cma": DSKDCMA(), "dskdv2-eta": DSKDv2ETA(), "xtoken": XToken(),
               "xtoken loss=gold": XToken(XTokenConfig(loss="gold"))}
    rows = []
    for name, method in methods.items():
        if isinstance(method, XToken):
            method.prepare_pair(pair)
            method.set_projection(Projection(exact.numpy(), weights.numpy()))
        else:
            if isinstance(method, DSKDv2ETA):
                method.prepare_pair(pair)
            method.build_modules(student, teacher)
        run: Run = lambda z, m=method: m.loss(batch, z, live, inputs.ce)  # noqa: E731
        seconds = timed(run, inputs.student_logits, repeats)
        rows.append((name, f"{1000 * seconds:.1f}", f"{100 * seconds / student_seconds:.1f}%"))
    return rows


# --- report --------------------------------------------------------------------------------------------------------


def relative_difference(ours: float, reference: float) -> float:
    return abs(ours - reference) / max(abs(reference), 1e-30)


def values(terms: Terms) -> dict[str, float]:
    return {name: float(value.detach()) for name, value in terms.items()}


def print_rows(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    for line in [header, tuple("-" * width for width in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def value_rows(kind: str, inputs: Inputs) -> list[tuple[str, ...]]:
    """One line per (variant, term): ours, the reference's, the relative difference."""
    with torch.no_grad():
        refs = {name: values(run(inputs.student_logits)) for name, run in references(inputs, torch.float64).items()}
        rows = []
        for variant in variants(inputs):
            ours, ref = values(variant.run(inputs.student_logits)), refs[variant.reference]
            for term in [t for t in ours if t not in ("loss", "ce", "coverage")]:  # loss: CE 2.0 + the terms
                expected = ref.get(term)
                rows.append((kind, variant.method, variant.teacher, variant.reference, term, f"{ours[term]:.6g}",
                             "" if expected is None else f"{expected:.6g}",
                             "" if expected is None else f"{relative_difference(ours[term], expected):.1e}"))
    return rows


def cost_rows(shapes: Shapes, inputs: Inputs, repeats: int) -> tuple[list[tuple[str, ...]], dict[str, float]]:
    """The cost table (memory first, then the timings; see the module docstring) and the seconds by run."""
    runs = {name: run for name, (run, _) in timed_runs(inputs).items()}
    used = {reference for _, reference in timed_runs(inputs).values()}
    runs.update({f"reference: {name}": run for name, run in references(inputs, torch.float32).items() if name in used})
    peaks = {name: peak_memory_mb(run, inputs.student_logits) for name, run in runs.items()}
    if inputs.student_logits.device.type == "cpu":
        set_mmap_threshold(32 * 1024 * 1024)  # glibc's own ceiling: page faults of fresh mmaps stay off the timings
    seconds = {name: timed(run, inputs.student_logits, repeats) for name, run in runs.items()}
    seconds["student model"] = student_model_seconds(shapes, inputs, repeats)
    rows = []
    for name, (_, reference) in timed_runs(inputs).items():
        ours, ref = seconds[name], seconds[f"reference: {reference}"]
        rows.append((name, f"{1000 * ours:.1f}", f"{peaks[name]:.0f}", reference, f"{1000 * ref:.1f}",
                     f"{peaks[f'reference: {reference}']:.0f}", f"{ref / ours:.1f}x",
                     f"{100 * ours / seconds['student model']:.1f}%"))
    return rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, for a smoke test")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = QUICK if args.quick else FULL
    device = torch.device(args.device)
    if device.type == "cpu":
        set_mmap_threshold(128 * 1024)  # before anything is allocated (see the module docstring)
    peaked = make_inputs(shapes, "peaked", device)
    costs, seconds = cost_rows(shapes, peaked, args.repeats)
    value_table = value_rows("peaked", peaked)
    del peaked
    value_table += value_rows("flat", make_inputs(shapes, "flat", device))

    memory = "CUDA max_memory_allocated" if device.type == "cuda" else "peak RSS (VmHWM)"
    print(f"device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}; "
          f"B={shapes.batch}, answer tokens {shapes.student_answer}/{shapes.teacher_answer}, "
          f"V={shapes.student_vocab}/{shapes.teacher_vocab} (student/teacher)\n")
    print("Values against independent references (float64, full vocabularies; see the module docstring)")
    print_rows(("logits", "method", "teacher", "reference", "term", "ours", "reference", "rel diff"), value_table)
    print(f"\nCost on peaked logits: median of {args.repeats} forward+backward; peak MB = {memory} above the level "
          f"before the call; student model ({shapes.layers} layers, hidden {shapes.hidden}) fwd+bwd "
          f"{1000 * seconds['student model']:.1f} ms")
    print_rows(("loss", "ms", "peak MB", "reference", "ref ms", "ref peak MB", "speed-up", "share of student"), costs)
    exact, topk = seconds["uld exact, live logits"], seconds[f"uld topk, cached top-{CACHE_K}"]
    print(f"\nuld exact (live) takes {exact / topk:.1f}x the time of uld topk (cached top-{CACHE_K}) in this run")
    print("\nByte-aligned losses on a synthetic pair (peaked logits; see the module docstring, 3.)")
    aligned, pair = aligned_inputs(shapes, "peaked", device)
    print_rows(("loss", "teacher", "term", "ours", "reference", "ref value", "rel diff", "ms", "share of student"),
               aligned_rows(shapes, aligned, pair, args.repeats, seconds["student model"]))
    print("\nProjection-family losses on the same pair (live teacher with hidden states; module docstring, 4.)")
    print_rows(("loss", "ms", "share of student"),
               projection_rows(shapes, aligned, pair, args.repeats, seconds["student model"]))


if __name__ == "__main__":
    main()
