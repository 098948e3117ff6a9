"""Speed and memory of the KD losses ULD / MultiLevelOT against naive full-vocabulary references.

Run from the repository root::

    python -m perf.losses [--device cpu|cuda] [--repeats N] [--quick] [--threads N]

For each loss: the median forward+backward time (into the student logits) and the peak memory, the same for a naive
reference written below (full softmax and full sorts over both vocabularies, plain-domain Sinkhorn in a Python loop),
the speed-up, the largest relative difference over the loss terms, and the loss time as a share of a forward+backward
of a SmolLM2-135M-shaped student (a random ``LlamaConfig`` model, nothing downloaded) on the same batch.

Published shapes: batch 2, 128 student answer tokens (120 on the teacher side, a different tokenizer), student
vocabulary 49,152 (SmolLM2), teacher vocabulary 151,936 (Qwen2.5). Logits are "peaked" like a language model's:
N(0, 2^2) plus 8 boosted candidates per row (+14 down to +7): top-1 ~0.6, top-100 ~0.90 (student) / ~0.79
(teacher) of the mass.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the allocation before the call. On CPU (tracemalloc does
not see torch's allocator), the peak resident set size above the RSS before the call: Linux ``VmHWM`` from
``/proc/self/status``, reset before each call by writing 5 to ``/proc/self/clear_refs``. Memory is measured first, in
its own pass, with glibc's mmap threshold pinned to 128 KiB (``mallopt``) from the start: otherwise freed heap
memory that a later call reuses would not show in its peak. The timings follow with the threshold at 32 MiB.
Timings on a shared CPU are noisy; compare rows of one run only. When other processes keep the cores busy, every
multi-threaded op waits for all its threads to be scheduled (~8 ms per op measured here, against 0.06 ms with one
thread), which penalises the many small ops of Sinkhorn; ``--threads 1`` gives steadier numbers then.
"""
from __future__ import annotations

import argparse
import ctypes
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.memory import PeakMemory
from methods.batch import DistillBatch, TeacherOutputs, TokenView
from methods.mlot import MLOT, MLOTConfig, MLOTOfficial, MLOTOfficialConfig
from methods.uld import ULD, ULDConfig

Terms = dict[str, Tensor]


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


# --- inputs ----------------------------------------------------------------------------------------------------


def peaked_logits(*shape: int, generator: torch.Generator) -> Tensor:
    logits = 2.0 * torch.randn(*shape, generator=generator)
    candidates = torch.randint(shape[-1], (*shape[:-1], 8), generator=generator)
    return logits.scatter_add_(-1, candidates, torch.linspace(14.0, 7.0, 8).expand_as(candidates).contiguous())


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
    cached: TeacherOutputs
    ce: Tensor


def make_inputs(shapes: Shapes, device: torch.device) -> Inputs:
    generator = torch.Generator().manual_seed(0)
    student = token_view(shapes, shapes.student_answer, shapes.student_vocab, True, generator)
    teacher = token_view(shapes, shapes.teacher_answer, shapes.teacher_vocab, False, generator)
    batch = DistillBatch([f"ex{b}" for b in range(shapes.batch)], [""] * shapes.batch, student, teacher).to(device)
    student_logits = peaked_logits(*student.input_ids.shape, shapes.student_vocab, generator=generator).to(device)
    teacher_logits = peaked_logits(*teacher.answer_mask.shape, shapes.teacher_vocab, generator=generator).to(device)
    mask = batch.teacher.answer_mask
    values, ids = torch.topk(teacher_logits, CACHE_K, dim=-1)
    cached = TeacherOutputs(mask, topk_logits=values, topk_ids=ids, logsumexp=torch.logsumexp(teacher_logits, -1),
                            vocab_size=shapes.teacher_vocab)
    live = TeacherOutputs(mask, logits=teacher_logits, vocab_size=shapes.teacher_vocab)
    return Inputs(batch, student_logits, teacher_logits, live, cached, torch.tensor(2.0, device=device))


