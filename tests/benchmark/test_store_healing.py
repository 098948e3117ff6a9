"""A damaged result store heals on the next run; a full or read-only disk fails one cell; Ctrl-C stops cleanly.

Grid-level tests stand in a recipe that writes what a finished cell holds without loading a model (the grid and the
store are what is tested); the end-to-end tests run the real command line on the tiny pair.
"""
from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import benchmark.core.files
from benchmark.cli.commands.run import _SETTING_FIELDS
from benchmark.cli.main import command_parser, main
from benchmark.cli.resolve import resolve_run
from benchmark.config import RunOptions
from benchmark.run.grid import Grid
from benchmark.store import Cell, CellKey, Store, scan_store
from tests.benchmark.cli.test_cli import REPO, TINY, needs_data

pytestmark = needs_data
SEEDS = ("1", "2", "3", "4", "5", "6")


class FakeRecipe:
    """Stands in for :class:`benchmark.run.recipe.CellRecipe`: finishes a cell with numbers made from its seed."""

    ran: list[str] = []

    def __init__(self, ctx, cell, method, teachers, options, config_hash) -> None:
        self.cell, self.config_hash = cell, config_hash

    def run(self) -> float:
        FakeRecipe.ran.append(str(self.cell.key))
        score = 10.0 + self.cell.key.seed
        self.cell.finish({"rougeLsum": score}, [{"id": "1", "prediction": "p", "rougeLsum": score}],
                         {"config_hash": self.config_hash, "wall_time_s": 1.0})
        return 1.0


@pytest.fixture
def grid_run(monkeypatch, tmp_path):
    """``grid_run(*argv)``: run a grid of the tiny pair on PubMedQA into ``tmp_path/runs`` with the fake recipe;
    returns the cells it ran and the lines it printed."""
    monkeypatch.setattr("benchmark.run.grid.CellRecipe", FakeRecipe)
    parser, _ = command_parser("run")

    def run(*argv: str) -> tuple[list[str], list[str]]:
        values = vars(parser.parse_args(["--pairs", TINY, "--tasks", "pubmedqa", "--methods", "sft", "--seeds", *SEEDS,
                                         "--output", str(tmp_path / "runs"), *argv]))
        options = RunOptions(**{name: values[name] for name in RunOptions.__dataclass_fields__})
        flags = {path: values[name] for name, path in _SETTING_FIELDS.items() if name in values}
        run_config = resolve_run(options, flags)
        lines: list[str] = []
        FakeRecipe.ran = []
        Grid(run_config, log=lines.append).run()
        return FakeRecipe.ran, lines

    return run


def cell_dir(root: Path, method: str, seed: int) -> Path:
    return Store(root).cell(CellKey("pubmedqa", TINY, method, seed)).dir


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def damage(root: Path) -> dict[str, tuple[str, bytes]]:
    """One kind of damage per cell; returns each damaged cell with its damaged file and that file's bytes."""
    def torn(path: Path) -> bytes:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        return path.read_bytes()

    teacher, untrained = cell_dir(root, "teacher", 0), cell_dir(root, "untrained", 0)
    sft = {seed: cell_dir(root, "sft", seed) for seed in range(1, 7)}
    (untrained / "config.json").write_text("{not json")
    edited = json.loads((sft[5] / "config.json").read_text())
    edited["config"]["eval"]["limit_eval"] = 999  # an edit that leaves the hash as it was
    (sft[5] / "config.json").write_text(json.dumps(edited))
    (sft[3] / "config.json").write_bytes((sft[4] / "config.json").read_bytes())  # another cell's config
    (sft[4] / "metrics.json").unlink()
    return {
        "pubmedqa/tiny-qwen2-to-gpt2/teacher/seed0": ("metrics.json", torn(teacher / "metrics.json")),
        "pubmedqa/tiny-qwen2-to-gpt2/untrained/seed0": ("config.json", b"{not json"),
        "pubmedqa/tiny-qwen2-to-gpt2/sft/seed1": ("predictions.jsonl", torn(sft[1] / "predictions.jsonl")),
        "pubmedqa/tiny-qwen2-to-gpt2/sft/seed2": ("run.json", torn(sft[2] / "run.json")),
        "pubmedqa/tiny-qwen2-to-gpt2/sft/seed3": ("config.json", (sft[3] / "config.json").read_bytes()),
        "pubmedqa/tiny-qwen2-to-gpt2/sft/seed4": ("metrics.json", b""),  # missing: nothing to keep aside
        "pubmedqa/tiny-qwen2-to-gpt2/sft/seed5": ("config.json", (sft[5] / "config.json").read_bytes()),
    }


