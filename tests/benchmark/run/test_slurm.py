"""``--executor slurm``: the array it would submit (dry run), its options (flags and YAML), and a real array on a
tiny pair through submitit's local executor, with a task killed mid-cell and picked up by the next submission."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from benchmark.cli.main import main
from benchmark.run.slurm import task_argv
from tests.benchmark.cli.test_cli import REPO, TINY, needs_data, run_cli

UNTRAINED, SFT = f"qed/{TINY}/untrained/seed0", f"qed/{TINY}/sft/seed1"
GRID = ["--methods", "sft", "--pairs", TINY, "--tasks", "qed", "--limit-train", "16", "--batch-size", "2",
        "--limit-eval", "4", "--max-new-tokens", "6", "--eval-batch-size", "4", "--cells", UNTRAINED, SFT]
LOCAL = ["--executor", "slurm", "--slurm-cluster", "local", "--slurm-gpus", "0", "--slurm-time", "10"]


def test_an_array_task_runs_the_submitted_command_without_the_submission_flags():
    argv = ["--methods", "sft", "--executor", "slurm", "--slurm-setup", "module load cuda", "source a b",
            "--slurm-time=30", "--dry-run", "--cells", "a/b/c/seed1", "--lr", "-1", "--no-slurm-wait",
            "--no-leaderboard", "--output", "runs"]
    assert task_argv(argv) == ("--methods", "sft", "--lr", "-1", "--output", "runs")


@needs_data
def test_dry_run_prints_one_line_per_task_and_the_sbatch_parameters(tmp_path, capsys):
    config = tmp_path / "slurm.yaml"
    config.write_text("partition: gpu-long\naccount: proj42\nparallelism: 8\ntime: 90\n"
                      "setup: [source .venv/bin/activate]\n")
    argv = [*GRID, "--output", str(tmp_path / "runs"), "--executor", "slurm", "--slurm-config", str(config),
            "--slurm-time", "45", "--slurm-mem-gb", "32", "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "slurm array: 2 tasks (0 of 2 cells finished, not submitted), at most 8 at a time"
    for index, cell in enumerate((UNTRAINED, SFT)):
        assert out[1 + index].startswith(f"  task {index}: {cell}: {sys.executable} {REPO / 'run_bench.py'} --methods")
        assert out[1 + index].endswith(f"--executor local --workers 1 --no-leaderboard --cells {cell}")
        assert "--dry-run" not in out[1 + index] and "--slurm" not in out[1 + index]
    sbatch = set(out)
    # The file's values, the flags over them (time), the defaults for the rest; the array capped at 2 tasks.
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --partition=gpu-long", "#SBATCH --account=proj42",
                 "#SBATCH --time=45", "#SBATCH --mem=32768M", "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --job-name=ctkd-bench", f"#SBATCH --chdir={os.getcwd()}", "source .venv/bin/activate"):
        assert line in sbatch, line
    assert not (tmp_path / "runs" / UNTRAINED).exists()  # nothing ran


@pytest.mark.parametrize(
    "extra,yaml,expected",
    [
        (["--slurm-time", "0"], None, "--slurm-time 0: expected an integer > 0"),
        (["--slurm-cluster", "moon"], None, "argument --slurm_cluster/--slurm-cluster: invalid choice: 'moon'"),
        ([], "partion: gpu\n", "unknown key 'partion'; accepted: accelerate_config, account, cluster, cpus, gpus,"),
        ([], "gpus: two\n", "--slurm-config gpus: 'two': argument --slurm_gpus/--slurm-gpus: invalid int value"),
        ([], "parallelism: 0\n", "--slurm-parallelism 0: expected an integer > 0"),
        ([], "setup: module load cuda\n", "setup must be a list of shell lines"),
        ([], "- a list\n", "expected a mapping of option names to values"),
    ],
)
def test_bad_slurm_options_are_one_line_and_exit_code_2(tmp_path, capsys, extra, yaml, expected):
    config = []
    if yaml is not None:
        (tmp_path / "s.yaml").write_text(yaml)
        config = ["--slurm-config", str(tmp_path / "s.yaml")]
    assert main(["--executor", "slurm", *config, *extra, "--dry-run", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1


def test_without_slurm_the_submission_says_how_to_run_locally(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    assert main(["--executor", "slurm", "--methods", "none", "--pairs", TINY, "--tasks", "qed",
                 "--output", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert 'Could not detect "srun"' in err and "--slurm-cluster local runs the array on this machine" in err


@pytest.mark.slow
@needs_data
def test_local_array_fills_the_leaderboard_and_a_killed_task_is_picked_up_next_time(tmp_path):
    out = tmp_path / "runs"
    args = [*GRID, *LOCAL, "--output", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen([sys.executable, "run_bench.py", *args], cwd=REPO, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lock = out / SFT / "LOCK"
    deadline = time.time() + 240
    holder = None
    while holder is None and time.time() < deadline and first.poll() is None:
        try:
            holder = json.loads(lock.read_text())["pid"]
        except (OSError, ValueError):
            time.sleep(0.02)
    assert holder is not None, "the sft task never took its cell's lock"
    os.kill(holder, signal.SIGKILL)  # the array task dies mid-cell, leaving its lock behind
    stdout, _ = first.communicate(timeout=240)
    assert first.returncode == 1, stdout[-3000:]
    assert f"({SFT}) did not finish: RuntimeError: {SFT}: run_bench.py exited with code -9" in stdout
    assert "1 done, 1 missing" in stdout
    assert (out / UNTRAINED / "DONE").exists() and not (out / SFT / "DONE").exists() and lock.exists()

    dry = run_cli(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "slurm array: 1 tasks (1 of 2 cells finished, not submitted)" in dry.stdout
    assert f"  task 0: {SFT}: " in dry.stdout and f"{UNTRAINED}:" not in dry.stdout

    again = run_cli(*args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "slurm array: 1 tasks" in again.stdout and "2 done" in again.stdout.splitlines()
    assert (out / SFT / "DONE").exists() and not lock.exists()
    board = (out / "leaderboard.md").read_text()
    assert "| untrained |" in board and "| sft |" in board
    assert json.loads((out / SFT / "run.json").read_text())["train"]["steps"] == 8


@needs_data
def test_a_cell_outside_the_grid_is_a_usage_error(tmp_path, capsys):
    assert main(["--methods", "sft", "--pairs", TINY, "--tasks", "qed", "--cells", f"qed/{TINY}/uld/seed1",
                 "--output", str(tmp_path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--cells 'qed/{TINY}/uld/seed1': not a cell of this grid; its cells: qed/{TINY}/teacher/seed0, " in err


@pytest.mark.parametrize("importer,closed", [("import submitit", True),
                                             ("from benchmark.run.slurm import _import_submitit; _import_submitit()", False)])
def test_submitit_is_imported_without_closing_other_libraries_log_handlers(importer, closed):
    """submitit's import runs logging.config.dictConfig, which closes every handler in the process (pytest's
    captured streams among them); the executor imports it without that set-up."""
    probe = ("import logging\nclass Probe(logging.Handler):\n    closed = False\n    def close(self):\n"
             "        Probe.closed = True\nlogging.getLogger('other').addHandler(Probe())\n"
             f"{importer}\nprint(Probe.closed)\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(closed)
