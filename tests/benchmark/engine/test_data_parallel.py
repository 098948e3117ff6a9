"""Data-parallel training inside a cell: ``accelerate launch`` with two CPU processes on gloo
(``configs/accelerate/cpu-2proc.yaml``) against one process with the same effective batch."""
import json
import os
import socket
import subprocess
import sys

import pytest

from tests.benchmark.cli.test_cli import FAST, REPO, TINY, needs_data

CELL = f"qed/{TINY}/uld/seed1"
LOCKED = f"qed/{TINY}/untrained/seed0"
# Effective batch 4: one process runs micro-batches [a, b] and [c, d] of each step, two processes one each.
ARGS = ["--methods", "uld", "--limit-train", "16", "--batch-size", "2", "--grad-accum", "2", *FAST]
# The two runs do the same fp32 arithmetic on the same micro-batches (both on one thread per process) except the
# order in which the two halves of each gradient are added (all-reduce vs accumulation in place). Reordering a
# fp32 sum moves its result by ~1e-7 relative; four AdamW steps at lr 1e-4 keep the losses within 1e-6 relative.
LOSS_TOLERANCE = 1e-6


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_two_processes(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "configs" / "accelerate" / "cpu-2proc.yaml"), "--main_process_port", str(free_port()),
               "run_bench.py", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


def run_one_process(*args: str) -> subprocess.CompletedProcess:
    """``run_bench.py`` on one thread, as each process of the launch runs (torchrun sets OMP_NUM_THREADS=1)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "run_bench.py", *args], cwd=REPO, capture_output=True, text=True, env=env)


def read_log(cell_dir):
    return [json.loads(line) for line in (cell_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
@needs_data
def test_two_cpu_processes_match_one_process_with_the_same_effective_batch(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    # A cell locked by a live process on this host (this test) is left alone by both processes of the launch.
    lock = two / LOCKED / "LOCK"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    launched = launch_two_processes(*ARGS, "--cells", CELL, LOCKED, "--output", str(two))
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert launched.stdout.count(f"] {CELL}") == 1  # the main process speaks for both
    assert "1 done, 1 locked" in launched.stdout
    assert sorted(p.name for p in (two / LOCKED).iterdir()) == ["LOCK"]

    single = run_one_process(*ARGS, "--cells", CELL, "--output", str(one))
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]

    two_log, one_log = read_log(two / CELL), read_log(one / CELL)
    assert [r["step"] for r in two_log] == [r["step"] for r in one_log] == [1, 2, 3, 4]  # one writer, one line a step
    assert [r["answer_tokens"] for r in two_log] == [r["answer_tokens"] for r in one_log]
    for name in ("loss", "ce", "uld", "grad_norm"):
        for a, b in zip(two_log, one_log):
            assert a[name] == pytest.approx(b[name], rel=LOSS_TOLERANCE, abs=0), (name, a["step"])
    run = json.loads((two / CELL / "run.json").read_text())
    assert run["processes"] == 2
    assert run["train"]["data_parallel"] == {"processes": 2, "effective_batch": 4, "per_device_batch": 2,
                                             "accumulation": 1}
    assert json.loads((one / CELL / "run.json").read_text())["train"]["data_parallel"]["processes"] == 1
    # Evaluation was shared between the processes; the main process wrote every prediction, in the test set's order.
    ids = lambda cell: [json.loads(line)["id"] for line in (cell / "predictions.jsonl").read_text().splitlines()]  # noqa: E731
    assert ids(two / CELL) == ids(one / CELL) and len(ids(two / CELL)) == 4
    assert sorted(p.name for p in (two / CELL).iterdir()) == sorted(p.name for p in (one / CELL).iterdir())


@pytest.mark.slow
@needs_data
def test_a_method_with_its_own_projectors_trains_alike_on_two_processes(tmp_path):
    """dskdv2-eta's projector is outside the DDP-wrapped student: the harness averages its gradients itself, so the
    two-process log (loss, every term, the clipped norm over student and projector) is the one-process log."""
    cell = f"qed/{TINY}/dskdv2-eta/seed1"
    args = ["--methods", "dskdv2-eta", *ARGS[2:], "--cells", cell]
    launched = launch_two_processes(*args, "--output", str(tmp_path / "two"))
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    single = run_one_process(*args, "--output", str(tmp_path / "one"))
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    two_log, one_log = read_log(tmp_path / "two" / cell), read_log(tmp_path / "one" / cell)
    assert len(two_log) == len(one_log) == 4
    for name in ("loss", "kd", "t2s_ce", "s2t_kd", "grad_norm"):
        for a, b in zip(two_log, one_log):
            assert a[name] == pytest.approx(b[name], rel=1e-5, abs=0), (name, a["step"])
    run = json.loads((tmp_path / "two" / cell / "run.json").read_text())
    assert run["train"]["trainable_parameters"]["method"] == 64 * 64  # the t2s projector of the tiny pair


def test_the_fsdp_config_is_refused_with_its_reason(monkeypatch, capsys):
    from benchmark.cli.main import main

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what accelerate launch sets under configs/accelerate/fsdp.yaml
    assert main(["--methods", "none", "--pairs", TINY, "--tasks", "qed", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "FSDP is not supported by the harness yet" in err and len(err.splitlines()) == 1
