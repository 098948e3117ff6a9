"""Issues 17 and 26: on a machine without the data folder, a run fetches the data (from a local copy of the
origins), verifies it and runs, with no variable set; with --offline or CTKD_OFFLINE=1 it stops with one line naming
the fix."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.core import paths
from benchmark.cli.main import main
from tasks.data_sources import TASK_DATA
from tests.benchmark.cli.test_cli import FAST, TINY, needs_data
from tests.support.origin_server import OriginServer

SHARED = paths.default_data_dir()


@pytest.fixture
def fresh_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No $CTKD_DATA_DIR and no ../shared/data: the data goes to the per-user folder under $XDG_CACHE_HOME."""
    monkeypatch.delenv("CTKD_DATA_DIR", raising=False)
    for switch in ("CTKD_ONLINE", "CTKD_OFFLINE"):
        monkeypatch.delenv(switch, raising=False)
    monkeypatch.setattr(paths, "default_data_dir", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "ctkd-bench" / "data"


@needs_data
def test_default_run_fetches_verifies_and_runs(fresh_machine, tmp_path, monkeypatch, capsys):
    with OriginServer(tmp_path / "origin") as server:
        server.serve_copies(SHARED, TASK_DATA["qed"].files)
        monkeypatch.setenv("CTKD_DATA_TEST_ORIGIN", server.url)
        code = main(["--methods", "none", *FAST, "--output", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 0, err
    size = sum(f.download_size for f in TASK_DATA["qed"].files) / 1e6
    assert f"fetching qed: {len(TASK_DATA['qed'].files)} file(s), {size:.1f} MB from {TASK_DATA['qed'].origin}" in err
    assert all((fresh_machine / f.path).is_file() for f in TASK_DATA["qed"].files)
    assert (tmp_path / "runs" / "qed" / TINY / "teacher" / "seed0" / "DONE").exists()


@needs_data
@pytest.mark.parametrize("switch", ["--offline", "CTKD_OFFLINE=1"])
def test_offline_the_error_names_the_missing_files_and_the_fetch_command(switch, fresh_machine, tmp_path, monkeypatch,
                                                                          capsys):
    flags = [switch] if switch.startswith("--") else []
    if not flags:
        monkeypatch.setenv(*switch.split("="))
    with OriginServer(tmp_path / "origin") as server:  # reachable, but the switch forbids fetching
        server.serve_copies(SHARED, TASK_DATA["qed"].files)
        monkeypatch.setenv("CTKD_DATA_TEST_ORIGIN", server.url)
        assert main(["--methods", "none", *FAST, *flags, "--output", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "data not found" in err and "nq-train-00-qed.jsonlines" in err
    assert "python run_bench.py data fetch --tasks qed --data-dir" in err and "CTKD_OFFLINE=1" in err
    assert not (tmp_path / "runs").exists() and not fresh_machine.exists()
