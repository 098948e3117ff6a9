"""Run ``run_bench.py`` once per case, each case in a process of its own, reporting what each did.

``python tests/support/fork_cli.py WATCH_DIR < cases.json > results.json``: ``cases.json`` is a list of
``{"argv": [...], "cwd": DIR}``; the result per case is its exit code, its stdout and stderr, and the paths under
WATCH_DIR that it created, changed or removed.

Each case is a child forked from this process after it imported the heavy modules (torch, transformers, the
registries' built-in entries) once; the child runs ``run_bench.py`` as ``__main__`` with the case's arguments, as
``python run_bench.py ARGV`` would, but without paying ~3 s of imports per case. The child's exit code, output
and file effects are its own, so every case is checked exactly as a separate command.
"""
from __future__ import annotations

import hashlib
import json
import os
import runpy
import signal
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CASE_TIMEOUT_S = 120


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: a file's mode and content hash, a directory's mode, a link's target."""
    entries = {}
    for path in sorted(root.rglob("*")):
        relative, info = str(path.relative_to(root)), path.lstat()
        if path.is_symlink():
            entries[relative] = f"link {os.readlink(path)}"
        elif path.is_dir():
            entries[relative] = f"dir {info.st_mode:o}"
        else:
            entries[relative] = f"file {info.st_mode:o} {hashlib.sha256(path.read_bytes()).hexdigest()}"
    return entries


def run_case(argv: list[str], cwd: str, capture: Path) -> int:
    """Fork, run ``run_bench.py ARGV`` in the child with stdout/stderr into ``capture``.{out,err}; the exit code."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            for fd, suffix in ((1, "out"), (2, "err")):
                os.dup2(os.open(f"{capture}.{suffix}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            os.chdir(cwd)
            sys.argv = [str(REPO / "run_bench.py"), *argv]
            try:
                runpy.run_path(sys.argv[0], run_name="__main__")
                code = 0
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
                if isinstance(exit.code, str):
                    print(exit.code, file=sys.stderr)
            except BaseException:  # as the interpreter would: the traceback, exit code 1
                traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    # A case its checks did not stop runs the grid; past the timeout it is killed (exit code -9).
    signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
    signal.alarm(CASE_TIMEOUT_S)
    _, status = os.waitpid(pid, 0)
    signal.alarm(0)
    return os.waitstatus_to_exitcode(status)


def main() -> None:
    watch = Path(sys.argv[1])
    cases = json.load(sys.stdin)
    sys.path[0] = str(REPO)  # where ``python run_bench.py`` imports from, instead of this script's folder
    # What every case imports anyway; the registries' built-in entries register on import, in the parent once.
    import benchmark.cli.commands.run  # noqa: F401

    import benchmark.run.grid  # noqa: F401
    from methods.registry import BUILTIN_METHOD_MODULES
    from tasks.registry import BUILTIN_TASK_MODULES

    for module in (*BUILTIN_METHOD_MODULES, *BUILTIN_TASK_MODULES):
        __import__(module)
    capture = watch.parent / ".fork_cli_capture"
    results = []
    for case in cases:
        before = snapshot(watch)
        code = run_case(case["argv"], case["cwd"], capture)
        after = snapshot(watch)
        changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
        results.append({"code": code, "stdout": Path(f"{capture}.out").read_text(errors="replace"),
                        "stderr": Path(f"{capture}.err").read_text(errors="replace"), "changed": changed})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