# --- naive references --------------------------------------------------------------------------------------------


def lengths(view: TokenView) -> list[int]:
    return view.answer_mask.sum(1).tolist()


def log_probs(logits: Tensor) -> Tensor:
    """Full-vocabulary log-softmax as ``x - logsumexp(x)``: on CPU, torch's fp32 (log_)softmax kernels are off by
    ~1e-4 at 152k entries, while logsumexp is accurate to ~1e-6 (measured against float64), and the methods use
    logsumexp. A 1e-4 error would swap near-tied column ranks and hide real differences."""
    logits = logits.float()
    return logits - torch.logsumexp(logits, -1, keepdim=True)


def reference_uld(inputs: Inputs, student_logits: Tensor, cfg: ULDConfig) -> Terms:
    """ULD as published: full softmax, full sort of both vocabularies, zero-pad, positional rows, mean, mean."""
    batch = inputs.batch
    s = log_probs(batch.student.gather_answer_rows(student_logits)).exp().sort(-1, descending=True).values
    t = log_probs(inputs.teacher_logits).exp().sort(-1, descending=True).values
    size = max(s.size(-1), t.size(-1))
    s, t = F.pad(s, (0, size - s.size(-1))), F.pad(t, (0, size - t.size(-1)))
    per_sample = []
    for b, (n_s, n_t) in enumerate(zip(lengths(batch.student), lengths(batch.teacher))):
        n = min(n_s, n_t)
        per_sample.append((s[b, :n] - t[b, :n]).abs().sum(-1).mean())
    uld = torch.stack(per_sample).mean()
    return {"loss": inputs.ce + cfg.weight * uld, "uld": uld}


def reference_mlot(inputs: Inputs, student_logits: Tensor, cfg: MLOTConfig) -> Terms:
    """The paper variant's math done naively: dense softmax, full sorts, plain-domain Sinkhorn per sequence.

    The teacher is truncated to its per-row top-K by a full sort, as the top-K cache truncates it, so the values
    must match ``mlot`` to float precision."""
    batch = inputs.batch
    s_logp = log_probs(batch.student.gather_answer_rows(student_logits))
    t_full = log_probs(inputs.teacher_logits).exp()
    t_sorted, t_order = t_full.sort(-1, descending=True)
    t_trunc = torch.zeros_like(t_full).scatter(-1, t_order[..., : cfg.teacher_k], t_sorted[..., : cfg.teacher_k])

    def tempered(p: Tensor) -> Tensor:
        powered = p ** (1 / cfg.sd_temperature)  # a teacher row may hold none of the k columns: 0, not 0/0
        return p.sum(-1, keepdim=True) * powered / powered.sum(-1, keepdim=True).clamp_min(1e-30)

    had_sum = sl_sum = torch.zeros((), device=s_logp.device)
    count, sds = 0, []
    for b, (n_s, n_t) in enumerate(zip(lengths(batch.student), lengths(batch.teacher))):
        t_cols = t_trunc[b, :n_t].sum(0).argsort(descending=True)[: cfg.k]
        s_cols = s_logp[b, :n_s].exp().sum(0).argsort(descending=True)[: cfg.k]
        t_k, s_logk = t_trunc[b][:, t_cols], s_logp[b][:, s_cols]
        s_k = s_logk.exp()
        n = min(n_s, n_t)
        had_sum = had_sum + (t_k[:n] - s_k[:n]).abs().sum()
        sl_sum = sl_sum - (t_k[:n] * s_logk[:n]).sum()
        count += n
        cost = torch.cdist(tempered(t_k[:n_t]), tempered(s_k[:n_s]), p=1)
        kernel = torch.exp(-cost / cfg.sinkhorn_epsilon)
        u, v = torch.ones(n_t, device=cost.device), torch.ones(n_s, device=cost.device)
        for _ in range(cfg.sinkhorn_iterations):
            u = (1 / n_t) / (kernel @ v)
            v = (1 / n_s) / (kernel.T @ u)
        sds.append((u[:, None] * kernel * v[None, :] * cost).sum())
    had, sl, sd = had_sum / count, sl_sum / count, torch.stack(sds).mean()
    loss = inputs.ce + cfg.alpha * (had + cfg.beta * sl + cfg.gamma * sd)
    return {"loss": loss, "had": had, "sl": sl, "sd": sd}