EXPECTED_PROBLEMS = {
    "pubmedqa/tiny-qwen2-to-gpt2/teacher/seed0": "metrics.json, line 2: invalid JSON (Unterminated string",
    "pubmedqa/tiny-qwen2-to-gpt2/untrained/seed0": "config.json, line 1: invalid JSON (Expecting property name",
    "pubmedqa/tiny-qwen2-to-gpt2/sft/seed1": "predictions.jsonl, line 1, column 26: invalid JSON (Expecting value)",
    "pubmedqa/tiny-qwen2-to-gpt2/sft/seed2": "run.json, line 2: invalid JSON (Unterminated string",
    "pubmedqa/tiny-qwen2-to-gpt2/sft/seed3": "config.json: config seed 4 does not match its directory (3)",
    "pubmedqa/tiny-qwen2-to-gpt2/sft/seed4": "metrics.json is missing",
    "pubmedqa/tiny-qwen2-to-gpt2/sft/seed5": "config.json: its hash does not match its config",
}


def test_a_damaged_store_is_listed_by_the_leaderboard_and_healed_by_the_next_run(grid_run, tmp_path):
    root = tmp_path / "runs"
    ran, _ = grid_run()
    assert len(ran) == 8
    damaged = damage(root)
    intact = files_of(cell_dir(root, "sft", 6))

    # The leaderboard renders the sound cell and lists every damaged one.
    scan = scan_store(root)
    assert [(c.method, c.seed) for c in scan.cells] == [("sft", 6)]
    assert {d.where: d.reason for d in scan.damaged}.keys() == EXPECTED_PROBLEMS.keys()
    for damaged_cell in scan.damaged:
        assert damaged_cell.reason.startswith(EXPECTED_PROBLEMS[damaged_cell.where])
    assert main(["leaderboard", "--runs", str(root)]) == 0
    markdown = (root / "leaderboard.md").read_text()
    assert "| sft | **16.0 [16.0, 16.0]** |" in markdown  # seed 6: 10 + 6, one example
    assert "## Damaged cells" in markdown
    assert "| pubmedqa/tiny-qwen2-to-gpt2/sft/seed3 | config.json: config seed 4 does not match its directory (3) |" \
           in markdown

    # The next run re-runs exactly the damaged cells, saying so once each, and keeps the damaged files aside.
    ran, lines = grid_run()
    assert sorted(ran) == sorted(damaged)
    notes = [line for line in lines if "damaged, kept aside as *.corrupt and run again" in line]
    assert len(notes) == len(damaged)
    for cell, (name, content) in damaged.items():
        kept = root / cell / f"{name}.corrupt"
        assert kept.read_bytes() == content if content else not kept.exists()
    assert files_of(cell_dir(root, "sft", 6)) == intact
    assert scan_store(root).damaged == () and len(scan_store(root).cells) == 8
    assert grid_run()[0] == []  # healed: nothing left to run


