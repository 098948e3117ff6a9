"""The training harness: one loop for every method, written against ``accelerate.Accelerator``.

Methods differ only in their loss. The harness owns data order, cross-entropy on answer tokens, AdamW, the
schedule, gradient accumulation with token-exact CE normalisation, clipping, checkpoints and resume, and the
per-step log; for an on-policy method, also which micro-batches hold the student's own samples
(:mod:`benchmark.engine.on_policy`). fp32 on CPU, bf16 autocast on GPU.

Under ``accelerate launch`` (DDP over N processes) every optimizer step's examples are split over the processes
(:func:`micro_batch_plan`), the effective batch stays ``batch_size × grad_accum`` (the settings', as the cell's hash
says), and the step's loss, gradient and log are those of the single-process step up to summation order. Only the
main process writes the log and the checkpoints.
"""
from __future__ import annotations

import inspect
import json
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm

from benchmark.config import TrainSettings
from benchmark.engine.collate import PairCollator
from benchmark.engine.distributed import average_gradients, sum_over_processes
from benchmark.engine.on_policy import OnPolicyBatches, check_on_policy_teacher
from benchmark.engine.precision import precision
from methods.base import Method
from methods.batch import DistillBatch, TeacherOutputs, TokenView
from methods.model_parts import ModelWeights, OwnModules
from tasks.base import Example


class TeacherSource(Protocol):
    """Where a method's teacher outputs come from: a live teacher or a cache (``benchmark.run.teacher``)."""

    def outputs(self, batch: DistillBatch) -> TeacherOutputs: ...


@dataclass(frozen=True)
class DataParallelShape:
    """How one optimizer step's examples are spread: ``processes`` × at most ``accumulation`` micro-batches of at
    most ``per_device_batch`` examples each; ``effective_batch`` (examples per step) is fixed by the settings."""

    processes: int
    effective_batch: int
    per_device_batch: int
    accumulation: int


def data_parallel_shape(cfg: TrainSettings, processes: int) -> DataParallelShape:
    """The shape of a step over ``processes``; raises ValueError when the effective batch cannot be split evenly."""
    effective = cfg.batch_size * cfg.grad_accum
    if effective % processes:
        raise ValueError(f"effective batch {effective} (batch_size {cfg.batch_size} x grad_accum {cfg.grad_accum}) "
                         f"cannot be split evenly over {processes} processes; make it a multiple of {processes}")
    share = effective // processes
    per_device = min(cfg.batch_size, share)
    return DataParallelShape(processes, effective, per_device, math.ceil(share / per_device))


@dataclass
class TrainStats:
    steps: int
    wall_time_s: float
    train_tokens: int
    tokens_per_s: float
    resumed_from_step: int
    data_parallel: dict[str, int]  # the step's shape (DataParallelShape), recorded in run.json
    # trainable parameters: the student's and the method's own modules' (projectors), recorded in run.json
    trainable_parameters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StepShare:
    """One optimizer step as one process runs it."""

    micro_batches: list[list[int]]  # example indices, at most batch_size per micro-batch
    step_micro_batches: int  # micro-batches of the whole step over every process: each weighs 1/this in its loss
    stand_in: bool = False  # no example of its own: a zero-weight copy (every process must join the gradient sum)


def step_examples(n_examples: int, cfg: TrainSettings, seed: int) -> list[list[int]]:
    """Example indices of each optimizer step (the effective batch; the last step may be shorter): a fixed-seed
    shuffle per epoch, so the plan is a pure function of (n, cfg, seed), which is what makes resuming exact."""
    per_step = cfg.batch_size * cfg.grad_accum
    order: list[int] = []
    for epoch in range(math.ceil(cfg.epochs)):
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order += torch.randperm(n_examples, generator=generator).tolist()
    order = order[: max(1, round(n_examples * cfg.epochs))]
    return [order[start : start + per_step] for start in range(0, len(order), per_step)]