def reference_mlot_official(inputs: Inputs, student_logits: Tensor, cfg: MLOTOfficialConfig) -> Terms:
    """The official steps transcribed literally (spec §1.2): a permuted copy of the whole [B, L, V] tensor by the
    argsort of the batch column sums, [:50], plain Sinkhorn per sequence."""
    batch = inputs.batch
    n_s, n_t = lengths(batch.student), lengths(batch.teacher)
    rows = max(n_s + n_t)

    def left_justified(logits: Tensor, counts: list[int]) -> Tensor:
        logits = logits.float() / (logits.float().std(-1, keepdim=True) + cfg.std_epsilon)
        out = [torch.cat([log_probs(logits[b, :n]).exp(), logits.new_zeros(rows - n, logits.size(-1))])
               for b, n in enumerate(counts)]
        return torch.stack(out)

    def improved_sort(p: Tensor) -> Tensor:
        return p[:, :, p.sum((0, 1)).argsort(descending=True)][:, :, : cfg.k]

    s = improved_sort(left_justified(batch.student.gather_answer_rows(student_logits), n_s))
    t = improved_sort(left_justified(inputs.teacher_logits, n_t))
    had = torch.stack([(s[b, :n] - t[b, :n]).abs().sum(-1).mean() for b, n in enumerate(map(min, n_s, n_t))]).mean()
    sl = -(torch.softmax(s, -1) * torch.log_softmax(t, -1)).sum(-1).mean()
    sd = torch.zeros((), device=s.device)
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


# --- measurement -------------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    seconds: float
    values: dict[str, float]
    peak_mb: float = float("nan")


def timed(run: Callable[[Tensor], Terms], student_logits: Tensor, repeats: int) -> Measurement:
    """Median forward+backward time of ``run`` over ``repeats`` calls after one warm-up, and its loss terms."""
    seconds = []
    for attempt in range(repeats + 1):
        leaf = student_logits.detach().requires_grad_()
        start = time.perf_counter()
        terms = run(leaf)
        terms["loss"].backward()
        if leaf.device.type == "cuda":
            torch.cuda.synchronize()
        if attempt:
            seconds.append(time.perf_counter() - start)
    return Measurement(statistics.median(seconds), {k: float(v.detach()) for k, v in terms.items()})


def set_mmap_threshold(nbytes: int) -> None:
    """glibc serves allocations of ``nbytes`` or more with mmap, so they go back to the OS when freed (setting
    M_MMAP_THRESHOLD, -3, explicitly also stops glibc from raising it after frees). A small threshold set before
    anything is allocated lets peak RSS see each call's own allocations instead of reused heap memory."""
    ctypes.CDLL("libc.so.6").mallopt(-3, nbytes)


def peak_memory_mb(run: Callable[[Tensor], Terms], student_logits: Tensor) -> float:
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


def largest_relative_difference(ours: dict[str, float], reference: dict[str, float]) -> float:
    return max(abs(ours[k] - reference[k]) / max(abs(reference[k]), 1e-30) for k in reference)


# --- main ----------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    loss: str
    teacher: str
    ours: Measurement
    reference: Measurement

    @property
    def speedup(self) -> float:
        return self.reference.seconds / self.ours.seconds

    @property
    def difference(self) -> float:
        return largest_relative_difference(self.ours.values, self.reference.values)


