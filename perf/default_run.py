"""Where a run's CPU time goes, and how close each phase comes to what this CPU can do.

Part 1 reads a finished store's ``run.json`` files (default: ``runs/``, e.g. after ``python run_bench.py``) and splits
each cell's wall time into training, generation and the rest (model loading, teacher cache, scoring); CPU seconds
where the cell recorded them. Part 2 measures, in this one process, the offline student (SmolLM2-135M) against this
machine's bounds: the ``torch.mm`` rate at the model's shapes (fp32, and bf16 where the CPU has AVX512-BF16/AMX), the
memory bandwidth, a training step's achieved rate (FLOPs counted from the shapes: 6 per parameter per token for the
layers, 6 per head parameter per answer row), the prefill rate (2 per parameter per token) and decode tokens/s against
the weight-streaming bound (a decode step reads every weight once: batch x bandwidth / weight bytes).

Usage: python -m perf.default_run [--runs runs] [--batch 4] [--tokens 256] [--decode-batch 16]
Pause other CPU work while it runs: every figure is a rate of this machine, measured in one run.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from benchmark.core.paths import default_cache_dir
from benchmark.models.loading import load_model
from benchmark.models.pairs import SMOLLM2
from benchmark.run.provenance import cpu_description
from benchmark.store import Store


def phases(runs: Path) -> None:
    """Part 1: per-method sums of each phase over a store's finished cells."""
    rows: dict[str, dict[str, float]] = {}
    for key, cell in Store(runs).finished_cells():  # the store's own reader: its layout is spelled in one place
        run = cell.run_info()
        method = key.method
        train = run.get("train", {}).get("wall_time_s", 0.0)
        generation = run.get("eval", {}).get("generation_wall_time_s", 0.0)
        row = rows.setdefault(method, {"cells": 0, "wall": 0.0, "train": 0.0, "generation": 0.0, "cpu": 0.0})
        row["cells"] += 1
        row["wall"] += run.get("wall_time_s", 0.0)
        row["train"] += train
        row["generation"] += generation
        row["cpu"] += run.get("cpu_time_s", float("nan"))
    if not rows:
        print(f"part 1: no finished cells under {runs} (run `python run_bench.py` first); skipped")
        return
    total = {key: sum(r[key] for r in rows.values()) for key in ("wall", "train", "generation", "cpu")}
    print(f"part 1: {runs}, {sum(r['cells'] for r in rows.values())} cells, wall {total['wall']:.0f} s "
          f"(training {total['train'] / total['wall']:.0%}, generation {total['generation'] / total['wall']:.0%}, "
          f"the rest {(total['wall'] - total['train'] - total['generation']) / total['wall']:.0%}), "
          f"CPU {total['cpu']:.0f} s")
    print(f"  {'method':<16}{'cells':>6}{'wall s':>9}{'train s':>9}{'gen s':>9}{'rest s':>9}{'CPU s':>9}")
    for method, r in rows.items():
        rest = r["wall"] - r["train"] - r["generation"]
        print(f"  {method:<16}{r['cells']:>6}{r['wall']:>9.1f}{r['train']:>9.1f}{r['generation']:>9.1f}{rest:>9.1f}"
              f"{r['cpu']:>9.1f}")


