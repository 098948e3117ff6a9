"""How the grid's cells are spread: ``local`` runs them one after another in this process; ``gpus`` starts one
worker process per visible GPU (or ``--workers N``, also on CPU), each running the same command locally.

Cells are independent and small enough for one device each, so a worker per GPU is the parallelism the grid
needs. The per-cell lock (:class:`benchmark.store.CellLock`) makes workers take disjoint cells, shared caches
are built once (:mod:`benchmark.core.build_lock`), and the parent reads every cell's outcome from the result store
once the workers are done: a worker that dies loses only the cell it was running, which the next run resumes.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Callable, Sequence

from benchmark.core.paths import REPO_ROOT
from benchmark.run.provenance import WORKER_ENV

RUN_STARTED_ENV = "CTKD_RUN_STARTED"  # one start time for all workers: ``--force`` re-runs what was done before it


def worker_environments(workers: int | None, cuda_devices: int, cpu_cores: int) -> list[dict[str, str]]:
    """Environment overrides per worker: one GPU each (round-robin when there are more workers than GPUs), or on
    a CPU-only machine an equal share of the cores."""
    if workers is None:
        if cuda_devices == 0:
            raise ValueError("--executor gpus: no CUDA device is visible; pass --workers N to run N workers on the CPU")
        workers = cuda_devices
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    device_ids = visible.split(",") if visible else [str(i) for i in range(cuda_devices)]
    environments = []
    for index in range(workers):
        # Workers print one line per cell; progress bars of several processes on one terminal are unreadable.
        env = {WORKER_ENV: str(index), "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
        if cuda_devices:
            env["CUDA_VISIBLE_DEVICES"] = device_ids[index % len(device_ids)]
        else:
            env["OMP_NUM_THREADS"] = str(max(1, cpu_cores // workers))
        environments.append(env)
    return environments


def run_workers(argv: Sequence[str], environments: Sequence[dict[str, str]], log: Callable[[str], None] = print) -> list[int]:
    """Run ``run_bench.py ARGV --executor local --workers 1 --no-leaderboard`` once per environment, relaying each
    worker's output line by line under its number; returns the workers' exit codes."""
    # The last occurrence of a flag wins in argparse, so these override whatever ARGV says.
    command = [sys.executable, str(REPO_ROOT / "run_bench.py"), *argv,
               "--executor", "local", "--workers", "1", "--no-leaderboard"]
    shared = {RUN_STARTED_ENV: str(time.time())}
    processes = [
        subprocess.Popen(command, env={**os.environ, **shared, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
        for env in environments
    ]
    relays = [threading.Thread(target=_relay, args=(i, p.stdout, log), daemon=True) for i, p in enumerate(processes)]
    for relay in relays:
        relay.start()
    try:
        codes = [process.wait() for process in processes]
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches every worker by itself; an interrupt sent to the parent alone is passed on.
        for process in processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait()
        raise
    for relay in relays:
        relay.join()
    return codes


def _relay(index: int, stream: IO[str] | None, log: Callable[[str], None]) -> None:
    assert stream is not None
    for line in stream:
        log(f"[worker {index}] {line.rstrip()}")