def micro_batch_plan(n_examples: int, cfg: TrainSettings, seed: int, processes: int = 1,
                     rank: int = 0) -> list[StepShare]:
    """Process ``rank``'s share of every optimizer step: the step's examples cut into ``processes`` contiguous,
    near-equal parts (one process: the whole step), each cut into micro-batches of ``batch_size``.

    A short last step may leave a process without examples; it then runs the step's first example with zero weight.
    """
    data_parallel_shape(cfg, processes)
    plan = []
    for examples in step_examples(n_examples, cfg, seed):
        parts = [_micro_batches(part, cfg.batch_size) for part in _split(examples, processes)]
        total = sum(len(part) for part in parts)
        mine = parts[rank]
        plan.append(StepShare(mine, total) if mine else StepShare([examples[:1]], total, stand_in=True))
    return plan


def _split(items: list[int], parts: int) -> list[list[int]]:
    """``items`` in ``parts`` contiguous runs whose lengths differ by at most one, the longer ones first."""
    size, extra = divmod(len(items), parts)
    bounds = [0]
    for part in range(parts):
        bounds.append(bounds[-1] + size + (part < extra))
    return [items[bounds[i] : bounds[i + 1]] for i in range(parts)]


def _micro_batches(items: list[int], batch_size: int) -> list[list[int]]:
    return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainSettings, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle":
        # methods-spec §1.2.8: OneCycleLR(max_lr=lr, pct_start 0.1, div_factor 2, final_div_factor 5); a method's
        # own modules (a second parameter group) peak at their own rate.
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[group["lr"] for group in optimizer.param_groups], total_steps=max(total_steps, 2), pct_start=cfg.warmup_ratio,
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


