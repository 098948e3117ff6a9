"""The training harness: one loop for every method, written against ``accelerate.Accelerator``.

Methods differ only in their loss. The harness owns data order, cross-entropy on answer tokens, AdamW, the
schedule, gradient accumulation with token-exact CE normalisation, clipping, checkpoints and resume, and the
per-step log; for an on-policy method, also which micro-batches hold the student's own samples
(:mod:`benchmark.on_policy`). fp32 on CPU, bf16 autocast on GPU.
"""
from __future__ import annotations

import inspect
import json
import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm

from benchmark.collate import PairCollator
from benchmark.config import TrainSettings
from benchmark.on_policy import OnPolicyBatches, check_on_policy_teacher
from methods.base import Method
from methods.batch import DistillBatch, TeacherOutputs, TokenView
from tasks.base import Example


class TeacherSource(Protocol):
    """Where a method's teacher outputs come from: a live teacher or a cache (``benchmark.teacher``)."""

    def outputs(self, batch: DistillBatch) -> TeacherOutputs: ...


@dataclass
class TrainStats:
    steps: int
    wall_time_s: float
    train_tokens: int
    tokens_per_s: float
    resumed_from_step: int


def micro_batch_plan(n_examples: int, cfg: TrainSettings, seed: int) -> list[list[list[int]]]:
    """Example indices per optimizer step, per micro-batch: a fixed-seed shuffle per epoch.

    The plan is a pure function of (n, cfg, seed), which is what makes resuming exact.
    """
    per_step = cfg.batch_size * cfg.grad_accum
    order: list[int] = []
    for epoch in range(math.ceil(cfg.epochs)):
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order += torch.randperm(n_examples, generator=generator).tolist()
    order = order[: max(1, round(n_examples * cfg.epochs))]
    steps = []
    for start in range(0, len(order), per_step):
        chunk = order[start : start + per_step]
        steps.append([chunk[i : i + cfg.batch_size] for i in range(0, len(chunk), cfg.batch_size)])
    return steps


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainSettings, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle":
        # methods-spec §1.2.8: OneCycleLR(max_lr=lr, pct_start 0.1, div_factor 2, final_div_factor 5).
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.learning_rate, total_steps=max(total_steps, 2), pct_start=cfg.warmup_ratio,
            div_factor=2.0, final_div_factor=5.0,
        )
    warmup = int(total_steps * cfg.warmup_ratio)

    def factor(step: int) -> float:
        if cfg.schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def answer_row_forward(model: Any, batch: DistillBatch) -> tuple[torch.Tensor, DistillBatch]:
    """The student's logits at the rows that predict answer tokens only, and the batch re-indexed to them.

    The output head (49k-152k columns) over every prompt position costs a third of a small student's step on a CPU
    and most of its activation memory, while cross-entropy and every KD loss read answer rows only. The model
    computes its head on the sorted union of the batch's answer rows (``logits_to_keep``); the returned student
    view's ``answer_rows`` index into that union, so a method reading logits through ``gather_answer_rows`` /
    ``answer_rows`` sees exactly the values it would see in the full ``[B, L, V]`` logits.
    """
    view = batch.student
    answer_tokens = view.answer_token_mask()
    positions = torch.unique(view.answer_rows[answer_tokens])  # sorted
    inputs = {"input_ids": view.input_ids, "attention_mask": view.attention_mask}
    if "logits_to_keep" in inspect.signature(getattr(model, "module", model).forward).parameters:
        logits = model(**inputs, logits_to_keep=positions).logits
    else:  # models without the argument: full logits, then the same rows
        logits = model(**inputs).logits[:, positions]
    rows = torch.searchsorted(positions, view.answer_rows)
    rows = torch.where(answer_tokens, rows, torch.zeros_like(rows))
    return logits, replace(batch, student=replace(view, answer_rows=rows))


