"""``--executor slurm``: the grid's unfinished cells as ONE Slurm job array, submitted through submitit.

Finished cells are skipped before submission. Each array task runs this same command for one cell
(``--cells KEY --executor local``), so it takes the cell's lock like any other run: a re-submission, a concurrent
run or a second array never run a cell twice, and a task killed mid-cell leaves a checkpoint that the next
submission resumes (its stale lock is taken over; see :class:`benchmark.store.CellLock`). Results land in the same
store; the submitting process waits for the array and renders the leaderboard (or, with ``--no-slurm-wait``,
returns at once: render later with ``run_bench.py leaderboard``). ``--slurm-cluster local`` runs the array on this
machine through submitit's local executor (tests, or a node without Slurm): there every task starts at once.

The options are flags (``--slurm-partition gpu``) and/or a YAML file (``--slurm-config FILE``: the same names
without the ``slurm_`` prefix); a flag overrides the file.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Sequence

from benchmark.config import Section, option
from benchmark.core.paths import REPO_ROOT
from benchmark.run.executors import RUN_STARTED_ENV

if TYPE_CHECKING:
    from benchmark.run.grid import CellOutcome, Grid

PREFIX = "slurm_"
JOB_NAME = "ctkd-bench"


@dataclass(frozen=True)
class SlurmOptions(Section):
    """How the array is submitted. Every field is a flag (``--slurm-time 240``) and a key of ``--slurm-config``."""

    name = "slurm"
    slurm_config: str | None = option(None, "YAML file of slurm options, keys without the slurm_ prefix (e.g. "
                                            "partition: gpu); flags override it", metavar="FILE.yaml")
    slurm_partition: str | None = option(None, "partition (default: the cluster's)")
    slurm_account: str | None = option(None, "account to charge (default: yours)")
    slurm_qos: str | None = option(None, "quality of service (default: the cluster's)")
    slurm_time: int = option(240, "time limit of each array task, in minutes", check="positive")
    slurm_gpus: int = option(1, "GPUs per array task (one cell each; more with --slurm-accelerate-config)",
                             check="non_negative")
    slurm_cpus: int = option(8, "CPU cores per array task", check="positive")
    slurm_mem_gb: float = option(64.0, "memory per array task, in GB", check="positive")
    slurm_parallelism: int = option(32, "array tasks running at once (the array's %%N cap)", check="positive")
    slurm_setup: list[str] = option((), "shell lines run before each task, e.g. 'source .venv/bin/activate'",
                                    metavar="LINE")
    slurm_accelerate_config: str | None = option(None, "run each task under accelerate launch with this config and "
                                                       "one process per GPU (data-parallel training inside the cell)",
                                                 metavar="FILE.yaml")
    slurm_cluster: Literal["slurm", "local"] = option("slurm", "local: run the array on this machine through "
                                                               "submitit's local executor (tests; no Slurm)")
    slurm_wait: bool = option(True, "wait for the array and render the leaderboard (--no-slurm-wait: submit and "
                                    "return)")

    def sbatch_parameters(self) -> dict[str, Any]:
        """The parameters of submitit's Slurm executor (sbatch flags) for these options."""
        parameters: dict[str, Any] = {
            "job_name": JOB_NAME, "time": self.slurm_time, "nodes": 1, "ntasks_per_node": 1,
            "cpus_per_task": self.slurm_cpus, "mem": f"{round(self.slurm_mem_gb * 1024)}M",
            "array_parallelism": self.slurm_parallelism,
            # Tasks start where the submission was made, so relative paths (--output, configs) mean the same.
            "additional_parameters": {"chdir": os.getcwd()},
        }
        if self.slurm_gpus:
            parameters["gpus_per_node"] = self.slurm_gpus
        for name in ("partition", "account", "qos"):
            if getattr(self, PREFIX + name):
                parameters[name] = getattr(self, PREFIX + name)
        if self.slurm_setup:
            parameters["setup"] = list(self.slurm_setup)
        return parameters


FIELDS = {f.name for f in dataclasses.fields(SlurmOptions)}


def slurm_options(given: Mapping[str, Any], parse: Callable[[str, str], Any]) -> SlurmOptions:
    """The options from the field defaults < ``--slurm-config`` < the flags ``given`` (``{field: value}``).

    ``parse(field, text)`` parses a YAML scalar as its flag would be; raises ValueError naming a bad key or value.
    """
    from_file: dict[str, Any] = {}
    path = given.get("slurm_config")
    if path:
        from_file = _read_yaml(Path(path), parse)
    return SlurmOptions(**{**from_file, **given})


def _read_yaml(path: Path, parse: Callable[[str, str], Any]) -> dict[str, Any]:
    import yaml

    try:
        content = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"--slurm-config {str(path)!r}: {str(error).splitlines()[0]}") from None
    if not isinstance(content, dict):
        raise ValueError(f"--slurm-config {str(path)!r}: expected a mapping of option names to values")
    accepted = sorted(name.removeprefix(PREFIX) for name in FIELDS if name != "slurm_config")
    values: dict[str, Any] = {}
    for key, value in content.items():
        if str(key) not in accepted:
            raise ValueError(f"--slurm-config {str(path)!r}: unknown key {key!r}; accepted: {', '.join(accepted)}")
        name = PREFIX + str(key)
        if name == "slurm_setup":
            if not isinstance(value, list) or not all(isinstance(line, str) for line in value):
                raise ValueError(f"--slurm-config {str(path)!r}: setup must be a list of shell lines")
            values[name] = value
        else:
            values[name] = parse(name, str(value).lower() if isinstance(value, bool) else str(value))
    return values


