"""Regenerate ``docs/example-leaderboard.md`` and ``docs/example-leaderboard.png`` from a fresh default run.

Runs ``python run_bench.py`` (the no-argument default) into an output directory that must not exist yet, so that
the wall time written at the top is that of a full run, then copies the leaderboard it rendered into ``docs/``
under a header with the exact command, the date, the commit and the wall time.
The model cache (``.cache/``) may be warm; a first-ever run also assembles and dequantizes the GGUF files.

Usage: python -m benchmarks.example_leaderboard [--output runs]
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmark.budgets import BUDGETS, default_budget_name
from benchmark.results import git_state

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("runs"), help="result store of the run (must not exist)")
    args = parser.parse_args(argv)
    if args.output.exists():
        parser.error(f"--output {str(args.output)!r} exists; move it away so the run (and its wall time) is a full one")
    command = ["python", "run_bench.py"]
    if args.output != Path("runs"):
        command += ["--output", str(args.output)]
    git = git_state()
    started_at = time.strftime("%Y-%m-%d %H:%M %Z")
    started = time.perf_counter()
    status = subprocess.call([sys.executable, *command[1:]], cwd=REPO)
    wall = time.perf_counter() - started
    leaderboard = REPO / args.output / "leaderboard.md"
    if not leaderboard.exists():
        print(f"example_leaderboard: the run wrote no {leaderboard} (exit status {status})", file=sys.stderr)
        return 1
    DOCS.mkdir(exist_ok=True)
    shutil.copyfile(REPO / args.output / "leaderboard.png", DOCS / "example-leaderboard.png")
    commit = git.get("git_commit") or "unknown"
    budget_name = default_budget_name()  # what the no-argument command ran with
    budget = BUDGETS[budget_name]
    header = [
        "# Example leaderboard: the default run on a 2-core CPU",
        "",
        f"- Command: `{shlex.join(command)}` (exit status {status})",
        f"- Date: {started_at}",
        f"- Commit: `{commit}`{' (with uncommitted changes)' if git.get('git_dirty') else ''}",
        f"- Wall time: {wall / 60:.1f} min ({wall:.0f} s), model cache warm or cold as the run found it",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "",
        f"The `{budget_name}` budget trains on {budget.limit_train} examples and evaluates on {budget.limit_eval} per "
        "task, so every score carries roughly ±10-15 points of sampling noise: read it as proof that the whole "
        "pipeline runs, not as a ranking of methods. "
        "Regenerate with `python -m benchmarks.example_leaderboard` whenever the default's numbers change.",
        "",
        "![leaderboard](example-leaderboard.png)",
        "",
    ]
    body = leaderboard.read_text(encoding="utf-8").split("\n", 1)[1]  # drop the leaderboard's own title
    (DOCS / "example-leaderboard.md").write_text("\n".join(header) + body, encoding="utf-8")
    print(f"wrote {DOCS / 'example-leaderboard.md'} and {DOCS / 'example-leaderboard.png'} ({wall:.0f} s)")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
