"""Our evaluator vs lm-evaluation-harness's HF backend: the offline SmolLM2-135M student, 64 QED examples, one run.

Both harnesses evaluate the same loaded model object with the same batch size, on the same examples and prompts (the
exported ``ctkd_qed`` task, smoke-budget student prompt). A timing covers reading the task data, building the
prompts, generating and scoring; model loading is excluded, and so is building lm-eval's index of its thousands of
task files (a fixed cost per process, printed apart). The model is warmed up with one plain ``model.generate``
call on a full batch first, so neither harness pays for the first call's allocations. On a shared CPU wall times drift, so the
work each harness made the model do is counted too: forward calls and token positions run through the model
(padding included), which no other process can change.
Prints wall and CPU times, their ratio (target: ours not slower), the work, each harness's scores, the share of
identical predictions and the examples that differ.
Usage: python -m perf.eval_vs_lmeval [--examples 64] [--batch 8]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from benchmark.config import budget_settings
from benchmark.engine.collate import ViewEncoder
from benchmark.engine.evaluation import clean_prediction, evaluate
from benchmark.export.lm_eval import LmEvalSettings, export_lm_eval
from benchmark.models.loading import load_model, offline_model_dir
from benchmark.models.pairs import SMOLLM2
from tasks import load as load_task
from tasks.base import subset

TASK = "qed"


@dataclass
class Measurement:
    wall_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time, all threads
    forward_calls: int = 0
    positions: int = 0  # batch × sequence length summed over forward calls
    metrics: dict[str, float] = field(default_factory=dict)
    predictions: dict[str, str] = field(default_factory=dict)


@contextmanager
def measured(model: Any, into: Measurement) -> Iterator[None]:
    """Time the block and count the model's forward calls and token positions."""

    def count(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        into.forward_calls += 1
        into.positions += ids.numel()

    hook = model.register_forward_pre_hook(count, with_kwargs=True)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        into.wall_s, into.cpu_s = time.perf_counter() - wall, time.process_time() - cpu
        hook.remove()


def run_ours(model: Any, tokenizer: Any, settings: LmEvalSettings, batch: int) -> Measurement:
    result = Measurement()
    with measured(model, result):
        task = load_task(TASK)
        examples = subset(task.load("test"), settings.limit_eval)
        encoder = ViewEncoder(task, tokenizer, settings.prompt, task.load("train") if settings.prompt.shots else [], 64)
        evaluation = evaluate(model, encoder, examples, settings.max_new_tokens or task.max_new_tokens, batch)
    result.metrics = evaluation.metrics
    result.predictions = {r["id"]: r["prediction"] for r in evaluation.predictions}
    return result


def run_lm_eval(model: Any, tokenizer: Any, task_dir: Path, batch: int, log: Callable[[str], None]) -> Measurement:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    started = time.perf_counter()
    manager = TaskManager(include_path=str(task_dir), metadata={"pretrained": str(offline_model_dir(SMOLLM2.ref))})
    log(f"lm-eval task index: {time.perf_counter() - started:.1f} s (not counted)")
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch)
    result = Measurement()
    with measured(model, result):
        output = lm_eval.simple_evaluate(model=lm, tasks=[f"ctkd_{TASK}"], task_manager=manager, log_samples=True)
    result.metrics = {k.removesuffix(",none"): v for k, v in output["results"][f"ctkd_{TASK}"].items()
                      if k.endswith(",none") and "_stderr" not in k}
    result.predictions = {s["doc"]["id"]: clean_prediction(s["filtered_resps"][0])
                          for s in output["samples"][f"ctkd_{TASK}"]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = LmEvalSettings.from_settings(budget_settings("smoke").override({"data.limit_eval": args.examples}))
    model, tokenizer = load_model(SMOLLM2)
    warm_up = torch.randint(100, 1000, (args.batch, settings.prompt.max_prompt_tokens))  # a full batch's shapes
    with torch.inference_mode():
        model.generate(input_ids=warm_up, attention_mask=torch.ones_like(warm_up), max_new_tokens=4, do_sample=False,
                       pad_token_id=tokenizer.pad_token_id)
    with tempfile.TemporaryDirectory() as task_dir:
        export_lm_eval(task_dir, [TASK], None, settings)
        ours = run_ours(model, tokenizer, settings, args.batch)
        theirs = run_lm_eval(model, tokenizer, Path(task_dir), args.batch, print)
    differing = [i for i in ours.predictions if ours.predictions[i] != theirs.predictions.get(i)]
    print(f"{SMOLLM2.name}, {len(ours.predictions)} QED examples, batch {args.batch}, "
          f"{settings.prompt.max_prompt_tokens}-token plain prompts, {torch.get_num_threads()} threads")
    for name, m in (("ours", ours), ("lm-eval", theirs)):
        print(f"{name:8s} {m.wall_s:7.1f} s wall, {m.cpu_s:7.1f} s CPU, {m.forward_calls:4d} forward calls, "
              f"{m.positions:6d} token positions;  " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(m.metrics.items())))
    print(f"lm-eval / ours: {theirs.wall_s / ours.wall_s:.2f}x wall time, {theirs.cpu_s / ours.cpu_s:.2f}x CPU time, "
          f"{theirs.positions / ours.positions:.2f}x token positions (target >= 1)")
    print(f"identical predictions: {1 - len(differing) / len(ours.predictions):.1%} ({len(differing)} differ)")
    for i in differing:
        print(f"  {i}: ours {ours.predictions[i]!r} | lm-eval {theirs.predictions.get(i)!r}")


if __name__ == "__main__":
    main()
