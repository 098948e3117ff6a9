"""``--executor gpus``: worker environments and a two-worker grid on CPU that runs every cell once (its bad input:
``test_bad_input.py``)."""
import json
import re

import pytest

from benchmark.run.executors import worker_environments
from tests.benchmark.cli.test_cli import FAST, TINY, needs_data, run_cli


def test_one_gpu_per_worker_round_robin_over_the_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    environments = worker_environments(3, cuda_devices=2, cpu_cores=16)
    assert [env["CUDA_VISIBLE_DEVICES"] for env in environments] == ["2", "5", "2"]
    assert [env["CTKD_WORKER"] for env in environments] == ["0", "1", "2"]
    assert all("OMP_NUM_THREADS" not in env for env in environments)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert [env["CUDA_VISIBLE_DEVICES"] for env in worker_environments(None, 4, 16)] == ["0", "1", "2", "3"]


def test_cpu_workers_share_the_cores():
    environments = worker_environments(3, cuda_devices=0, cpu_cores=8)
    assert [env["OMP_NUM_THREADS"] for env in environments] == ["2", "2", "2"]
    assert worker_environments(4, 0, 2)[0]["OMP_NUM_THREADS"] == "1"
    with pytest.raises(ValueError, match="no CUDA device is visible; pass --workers N"):
        worker_environments(None, cuda_devices=0, cpu_cores=8)


@needs_data
def test_two_workers_run_every_cell_exactly_once(tmp_path):
    out = tmp_path / "runs"
    args = ["--methods", "sft", "uld", "--limit-train", "4", "--batch-size", "2", *FAST, "--output", str(out)]
    result = run_cli(*args, "--executor", "gpus", "--workers", "2")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    cells = [f"qed/{TINY}/{method}/seed{seed}" for method, seed in
             [("teacher", 0), ("untrained", 0), ("sft", 1), ("uld", 1)]]
    ran = cells_run_per_worker(result.stdout)
    assert sorted(cell for worker in ran.values() for cell in worker) == sorted(cells)  # each once, none twice
    assert set(ran) == {"0", "1"} and all(ran.values())  # both workers did work
    for worker, worker_cells in ran.items():
        for cell in worker_cells:
            assert json.loads((out / cell / "run.json").read_text())["worker"] == worker
    assert "4 done" in result.stdout.splitlines()  # the parent's summary, read from the result store
    forced = run_cli(*args, "--executor", "gpus", "--workers", "2", "--force")  # each cell again, still only once
    assert forced.returncode == 0, forced.stdout[-2000:]
    assert sorted(cell for worker in cells_run_per_worker(forced.stdout).values() for cell in worker) == sorted(cells)
    again = run_cli(*args, "--executor", "gpus", "--workers", "2")
    assert again.returncode == 0 and not any(cells_run_per_worker(again.stdout).values())


def cells_run_per_worker(stdout: str) -> dict[str, list[str]]:
    """Cells each worker ran: its ``[n/N] cell`` lines not followed by that worker's ``cached``/``locked``."""
    ran: dict[str, list[str]] = {}
    last: dict[str, str | None] = {}
    for line in stdout.splitlines():
        match = re.match(r"\[worker (\d+)\] (.*)$", line)
        if not match:
            continue
        worker, text = match.groups()
        ran.setdefault(worker, [])
        header = re.match(r"\[\d+/\d+\] (\S+)$", text)
        if header:
            last[worker] = header.group(1)
            ran[worker].append(header.group(1))
        elif text.strip() in ("cached", "locked") and last.get(worker):
            ran[worker].remove(last[worker])
            last[worker] = None
    return ran