def answer_row_forward(model: Any, batch: DistillBatch, hidden: bool = False) -> tuple[torch.Tensor, DistillBatch]:
    """The student's logits at the rows that predict answer tokens only, and the batch re-indexed to them.

    The output head (49k-152k columns) over every prompt position costs a third of a small student's step on a CPU
    and most of its activation memory, while cross-entropy and every KD loss read answer rows only. The model
    computes its head on the sorted union of the batch's answer rows (``logits_to_keep``); the returned student
    view's ``answer_rows`` index into that union, so a method reading logits through ``gather_answer_rows`` /
    ``answer_rows`` sees exactly the values it would see in the full ``[B, L, V]`` logits. With ``hidden``, the
    returned view also holds the last hidden state at the same rows (``TokenView.hidden``).
    """
    view = batch.student
    answer_tokens = view.answer_token_mask()
    positions = torch.unique(view.answer_rows[answer_tokens])  # sorted
    inputs: dict[str, Any] = {"input_ids": view.input_ids, "attention_mask": view.attention_mask}
    if hidden:
        inputs["output_hidden_states"] = True
    if "logits_to_keep" in inspect.signature(getattr(model, "module", model).forward).parameters:
        outputs = model(**inputs, logits_to_keep=positions)
        logits = outputs.logits
    else:  # models without the argument: full logits, then the same rows
        outputs = model(**inputs)
        logits = outputs.logits[:, positions]
    rows = torch.searchsorted(positions, view.answer_rows)
    rows = torch.where(answer_tokens, rows, torch.zeros_like(rows))
    last_hidden = outputs.hidden_states[-1][:, positions] if hidden else None
    return logits, replace(batch, student=replace(view, answer_rows=rows, hidden=last_hidden))


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

    def save(self, model: Any, optimizer: Any, scheduler: Any, step: int, own: torch.nn.Module | None = None) -> None:
        """``own``: the method's own modules (projectors), saved beside the student."""
        tmp = self.dir.with_name("checkpoint.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "student.safetensors"))  # handles tied embeddings
        if own is not None:
            save_model(own, str(tmp / "method.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step}))
        old = self.dir.with_name("checkpoint.old")
        shutil.rmtree(old, ignore_errors=True)
        if self.dir.exists():
            self.dir.rename(old)
        tmp.rename(self.dir)
        shutil.rmtree(old, ignore_errors=True)

    def load(self, model: Any, optimizer: Any, scheduler: Any, own: torch.nn.Module | None = None) -> int:
        """Restore into the given objects; returns the step reached (0 when there is no checkpoint)."""
        if not (self.dir / "state.json").exists():
            return 0
        load_model(model, str(self.dir / "student.safetensors"), strict=True)
        if own is not None:
            load_model(own, str(self.dir / "method.safetensors"), strict=True)
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
    data_parallel: bool = True,
    log_with: str = "none",
) -> TrainStats:
    """Train ``student`` in place with ``method``, logging every step to ``log_path``; resumes from the checkpoint
    in ``checkpoint_dir`` when there is one, and leaves the final state there.

    Under a multi-process launch every process calls this together and trains its share of each step; with
    ``data_parallel=False`` this process trains alone (the main process building a cache while the others wait).
    ``log_with="tensorboard"`` also logs every step's numbers through accelerate's tracker, as event files in
    ``<log_path's folder>/tensorboard``.
    """
    request = method.teacher_request()
    if request.needs in ("topk_logits", "full_logits", "hidden_states") and teacher is None:
        raise ValueError(f"method {method.name!r} needs teacher {request.needs} but no teacher source was given")
    check_on_policy_teacher(method, teacher)
    torch.manual_seed(seed)
    machine = precision()
    tracked = log_with != "none"
    accelerator = Accelerator(cpu=not machine.on_gpu, mixed_precision=machine.mixed_precision,
                              log_with=log_with if tracked else None, project_dir=log_path.parent if tracked else None)
    processes, rank = (accelerator.num_processes, accelerator.process_index) if data_parallel else (1, 0)
    if processes > 1 and request.on_policy_fraction > 0:
        # The draws and samples are keyed by a micro-batch's place in the step; split over processes, each would
        # draw for its own micro-batches only and the per-step log would hold one process's share.
        raise ValueError(f"method {method.name!r} trains on-policy, which runs in one process; launch it without "
                         f"data parallelism (got {processes} processes)")
    shape = data_parallel_shape(cfg, processes)
    writer = accelerator.is_main_process or not data_parallel
    total = sum_over_processes if processes > 1 else list
    student.train()
    own = method.build_modules(model_weights(student), _teacher_weights(teacher))
    own_module = own.module.to(accelerator.device) if own is not None else None
    optimizer = make_optimizer(student, own, cfg)
    plan = micro_batch_plan(len(examples), cfg, seed, processes, rank)
    scheduler = make_scheduler(optimizer, cfg, len(plan))
    checkpoint = Checkpoint(checkpoint_dir)
    start_step = checkpoint.load(student, optimizer, scheduler, own_module)  # every process reads the same checkpoint
    trained = list(student.parameters()) + (list(own_module.parameters()) if own_module is not None else [])
    counts_of = {"student": sum(p.numel() for p in student.parameters() if p.requires_grad),
                 "method": sum(p.numel() for p in own_module.parameters()) if own_module is not None else 0}
    if data_parallel:
        student, optimizer = accelerator.prepare(student, optimizer)
    else:
        student.to(accelerator.device)
    if writer:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        _truncate_log(log_path, start_step)
        if tracked:
            accelerator.init_trackers("tensorboard")
    answers = list(answers) if answers is not None else [e.answer for e in examples]
    on_policy = OnPolicyBatches(collator, request, seed) if request.on_policy_fraction > 0 else None

    started, tokens_seen = time.perf_counter(), 0
    bar = tqdm(total=len(plan), initial=start_step, desc=f"train {method.name}", unit="step", leave=False,
               disable=not writer)
    for step in range(start_step, len(plan)):
        share = plan[step]
        parts = [[examples[i] for i in idx] for idx in share.micro_batches]
        targets = [[answers[i] for i in idx] for idx in share.micro_batches]
        sampled: dict[str, Any] = {}
        if on_policy is None:
            batches = [collator(part, answer) for part, answer in zip(parts, targets)]
        else:  # some micro-batches become the student's own samples, scored by the live teacher
            with accelerator.autocast():
                batches, sampled = on_policy.step(accelerator.unwrap_model(student), step, parts, targets)
        own_tokens = 0 if share.stand_in else sum(int((b.student.labels != -100).sum()) for b in batches)
        step_tokens = int(total([own_tokens])[0])
        # Each micro-batch's loss weighs 1/(the step's micro-batches), a stand-in's nothing; DDP averages gradients
        # over the processes, so × processes makes the gradient that of the single-process step.
        counts = 0.0 if share.stand_in else 1.0
        sums: dict[str, float] = {}
        for micro, batch in enumerate(batches):
            batch = batch.to(accelerator.device)
            teacher_out = teacher.outputs(batch) if teacher is not None and request.needs != "text" else None
            # Gradients are summed over processes once per step, at the last micro-batch (processes may hold
            # different numbers of micro-batches).
            with nullcontext() if micro == len(batches) - 1 else accelerator.no_sync(student):
                with accelerator.autocast():
                    logits, batch = answer_row_forward(student, batch, method.student_hidden_states)
                # Scaled so that the mean over the step's micro-batches equals the token-mean CE of the whole step.
                ce = answer_ce_sum(logits, batch.student) * share.step_micro_batches / max(step_tokens, 1)
                terms = method.loss(batch, logits, teacher_out, ce)
                accelerator.backward(terms["loss"] * (counts * processes) / share.step_micro_batches)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + counts * float(value.detach()) / share.step_micro_batches
            tokens_seen += 0 if share.stand_in else int(batch.student.attention_mask.sum())
        names = sorted(sums)  # the same terms on every process
        logged = dict(zip(names, total([sums[name] for name in names])))
        if not math.isfinite(logged["loss"]):  # the same verdict on every process: they stop together
            raise FloatingPointError(f"non-finite loss at step {step + 1}: {logged}")
        if own_module is not None and processes > 1:  # the student's gradients were averaged by DDP; these are not in it
            average_gradients(own_module.parameters())
        grad_norm = accelerator.clip_grad_norm_(trained if own_module is not None else student.parameters(),
                                                cfg.max_grad_norm)
        lr = optimizer.param_groups[0]["lr"]  # the rate this step uses (the scheduler then moves to the next)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - started
        done = step + 1
        if writer:
            record = {"step": done, **logged, "grad_norm": float(grad_norm), "lr": lr, "answer_tokens": step_tokens,
                      **sampled, "elapsed_s": elapsed}
            with open(log_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            if tracked:
                accelerator.log({name: value for name, value in record.items() if name != "step"
                                 and isinstance(value, (int, float)) and not isinstance(value, bool)}, step=done)
            bar.set_postfix(loss=f"{logged['loss']:.4f}", tok_s=f"{tokens_seen * processes / max(elapsed, 1e-9):.0f}")
            bar.update(1)
            if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == len(plan):
                checkpoint.save(accelerator.unwrap_model(student), optimizer, scheduler, done, own_module)
    bar.close()
    if tracked and writer:
        accelerator.end_training()
    wall = time.perf_counter() - started
    tokens = int(total([tokens_seen])[0])
    return TrainStats(len(plan), wall, tokens, tokens / max(wall, 1e-9), start_step, asdict(shape), counts_of)


def model_weights(model: Any) -> ModelWeights:
    """A model's input embedding and output head weights (the live parameters) for ``Method.build_modules``."""
    model = getattr(model, "module", model)
    return ModelWeights(model.get_input_embeddings().weight, model.get_output_embeddings().weight)


def _teacher_weights(teacher: TeacherSource | None) -> ModelWeights | None:
    """The live teacher's weights; None for a cached signal (which has no model)."""
    model = getattr(teacher, "model", None)
    return model_weights(model) if model is not None else None


def make_optimizer(student: Any, own: OwnModules | None, cfg: TrainSettings) -> torch.optim.Optimizer:
    """AdamW over the student, and over the method's own modules as a second group at their own learning rate."""
    if own is None:
        return torch.optim.AdamW(student.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    groups = [{"params": list(student.parameters())},
              {"params": list(own.module.parameters()), "lr": own.learning_rate}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def _truncate_log(path: Path, keep_steps: int) -> None:
    """Drop log lines past the checkpoint we resume from, so a resumed log reads like an uninterrupted one."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= keep_steps]
    path.write_text("".join(line + "\n" for line in kept))