def best_seconds(work: Callable[[], Any], repeats: int = 3) -> float:
    """The fastest of ``repeats`` timed calls after one warm-up (the least disturbed by other processes)."""
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def matmul_rate(m: int, k: int, n: int, dtype: torch.dtype) -> float:
    """GFLOP/s of ``[m, k] @ [k, n]`` in ``dtype``."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    return 2 * m * k * n / best_seconds(lambda: torch.mm(a, b)) / 1e9


def bandwidth() -> float:
    """GB/s of copying a 512 MB tensor (read + write)."""
    source = torch.empty(128 << 20, dtype=torch.float32).fill_(1.0)
    target = torch.empty_like(source)
    return 2 * source.numel() * 4 / best_seconds(lambda: target.copy_(source)) / 1e9


def rooflines(batch: int, tokens: int, decode_batch: int) -> None:
    """Part 2: the student's training step, prefill and decode against this CPU's bounds."""
    model, tokenizer = load_model(SMOLLM2, cache_dir=default_cache_dir())
    config = model.config
    head = model.get_output_embeddings().weight.numel()
    embedding = model.get_input_embeddings().weight.numel()
    # parameters() lists a tied head once, as the input embedding
    layers = sum(p.numel() for p in model.parameters()) - embedding - (0 if config.tie_word_embeddings else head)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    hidden, inner = config.hidden_size, config.intermediate_size
    rows = batch * tokens
    fp32 = matmul_rate(rows, hidden, inner, torch.float32)
    flags = cpu_description()
    bf16 = matmul_rate(rows, hidden, inner, torch.bfloat16) if "avx512_bf16" in flags or "amx_bf16" in flags else None
    memory = bandwidth()
    print(f"part 2: {SMOLLM2.name}, {layers / 1e6:.1f}M layer + {head / 1e6:.1f}M head parameters, "
          f"{torch.get_num_threads()} threads")
    print(f"  torch.mm [{rows}x{hidden}]x[{hidden}x{inner}]: fp32 {fp32:.1f} GFLOP/s"
          + (f", bf16 {bf16:.1f} GFLOP/s" if bf16 else "") + f"; memory copy {memory:.1f} GB/s")

    ids = torch.randint(0, len(tokenizer), (batch, tokens))
    answer_rows = tokens // 4  # the harness runs the head on answer rows only; a quarter of the tokens here
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    model.train()

    def step() -> None:
        hidden_states = model.model(input_ids=ids).last_hidden_state[:, -answer_rows:]
        logits = model.lm_head(hidden_states)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, -answer_rows:].flatten()).backward()
        optimizer.step()
        optimizer.zero_grad()

    train_flops = 6 * layers * rows + 6 * head * batch * answer_rows
    train_rate = train_flops / best_seconds(step, repeats=2) / 1e9
    print(f"  training step ({batch}x{tokens} tokens, head on {answer_rows} rows each): {train_rate:.1f} GFLOP/s "
          f"= {train_rate / fp32:.0%} of the fp32 matmul rate (goal >= 50%)")

    model.eval()
    with torch.no_grad():
        prefill = best_seconds(lambda: model.model(input_ids=ids))
        prefill_rate = 2 * layers * rows / prefill / 1e9
        print(f"  prefill ({batch}x{tokens}): {prefill_rate:.1f} GFLOP/s = {prefill_rate / fp32:.0%} of fp32 matmul")
        prompt = torch.randint(0, len(tokenizer), (decode_batch, 64))
        new_tokens = 32
        generate = lambda: model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,  # noqa: E731
                                          max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                          pad_token_id=tokenizer.eos_token_id)
        prefill_64 = best_seconds(lambda: model(input_ids=prompt), repeats=2)
        decode = (best_seconds(generate, repeats=2) - prefill_64) / new_tokens
    bound = decode_batch * memory * 1e9 / weight_bytes
    achieved = decode_batch / decode
    print(f"  decode (batch {decode_batch}): {achieved:.1f} tokens/s; weight-streaming bound {bound:.1f} tokens/s "
          f"({weight_bytes / 2**20:.0f} MB per step) -> {bound / achieved:.1f}x from the bound (goal <= 2x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="a finished store (part 1)")
    parser.add_argument("--batch", type=int, default=4, help="training and prefill batch (the smoke budget's 4)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per sequence (the smoke budget's prompt)")
    parser.add_argument("--decode-batch", type=int, default=16, help="generation batch (the reference budget's 16)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    print(f"CPU: {cpu_description()}; {os.cpu_count()} cores")
    phases(args.runs)
    rooflines(args.batch, args.tokens, args.decode_batch)
    wall, cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
    print(f"this script: {wall:.1f} s wall, {cpu:.1f} CPU seconds ({cpu / wall:.2f} cores busy on average)")


if __name__ == "__main__":
    main()
