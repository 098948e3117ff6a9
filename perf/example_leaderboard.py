"""Regenerate ``docs/example-leaderboard.md`` and ``docs/example-leaderboard.png`` from a fresh default run.

Runs ``python run_bench.py`` (the no-argument default) into an output directory that must not exist yet, so that
the wall time written at the top is that of a full run, records the run's facts (command, date, commit, wall time,
which models the run had to build, the CPU) in ``<output>/example_run.json``, and writes the leaderboard it rendered
into ``docs/`` under a header with those facts. ``--render-only`` redoes the docs from an existing output directory and
its recorded facts (after a change to the leaderboard rendering, say), training and evaluating nothing.

Usage: python -m perf.example_leaderboard [--output runs] [--render-only]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmark.config import budget_settings, default_budget_name
from benchmark.core.files import write_json
from benchmark.core.paths import REPO_ROOT, default_cache_dir
from benchmark.run.provenance import cpu_description, git_state
from leaderboards import render_leaderboards

REPO = REPO_ROOT
DOCS = REPO / "docs"
FACTS = "example_run.json"


def run_default(output: Path) -> dict[str, Any]:
    """Run the default into ``output`` and return the facts the docs' header states."""
    command = ["python", "run_bench.py"] + ([] if output == Path("runs") else ["--output", str(output)])
    cached_before = cached_models()
    git = git_state()
    started_at = time.strftime("%Y-%m-%d %H:%M %Z")
    started = time.perf_counter()
    status = subprocess.call([sys.executable, *command[1:]], cwd=REPO)
    return {
        "command": shlex.join(command), "exit_status": status, "started_at": started_at,
        "git_commit": git.get("git_commit"), "git_dirty": git.get("git_dirty"),
        "wall_time_s": time.perf_counter() - started, "model_cache": model_cache_state(cached_before),
        "budget": default_budget_name(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({cpu_description()}), "
                   f"{platform.python_implementation()} {platform.python_version()}",
    }


def cached_models() -> set[str]:
    """The dequantized models in the cache (one directory each)."""
    models = default_cache_dir() / "models"
    return {entry.name for entry in models.iterdir() if entry.is_dir()} if models.exists() else set()


def model_cache_state(cached_before: set[str]) -> str:
    """Which models the run had to build (GGUF assembly and dequantization are in its wall time)."""
    built = sorted(cached_models() - cached_before)
    if not built:
        return "warm model cache"
    reused = sorted(cached_before)
    return f"models built in the run: {', '.join(built)}" + (f"; cached before: {', '.join(reused)}" if reused else
                                                              " (cold model cache)")


def write_docs(output: Path, facts: dict[str, Any]) -> None:
    written = render_leaderboards(output)
    data = budget_settings(facts["budget"]).data
    wall = facts["wall_time_s"]
    header = [
        "# Example leaderboard: the default run on a 2-core CPU",
        "",
        f"- Command: `{facts['command']}` (exit status {facts['exit_status']})",
        f"- Date: {facts['started_at']}",
        f"- Commit: `{facts['git_commit'] or 'unknown'}`{' (with uncommitted changes)' if facts['git_dirty'] else ''}",
        f"- Wall time: {wall / 60:.1f} min ({wall:.0f} s); {facts['model_cache']}",
        f"- Machine: {facts['machine']}",
        f"- Tables rendered from the run's result store by commit `{git_state().get('git_commit') or 'unknown'}`",
        "",
        f"The `{facts['budget']}` budget trains on {data.limit_train} examples and evaluates on {data.limit_eval} "
        "per task with one seed: the 95 % intervals, the vs-SFT marks and the power line below say how little "
        "such a run can tell apart; read it as proof that the whole pipeline runs, not as a ranking of methods. "
        "Regenerate with `python -m perf.example_leaderboard` whenever the default's numbers change.",
        "",
        "![leaderboard](example-leaderboard.png)",
        "",
    ]
    body = written["leaderboard.md"].read_text(encoding="utf-8").split("\n", 1)[1]  # drop its own title
    DOCS.mkdir(exist_ok=True)
    (DOCS / "example-leaderboard.md").write_text("\n".join(header) + body, encoding="utf-8")
    (DOCS / "example-leaderboard.png").write_bytes(written["leaderboard.png"].read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("runs"), help="result store of the run")
    parser.add_argument("--render-only", action="store_true", help=f"redo the docs from --output and its {FACTS}")
    args = parser.parse_args(argv)
    facts_file = REPO / args.output / FACTS
    if args.render_only:
        if not facts_file.exists():
            parser.error(f"--render-only: {facts_file} does not exist; run without --render-only first")
        facts = json.loads(facts_file.read_text(encoding="utf-8"))
    else:
        if (REPO / args.output).exists():
            parser.error(f"--output {str(args.output)!r} exists; move it away so the run (and its wall time) is a full one")
        facts = run_default(args.output)
        if not (REPO / args.output / "leaderboard.md").exists():
            print(f"example_leaderboard: the run rendered no leaderboard (exit status {facts['exit_status']})",
                  file=sys.stderr)
            return 1
        write_json(facts_file, facts)
    write_docs(REPO / args.output, facts)
    print(f"wrote {DOCS / 'example-leaderboard.md'} and {DOCS / 'example-leaderboard.png'}")
    return int(facts["exit_status"])


if __name__ == "__main__":
    raise SystemExit(main())
