"""``--teacher-prep sft``: the fine-tuned teacher is a step of the grid with its own record, reused by a second run;
a failing preparation fails the cells that read the teacher, with its reason, and the other cells run."""
import json
import time
from pathlib import Path

import pytest

from benchmark.cli.main import main
from benchmark.core.digest import digest
from benchmark.core.paths import default_data_dir
from benchmark.run import teacher_prep
from benchmark.run.executors import RUN_STARTED_ENV

pytestmark = pytest.mark.skipif(default_data_dir() is None,
                                reason="task data not found (set CTKD_DATA_DIR or provide ../shared/data)")
TINY = "tiny-qwen2-to-gpt2"


def run_grid(tmp_path: Path, output: str) -> int:
    return main(["--teacher-prep", "sft", "--methods", "sft", "seqkd", "--pairs", TINY, "--tasks", "qed",
                 "--limit-train", "8", "--limit-eval", "4", "--max-new-tokens", "6", "--eval-batch-size", "4",
                 "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / output), "--no-leaderboard"])


def cell(tmp_path: Path, output: str, method: str) -> Path:
    return tmp_path / output / "qed" / TINY / method / ("seed0" if method in ("teacher", "untrained") else "seed1")


def test_the_teacher_is_prepared_once_with_its_record_and_reused(tmp_path, capsys):
    assert run_grid(tmp_path, "first") == 0
    out = capsys.readouterr().out
    [directory] = [p for p in (tmp_path / "cache" / "teachers").iterdir() if p.is_dir()]  # beside its lock file
    assert out.count("  preparing teacher tiny-qwen2-s1 fine-tuned on qed") == 1
    # The record lies beside the model, DONE last, no checkpoint left; the directory is named by the key's digest.
    assert {p.name for p in directory.iterdir()} == {"config.json", "run.json", "train_log.jsonl", "model", "DONE"}
    record = json.loads((directory / "config.json").read_text())
    assert directory.name == digest(record["config"], short=True) and record["hash"] == digest(record["config"])
    assert record["config"]["kind"] == "sft-teacher" and record["config"]["limit_train"] == 8
    assert record["config"]["task"] == "qed" and record["config"]["train"]["epochs"] == 1.0
    run = json.loads((directory / "run.json").read_text())
    assert run["n_train"] == 8 and run["train"]["steps"] >= 1 and run["wall_time_s"] > 0 and run["cpu_time_s"] > 0
    assert run["train_log"] == "train_log.jsonl" and run["cpu"]
    assert len((directory / "train_log.jsonl").read_text().splitlines()) == run["train"]["steps"]
    done_at = (directory / "DONE").stat().st_mtime_ns

    assert run_grid(tmp_path, "second") == 0  # a new store, the same cache: nothing is fine-tuned again
    out = capsys.readouterr().out
    assert "preparing teacher" not in out and f"  teacher tiny-qwen2-s1 fine-tuned on qed: reused ({directory})" in out
    assert (directory / "DONE").stat().st_mtime_ns == done_at
    first, second = (json.loads((cell(tmp_path, name, "teacher") / "metrics.json").read_text())
                     for name in ("first", "second"))
    assert first == second


def test_a_failing_preparation_fails_the_cells_reading_the_teacher_and_the_rest_runs(tmp_path, capsys,
                                                                                     monkeypatch):
    calls = []

    def out_of_memory(ctx, directory):
        calls.append(directory)
        raise RuntimeError("CUDA out of memory (a stand-in)")

    monkeypatch.setattr(teacher_prep, "fine_tune", out_of_memory)
    monkeypatch.setenv(RUN_STARTED_ENV, str(time.time()))  # one run, as --executor gpus gives its workers
    assert run_grid(tmp_path, "runs") == 1
    out = capsys.readouterr().out
    [directory] = [p for p in (tmp_path / "cache" / "teachers").iterdir() if p.is_dir()]  # beside its lock file
    failed = json.loads((directory / "FAILED.json").read_text())
    assert failed["error"] == "RuntimeError: CUDA out of memory (a stand-in)" and "Traceback" in failed["traceback"]
    assert not (directory / "DONE").exists() and out.count("  preparing teacher") == 1  # tried once per run
    for method in ("teacher", "seqkd"):
        reason = json.loads((cell(tmp_path, "runs", method) / "FAILED.json").read_text())["error"]
        assert reason == "TeacherPrepError: teacher preparation failed: RuntimeError: CUDA out of memory (a stand-in)"
    for method in ("untrained", "sft"):
        assert (cell(tmp_path, "runs", method) / "DONE").exists()
    # Another worker of the same run reuses the recorded failure instead of fine-tuning a second time.
    assert run_grid(tmp_path, "other-worker") == 1 and len(calls) == 1
    reason = json.loads((cell(tmp_path, "other-worker", "seqkd") / "FAILED.json").read_text())["error"]
    assert reason.endswith("teacher preparation failed: RuntimeError: CUDA out of memory (a stand-in)")

    monkeypatch.undo()  # the next run tries again, and succeeds
    assert run_grid(tmp_path, "runs") == 0
    assert (directory / "DONE").exists() and not (directory / "FAILED.json").exists()
    assert all((cell(tmp_path, "runs", m) / "DONE").exists() for m in ("teacher", "untrained", "sft", "seqkd"))