@dataclass(frozen=True)
class CellJob:
    """One array task: ``run_bench.py ARGV`` for one cell, here or under ``accelerate launch``. Pickled by submitit
    and called on the node; a non-zero exit other than 1 (a cell failure, recorded in the store) fails the task."""

    key: str
    argv: tuple[str, ...]
    run_started: str  # the submission's start time: --force re-runs what was finished before it
    accelerate_config: str | None = None
    processes: int = 1

    def command(self, port: int | str) -> list[str]:
        run = [str(REPO_ROOT / "run_bench.py"), *self.argv, "--executor", "local", "--workers", "1",
               "--no-leaderboard", "--cells", self.key]
        if not self.accelerate_config:
            return [sys.executable, *run]
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", self.accelerate_config,
                "--num_processes", str(self.processes), "--main_process_port", str(port), *run]

    def __call__(self) -> int:
        env = {**os.environ, RUN_STARTED_ENV: self.run_started, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
        code = subprocess.run(self.command(_free_port()), env=env, check=False).returncode
        if code not in (0, 1):
            raise RuntimeError(f"{self.key}: run_bench.py exited with code {code}")
        return code


# Flags of the submitting command that mean nothing to an array task (which gets its own executor and cell).
_SUBMISSION_FLAGS = {"executor", "workers", "cells", "dry_run", "leaderboard", *FIELDS}


def task_argv(argv: Sequence[str]) -> tuple[str, ...]:
    """``argv`` without the submission's own flags (``--executor``, ``--dry-run``, ``--slurm-*``, ...) and their
    values: what every array task runs, before its ``--cells KEY``."""
    kept: list[str] = []
    dropping = False
    for token in argv:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            dropping = name in _SUBMISSION_FLAGS or name.removeprefix("no_") in _SUBMISSION_FLAGS
            if dropping:
                continue
        elif dropping:  # a value of a dropped flag
            continue
        kept.append(token)
    return tuple(kept)


def _free_port() -> int:
    """A free TCP port on this node, for the launch's rendezvous (several tasks may share a node)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_array(grid: "Grid", options: SlurmOptions, argv: Sequence[str], dry_run: bool,
              log: Callable[[str], None] = print) -> "list[CellOutcome] | None":
    """Submit the grid's unfinished cells as one array (or print it, ``dry_run``); once the array has ended, every
    cell's outcome as the store holds it (None when not waiting for it)."""
    keys, _ = grid.prepare(dry_run)
    pending = grid.pending(keys)
    started, cell_argv = str(grid.started), task_argv(argv)
    jobs = [CellJob(str(key), cell_argv, started, options.slurm_accelerate_config, max(options.slurm_gpus, 1))
            for key in pending]
    folder = grid.store.job_logs / "%j"
    log(f"slurm array: {len(jobs)} tasks ({len(keys) - len(jobs)} of {len(keys)} cells finished, not submitted), "
        f"at most {options.slurm_parallelism} at a time")
    if dry_run:
        for index, job in enumerate(jobs):
            log(f"  task {index}: {job.key}: {shlex.join(job.command('PORT'))}")
        if jobs:
            log(sbatch_script(options, folder, len(jobs)))
        return []
    if not jobs:
        return grid.stored_outcomes()
    submitted = _executor(options, folder).submit_array(jobs)
    log(f"submitted array {submitted[0].job_id.split('_')[0]}; logs in {grid.store.job_logs}")
    if not options.slurm_wait:
        log(f"not waiting: once it has ended, `run_bench.py leaderboard --runs {grid.store.root}` renders the results")
        return None
    for job, handle in zip(jobs, submitted):
        try:
            handle.result()
        except Exception as error:  # the store says what became of the cell; the task's own log says why
            log(f"array task {handle.job_id} ({job.key}) did not finish: {_reason(error)}")
    return grid.stored_outcomes()


def _reason(error: Exception) -> str:
    """The last ``...Error: ...`` line of a failed task's report (submitit quotes the task's whole traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "Error: " in line), lines[0] if lines else type(error).__name__)


def sbatch_script(options: SlurmOptions, folder: Path, tasks: int) -> str:
    """The sbatch script submitit writes for an array of ``tasks`` (its own builder; submitit is pinned)."""
    _import_submitit()
    from submitit.slurm.slurm import _make_sbatch_string

    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    return _make_sbatch_string(command=command, folder=folder, map_count=tasks, **options.sbatch_parameters())


def _import_submitit() -> Any:
    """submitit, imported without its logging set-up: the ``logging.config.dictConfig`` it runs on import would
    close every logging handler other libraries hold in this process. Its array tasks configure it as usual."""
    previous = os.environ.get("SUBMITIT_LOG_LEVEL")
    os.environ["SUBMITIT_LOG_LEVEL"] = "NOCONFIG"
    try:
        import submitit
    finally:
        if previous is None:
            del os.environ["SUBMITIT_LOG_LEVEL"]
        else:
            os.environ["SUBMITIT_LOG_LEVEL"] = previous
    return submitit


def _executor(options: SlurmOptions, folder: Path) -> Any:
    submitit = _import_submitit()
    if options.slurm_cluster == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=options.slurm_time, gpus_per_node=options.slurm_gpus)
        return executor
    try:
        executor = submitit.SlurmExecutor(folder=folder)
    except RuntimeError as error:  # no srun here
        raise ValueError(f"--executor slurm: {error} (--slurm-cluster local runs the array on this machine; "
                         "--dry-run prints it)") from None
    executor.update_parameters(**options.sbatch_parameters())
    return executor