def loss_runs(inputs: Inputs) -> dict[tuple[str, str], Callable[[Tensor], Terms]]:
    """The methods' losses and their references (teacher form "reference"), keyed by (loss, teacher form)."""
    batch, ce = inputs.batch, inputs.ce
    uld_cfg, mlot_cfg, official_cfg = ULDConfig(), MLOTConfig(), MLOTOfficialConfig()
    uld, mlot, official = ULD(uld_cfg), MLOT(mlot_cfg), MLOTOfficial(official_cfg)
    cached = f"cached top-{CACHE_K}"
    return {
        ("uld", cached): lambda z: uld.loss(batch, z, inputs.cached, ce),
        ("uld", "live logits"): lambda z: uld.loss(batch, z, inputs.live, ce),
        ("mlot", cached): lambda z: mlot.loss(batch, z, inputs.cached, ce),
        ("mlot", "live logits"): lambda z: mlot.loss(batch, z, inputs.live, ce),
        ("mlot-official", "live logits"): lambda z: official.loss(batch, z, inputs.live, ce),
        ("uld", "reference"): lambda z: reference_uld(inputs, z, uld_cfg),
        ("mlot", "reference"): lambda z: reference_mlot(inputs, z, mlot_cfg),
        ("mlot-official", "reference"): lambda z: reference_mlot_official(inputs, z, official_cfg),
    }


def print_table(rows: list[Row], model_seconds: float) -> None:
    header = ("loss", "teacher", "fwd+bwd ms", "peak MB", "ref ms", "ref peak MB", "speed-up", "max rel diff",
              "share of student fwd+bwd")
    cells = [header] + [(
        row.loss, row.teacher, f"{1000 * row.ours.seconds:.1f}", f"{row.ours.peak_mb:.0f}",
        f"{1000 * row.reference.seconds:.1f}", f"{row.reference.peak_mb:.0f}", f"{row.speedup:.1f}x",
        f"{row.difference:.1e}", f"{100 * row.ours.seconds / model_seconds:.1f}%",
    ) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    cells.insert(1, tuple("-" * width for width in widths))
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


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
        set_mmap_threshold(128 * 1024)
    inputs = make_inputs(shapes, device)
    runs = loss_runs(inputs)
    peaks = {key: peak_memory_mb(run, inputs.student_logits) for key, run in runs.items()}
    if device.type == "cpu":
        set_mmap_threshold(32 * 1024 * 1024)  # glibc's own ceiling: page faults of fresh mmaps stay off the timings
    results = {key: timed(run, inputs.student_logits, args.repeats) for key, run in runs.items()}
    for key, peak in peaks.items():
        results[key].peak_mb = peak
    model_seconds = student_model_seconds(shapes, inputs, args.repeats)
    rows = [Row(loss, form, result, results[loss, "reference"])
            for (loss, form), result in results.items() if form != "reference"]

    memory = "CUDA max_memory_allocated" if device.type == "cuda" else "peak RSS (VmHWM)"
    print(f"device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}, median of {args.repeats}; "
          f"B={shapes.batch}, answer tokens {shapes.student_answer}/{shapes.teacher_answer}, "
          f"V={shapes.student_vocab}/{shapes.teacher_vocab} (student/teacher); peak MB = {memory} above the level "
          "before the call")
    print(f"student model fwd+bwd ({shapes.layers} layers, hidden {shapes.hidden}, vocab {shapes.student_vocab}): "
          f"{1000 * model_seconds:.1f} ms")
    print_table(rows, model_seconds)
    print("references: uld = full-sort full-vocabulary ULD (its rel diff is the top-k + tail truncation gap); "
          "mlot = the same math with dense softmax, full sorts, plain Sinkhorn; mlot-official = literal transcription")
    target = next(row for row in rows if row.loss == "mlot" and row.teacher == "live logits")
    print(f"target mlot (live logits) >= 3x faster than its reference: {target.speedup:.1f}x "
          f"({'met' if target.speedup >= 3 else 'missed'}); values within 1e-5 relative: {target.difference:.1e} "
          f"({'met' if target.difference <= 1e-5 else 'missed'})")


if __name__ == "__main__":
    main()