def answer_ce_sum(logits: torch.Tensor, view: TokenView) -> torch.Tensor:
    """Summed next-token cross-entropy of the answer tokens (final EOS included), in fp32, from logits that
    ``view.answer_rows`` indexes (full logits, or those of :func:`answer_row_forward`)."""
    targets = torch.where(view.answer_token_mask(), view.answer_ids, torch.full_like(view.answer_ids, -100))
    rows = view.gather_answer_rows(logits)
    return F.cross_entropy(rows.flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum")


class Checkpoint:
    """Student weights, optimizer, scheduler and step in one directory, replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def save(self, model: Any, optimizer: Any, scheduler: Any, step: int) -> None:
        tmp = self.dir.with_name("checkpoint.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "student.safetensors"))  # handles tied embeddings
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step}))
        old = self.dir.with_name("checkpoint.old")
        shutil.rmtree(old, ignore_errors=True)
        if self.dir.exists():
            self.dir.rename(old)
        tmp.rename(self.dir)
        shutil.rmtree(old, ignore_errors=True)

    def load(self, model: Any, optimizer: Any, scheduler: Any) -> int:
        """Restore into the given objects; returns the step reached (0 when there is no checkpoint)."""
        if not (self.dir / "state.json").exists():
            return 0
        load_model(model, str(self.dir / "student.safetensors"), strict=True)
        optim_state = torch.load(self.dir / "optim.pt", weights_only=False)
        optimizer.load_state_dict(optim_state["optimizer"])
        scheduler.load_state_dict(optim_state["scheduler"])
        return int(json.loads((self.dir / "state.json").read_text())["step"])

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def train(
    student: Any,
    method: Method,
    examples: Sequence[Example],
    collator: PairCollator,
    cfg: TrainSettings,
    seed: int,
    checkpoint_dir: Path,
    log_path: Path,
    teacher: TeacherSource | None = None,
    answers: Sequence[str] | None = None,
) -> TrainStats:
    """Train ``student`` in place with ``method``, logging every step to ``log_path``; resumes from the checkpoint
    in ``checkpoint_dir`` when there is one, and leaves the final state there."""
    if method.teacher_needs in ("topk_logits", "full_logits", "hidden_states") and teacher is None:
        raise ValueError(f"method {method.name!r} needs teacher {method.teacher_needs} but no teacher source was given")
    check_on_policy_teacher(method, teacher)
    torch.manual_seed(seed)
    accelerator = Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no")
    student.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    plan = micro_batch_plan(len(examples), cfg, seed)
    scheduler = make_scheduler(optimizer, cfg, len(plan))
    checkpoint = Checkpoint(checkpoint_dir)
    start_step = checkpoint.load(student, optimizer, scheduler)
    student, optimizer = accelerator.prepare(student, optimizer)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _truncate_log(log_path, start_step)
    answers = list(answers) if answers is not None else [e.answer for e in examples]
    on_policy = OnPolicyBatches(collator, method, seed) if method.on_policy_fraction > 0 else None

    started, tokens_seen = time.perf_counter(), 0
    bar = tqdm(total=len(plan), initial=start_step, desc=f"train {method.name}", unit="step", leave=False)
    for step in range(start_step, len(plan)):
        parts = [[examples[i] for i in idx] for idx in plan[step]]
        targets = [[answers[i] for i in idx] for idx in plan[step]]
        sampled: dict[str, Any] = {}
        if on_policy is None:
            batches = [collator(part, answer) for part, answer in zip(parts, targets)]
        else:  # some micro-batches become the student's own samples, scored by the live teacher
            with accelerator.autocast():
                batches, sampled = on_policy.step(accelerator.unwrap_model(student), step, parts, targets)
        step_tokens = sum(int((b.student.labels != -100).sum()) for b in batches)
        logged: dict[str, float] = {}
        for micro, batch in enumerate(batches):
            batch = batch.to(accelerator.device)
            teacher_out = teacher.outputs(batch) if teacher is not None and method.teacher_needs != "text" else None
            with accelerator.autocast():
                logits, batch = answer_row_forward(student, batch)
            # Scaled so that the mean over micro-batches equals the token-mean CE of the whole step.
            ce = answer_ce_sum(logits, batch.student) * len(batches) / max(step_tokens, 1)
            terms = method.loss(batch, logits, teacher_out, ce)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                values = {k: float(v.detach()) for k, v in terms.items()}
                raise FloatingPointError(f"non-finite loss at step {step + 1}: {values}")
            accelerator.backward(loss / len(batches))
            for name, value in terms.items():
                logged[name] = logged.get(name, 0.0) + float(value.detach()) / len(batches)
            tokens_seen += int(batch.student.attention_mask.sum())
        grad_norm = accelerator.clip_grad_norm_(student.parameters(), cfg.max_grad_norm)
        lr = optimizer.param_groups[0]["lr"]  # the rate this step uses (the scheduler then moves to the next)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - started
        record = {"step": step + 1, **logged, "grad_norm": float(grad_norm), "lr": lr,
                  "answer_tokens": step_tokens, **sampled, "elapsed_s": elapsed}
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{logged['loss']:.4f}", tok_s=f"{tokens_seen / max(elapsed, 1e-9):.0f}")
        bar.update(1)
        done = step + 1
        if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == len(plan):
            checkpoint.save(accelerator.unwrap_model(student), optimizer, scheduler, done)
    bar.close()
    wall = time.perf_counter() - started
    return TrainStats(len(plan), wall, tokens_seen, tokens_seen / max(wall, 1e-9), start_step)


def _truncate_log(path: Path, keep_steps: int) -> None:
    """Drop log lines past the checkpoint we resume from, so a resumed log reads like an uninterrupted one."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= keep_steps]
    path.write_text("".join(line + "\n" for line in kept))