def test_a_torn_training_log_is_kept_aside_and_training_restarts(grid_run, tmp_path):
    root = tmp_path / "runs"
    grid_run()
    sft = cell_dir(root, "sft", 1)
    (sft / "DONE").unlink()  # as if killed while training, mid-line of the log
    (sft / "checkpoint").mkdir()
    (sft / "train_log.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    ran, lines = grid_run()
    assert ran == ["pubmedqa/tiny-qwen2-to-gpt2/sft/seed1"]
    assert any("sft/seed1/train_log.jsonl, line 2, column 13: invalid JSON" in line for line in lines)
    assert (sft / "train_log.jsonl.corrupt").exists() and not (sft / "checkpoint").exists()


@pytest.mark.parametrize("code,hint", [(errno.ENOSPC, "the disk is full"),
                                       (errno.EROFS, "the file system is read-only")])
@pytest.mark.parametrize("failed_json_too", [False, True])
def test_a_full_or_read_only_disk_fails_only_the_cell_it_hit(grid_run, tmp_path, monkeypatch, code, hint,
                                                              failed_json_too):
    root = tmp_path / "runs"
    grid_run("--seeds", "1")  # earlier results
    earlier = files_of(root)
    hit = cell_dir(root, "sft", 3)
    write_atomic = benchmark.core.files.write_atomic

    def failing(path: Path, data) -> None:
        if path.parent == hit and (path.name == "metrics.json" or failed_json_too):
            raise OSError(code, os.strerror(code), str(path))
        write_atomic(path, data)

    monkeypatch.setattr(benchmark.core.files, "write_atomic", failing)
    ran, lines = grid_run()
    reached_the_recipe = [2, 4, 5, 6] if failed_json_too else [2, 3, 4, 5, 6]  # else config.json failed first
    assert sorted(ran) == [f"pubmedqa/tiny-qwen2-to-gpt2/sft/seed{seed}" for seed in reached_the_recipe]
    failure = next(line for line in lines if line.startswith("  FAILED: "))
    assert f"{os.strerror(code)}: '{hit}/" in failure and hint in failure
    assert "Traceback" not in "\n".join(lines)
    assert not (hit / "DONE").exists()
    if failed_json_too:
        assert failure.endswith(f" [FAILED.json not written: {os.strerror(code)}]")
        assert not (hit / "FAILED.json").exists()
    else:
        assert json.loads((hit / "FAILED.json").read_text())["error"] == failure.removeprefix("  FAILED: ")
    for seed in (2, 4, 5, 6):
        assert (cell_dir(root, "sft", seed) / "DONE").exists()
    assert {k: v for k, v in files_of(root).items() if k in earlier} == earlier
    monkeypatch.setattr(benchmark.core.files, "write_atomic", write_atomic)
    assert grid_run()[0] == ["pubmedqa/tiny-qwen2-to-gpt2/sft/seed3"]  # the next run resumes with that cell


def test_write_atomic_names_the_file_a_full_disk_refused(tmp_path, monkeypatch):
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(benchmark.core.files.os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device: '.*metrics\.json'") as caught:
        benchmark.core.files.write_atomic(tmp_path / "metrics.json", "{}")
    assert caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_a_store_of_an_older_format_is_re_run_and_of_a_newer_format_is_named(grid_run, tmp_path):
    root = tmp_path / "runs"
    grid_run("--seeds", "1")
    config_file = cell_dir(root, "sft", 1) / "config.json"
    older = json.loads(config_file.read_text())
    del older["format"]
    older["hash"] = "computed by the older scheme"
    config_file.write_text(json.dumps(older))
    assert [c.store_format for c in scan_store(root).cells if c.method == "sft"] == [1]  # still read
    ran, lines = grid_run("--seeds", "1")
    assert ran == ["pubmedqa/tiny-qwen2-to-gpt2/sft/seed1"]
    assert any("1 finished cells" in line and "older store format" in line for line in lines)
    newer = json.loads(config_file.read_text()) | {"format": 4}
    config_file.write_text(json.dumps(newer))
    (damaged,) = scan_store(root).damaged
    assert "written by a newer version of the suite (store format 4; this version reads formats 1-3)" in damaged.reason


def test_a_format_2_cell_is_read_and_exported_but_re_run_even_where_its_hash_still_matches(grid_run, tmp_path):
    """Format 2 hashed the teacher section into every trained cell; format 3 hashes what a cell reads. A format-2
    cell whose config happens to hash the same (sft reads no teacher, but an untrained row is unchanged) is still
    named and re-run, never reused, and its config stays readable for exports."""
    root = tmp_path / "runs"
    grid_run("--seeds", "1")
    config_file = cell_dir(root, "untrained", 0) / "config.json"
    stored = json.loads(config_file.read_text())
    config_file.write_text(json.dumps(stored | {"format": 2}))  # same config, same hash: only the format differs
    assert Cell.at(config_file.parent).finished_config() == (stored["config"], stored["hash"])
    assert [c.store_format for c in scan_store(root).cells if c.method == "untrained"] == [2]
    ran, lines = grid_run("--seeds", "1")
    assert ran == ["pubmedqa/tiny-qwen2-to-gpt2/untrained/seed0"]
    assert any("1 finished cells" in line and "older store format" in line for line in lines)
    assert json.loads(config_file.read_text())["format"] == 3


def test_a_damaged_skipped_pairs_file_is_kept_aside_and_rewritten(grid_run, tmp_path):
    root = tmp_path / "runs"
    grid_run("--seeds", "1")
    (root / "skipped_pairs.json").write_text("[{")
    _, lines = grid_run("--seeds", "1", "--pairs", TINY, "llama2-7b-chat-to-opt-350m")
    assert any(line.startswith("damaged, kept aside as .corrupt and rewritten: ") for line in lines)
    assert (root / "skipped_pairs.json.corrupt").read_text() == "[{"
    assert [s.pair for s in scan_store(root).skipped] == ["llama2-7b-chat-to-opt-350m"]


# -- the real command line --------------------------------------------------------------------------------------
REFERENCE_ONLY = ["--methods", "none", "--pairs", TINY, "--tasks", "pubmedqa", "--limit-eval", "2",
                  "--max-new-tokens", "2", "--eval-batch-size", "2", "--no-leaderboard"]


@pytest.mark.slow
def test_a_damaged_cell_is_run_again_to_the_same_numbers(tmp_path, capsys):
    out = tmp_path / "runs"
    args = [*REFERENCE_ONLY, "--output", str(out)]
    assert main(args) == 0
    cell = out / "pubmedqa" / TINY / "teacher" / "seed0"
    original = (cell / "metrics.json").read_bytes()
    (cell / "metrics.json").write_bytes(original[:7])
    capsys.readouterr()
    assert main([*args, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert f"damaged pubmedqa/{TINY}/teacher/seed0: {cell}/metrics.json, line 2: invalid JSON" in dry
    assert main(args) == 0
    healed = capsys.readouterr().out
    assert healed.count("damaged, kept aside as *.corrupt and run again") == 1 and "1 cached, 1 done" in healed
    assert (cell / "metrics.json").read_bytes() == original  # the same numbers as before the damage
    assert (cell / "metrics.json.corrupt").read_bytes() == original[:7]


@pytest.mark.slow
def test_ctrl_c_writes_nothing_half_done_and_says_how_to_resume(tmp_path):
    out = tmp_path / "runs"
    args = ["--methods", "sft", "--pairs", TINY, "--tasks", "pubmedqa", "--limit-train", "4", "--batch-size", "1",
            "--checkpoint-every", "1", "--limit-eval", "2", "--max-new-tokens", "2", "--no-leaderboard",
            "--output", str(out)]
    process = subprocess.Popen([sys.executable, "run_bench.py", *args], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    cell = out / "pubmedqa" / TINY / "sft" / "seed1"
    deadline = time.time() + 120
    while time.time() < deadline and not ((cell / "train_log.jsonl").exists()
                                          and (cell / "train_log.jsonl").read_text().count("\n") >= 1):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "Traceback" not in stdout + stderr
    last = stderr.strip().splitlines()[-1]
    assert last == f"run_bench.py: interrupted; resume with: python run_bench.py {shlex.join(args)}"
    assert not (cell / "DONE").exists() and not (cell / "FAILED.json").exists() and not (cell / "LOCK").exists()
    assert not [p for p in out.rglob(".*.tmp")]  # no temporary left from an interrupted write
    resumed = subprocess.run([sys.executable, *shlex.split(last.split("resume with: python ")[1])], cwd=REPO,
                             capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (cell / "DONE").exists()
