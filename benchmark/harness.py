"""The training harness: one loop for every method, written against ``accelerate.Accelerator``.

Methods differ only in their loss. The harness owns data order, cross-entropy on answer tokens, AdamW, the
schedule, gradient accumulation with token-exact CE normalisation, clipping, checkpoints and resume, and the
per-step log. fp32 on CPU, bf16 autocast on GPU.
"""
from __future__ import annotations

import inspect
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, Sequence

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm

from benchmark.collate import PairCollator
from methods.base import Method
from methods.batch import DistillBatch, TeacherOutputs, TokenView
from tasks.base import Example

Schedule = Literal["onecycle", "cosine", "constant"]
SCHEDULES: tuple[str, ...] = ("onecycle", "cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 1.0  # fractional epochs allowed (e.g. 0.5 = first half of the shuffled data)
    learning_rate: float = 1e-5
    batch_size: int = 4
    grad_accum: int = 1
    schedule: Schedule = "onecycle"  # OneCycle as in the published set-up (methods-spec §1.2.8)
    weight_decay: float = 0.1  # ULD / MultiLevelOT code
    max_grad_norm: float = 1.0
    warmup_ratio: float = 0.1  # onecycle pct_start / cosine warm-up
    checkpoint_every: int = 0  # optimizer steps between checkpoints; 0 = only at the end (always saved there)
    teacher_bf16: bool = False

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        for name in ("batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs <= 0 or self.learning_rate <= 0:
            raise ValueError(f"epochs and learning_rate must be > 0, got {self.epochs} and {self.learning_rate}")


class TeacherSource(Protocol):
    def outputs(self, batch: DistillBatch) -> TeacherOutputs: ...


class LiveTeacher:
    """Runs the frozen teacher on the teacher view of each batch.

    Only the answer rows go through the output head: a 152k-vocabulary head over every prompt position would
    cost gigabytes per batch and most of the teacher's time.
    """

    def __init__(self, model: Any, hidden_states: bool = False, bf16: bool = False) -> None:
        self.model = model.eval().requires_grad_(False)
        self.hidden_states, self.bf16 = hidden_states, bf16

    @torch.no_grad()
    def outputs(self, batch: DistillBatch) -> TeacherOutputs:
        device = next(self.model.parameters()).device
        view = batch.teacher.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.bf16):
            hidden = self.model.base_model(input_ids=view.input_ids, attention_mask=view.attention_mask).last_hidden_state
            rows = self.model.get_output_embeddings()(view.gather_answer_rows(hidden)).float()
        softcap = getattr(self.model.config, "final_logit_softcapping", None)
        if softcap:
            rows = torch.tanh(rows / softcap) * softcap
        return TeacherOutputs(mask=view.answer_mask, logits=rows, vocab_size=rows.size(-1),
                              hidden_states=hidden.float() if self.hidden_states else None)


@dataclass
class TrainStats:
    steps: int
    wall_time_s: float
    train_tokens: int
    tokens_per_s: float
    resumed_from_step: int


def micro_batch_plan(n_examples: int, cfg: TrainConfig, seed: int) -> list[list[list[int]]]:
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


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
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
    """Student weights, optimizer, scheduler and step in ``<cell>/checkpoint``, replaced atomically."""

    def __init__(self, cell_dir: Path) -> None:
        self.dir = cell_dir / "checkpoint"

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
    cfg: TrainConfig,
    seed: int,
    cell_dir: Path,
    teacher: TeacherSource | None = None,
    answers: Sequence[str] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> TrainStats:
    """Train ``student`` in place with ``method``; resumes from ``cell_dir/checkpoint`` when one exists."""
    if method.teacher_needs in ("topk_logits", "full_logits", "hidden_states") and teacher is None:
        raise ValueError(f"method {method.name!r} needs teacher {method.teacher_needs} but no teacher source was given")
    torch.manual_seed(seed)
    accelerator = Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no")
    student.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    plan = micro_batch_plan(len(examples), cfg, seed)
    scheduler = make_scheduler(optimizer, cfg, len(plan))
    checkpoint = Checkpoint(cell_dir)
    start_step = checkpoint.load(student, optimizer, scheduler)
    student, optimizer = accelerator.prepare(student, optimizer)
    cell_dir.mkdir(parents=True, exist_ok=True)
    log_path = cell_dir / "train_log.jsonl"
    _truncate_log(log_path, start_step)
    answers = list(answers) if answers is not None else [e.answer for e in examples]

    started, tokens_seen = time.perf_counter(), 0
    bar = tqdm(total=len(plan), initial=start_step, desc=f"train {method.name}", unit="step", leave=False)
    for step in range(start_step, len(plan)):
        batches = [collator([examples[i] for i in idx], [answers[i] for i in idx]) for idx in plan[step]]
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
                  "answer_tokens": step_tokens, "elapsed_s": elapsed}
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{logged['loss']:.4f}", tok_s=f"{tokens_seen / max(elapsed, 1e-9):.0f}")
        bar.update(1)
        done = step + 1
        if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == len(plan):
            checkpoint.save(accelerator.unwrap_model(student), optimizer, scheduler, done)
        if on_step is not None:
            on_step(done)
    bar.close()
    wall = time.perf_counter() - started
    return TrainStats(len(plan), wall, tokens_seen, tokens_seen / max(wall, 1e-9), start_step)


def _truncate_log(path: Path, keep_steps: int) -> None:
    """Drop log lines past the checkpoint we resume from, so a resumed log reads like an uninterrupted one."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= keep_steps]
    path.write_text("".join(line + "\n" for line in kept))


def train_config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return asdict(cfg)
