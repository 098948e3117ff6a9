"""benchmark.data.fetch against a local origin server (no internet): fetch, derive, resume, bad checksum, 404,
read-only directory, proxy variables, and no network at all when the data is present or fetching is off.

The served files are copies of ``../shared/data`` under the origins' URL layout; the tests that need them skip
without it. DialogSum's archive is rebuilt from the shared train file (``str(record)`` per line, which is how the
2021 archive writes it), so its own hash differs from the real archive's and is swapped in the registry entry;
the derived file must still come out with the released sha256.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from benchmark.core.paths import default_data_dir
from benchmark.data.check import DataCorrupt, DataMissing
from benchmark.data.fetch import (
    TEST_ORIGIN_ENV,
    FetchError,
    ensure_task_data,
    fetch_allowed,
    fetch_task_data,
    origin_url,
)
from tasks.data_sources import TASK_DATA, TaskData
from tasks.pubmedqa import PubMedQA
from tests.support.origin_server import OriginServer

SHARED = default_data_dir()
REPO = Path(__file__).resolve().parents[3]
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                   "no_proxy")
PUBMED = {file.path: file for file in TASK_DATA["pubmedqa"].files}
BIG = "pubmedqa/ori_pqal.json"  # 2,584,787 bytes
SMALL = "pubmedqa/test_ground_truth.json"


def shared_bytes(path: str) -> bytes:
    if SHARED is None or not (SHARED / path).is_file():
        pytest.skip(f"shared data file {path!r} not found (looked in {SHARED}; set CTKD_DATA_DIR)")
    return (SHARED / path).read_bytes()


@pytest.fixture
def origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OriginServer]:
    for variable in PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    with OriginServer(tmp_path / "origin") as server:
        monkeypatch.setenv(TEST_ORIGIN_ENV, server.url)
        yield server


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any outgoing connection fails the test."""

    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"network touched: connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def serve(server: OriginServer, *paths: str, replace: dict[str, bytes] | None = None) -> None:
    """Serve the shared copies of the registered files ``paths`` (``replace``: other bytes for some of them)."""
    for path in paths:
        shared_bytes(path)  # skips without the shared copy
    server.serve_copies(SHARED, [PUBMED[path] for path in paths], replace)


def fetch(data_dir: Path, tasks: list[str], sources: dict[str, TaskData] = TASK_DATA, **kwargs) -> list[str]:
    return fetch_task_data(data_dir, tasks, sources=sources, progress=False, say=lambda message: None, **kwargs)


def requested(server: OriginServer, path: str) -> list[str | None]:
    """The Range header of each request for registered file ``path``."""
    served = server.path_of(PUBMED[path].url)
    return [request.range for request in server.requests if request.target == served]


def leftovers(data_dir: Path) -> list[str]:
    return sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.suffix == ".part")


def test_fetch_places_a_task_in_the_origins_layout(origin: OriginServer, tmp_path: Path) -> None:
    serve(origin, BIG, SMALL)
    data_dir, messages = tmp_path / "data", []
    fetched = fetch_task_data(data_dir, ["pubmedqa"], progress=False, say=messages.append)
    assert sorted(fetched) == sorted(PUBMED)
    for path in PUBMED:
        assert (data_dir / path).read_bytes() == shared_bytes(path)
    assert leftovers(data_dir) == []
    assert sorted(request.target for request in origin.requests) == [
        "/raw.githubusercontent.com/pubmedqa/pubmedqa/1cbae8e92f72f20c8d3747cbb3bf5bc53554d997/data/" + name
        for name in ("ori_pqal.json", "test_ground_truth.json")]
    assert messages == [f"fetching pubmedqa: 2 file(s), 2.6 MB from github.com/pubmedqa/pubmedqa @ 1cbae8e (data/) "
                        f"into {data_dir / 'pubmedqa'}"]
    assert len(PubMedQA(data_dir).load("test")) == 500
    # Everything is there now: nothing more is requested.
    assert fetch(data_dir, ["pubmedqa"]) == [] and len(origin.requests) == 2


def test_fetch_rebuilds_a_derived_file_by_its_recipe(origin: OriginServer, tmp_path: Path) -> None:
    test_file, train_file = TASK_DATA["dialogsum"].files
    recipe = train_file.derivation
    assert recipe is not None
    lines = shared_bytes(train_file.path).decode("utf-8").splitlines()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as bundle:
        bundle.writestr(recipe.member, "\n".join(repr(json.loads(line)) for line in lines))
        bundle.writestr("__MACOSX/DialogSum_Data/._dialogsum.train.jsonl", b"\0" * 344)
    archive_bytes = archive.getvalue()
    rebuilt = dataclasses.replace(recipe, archive_size=len(archive_bytes),
                                  archive_sha256=hashlib.sha256(archive_bytes).hexdigest())
    sources = {"dialogsum": dataclasses.replace(
        TASK_DATA["dialogsum"], files=(test_file, dataclasses.replace(train_file, derivation=rebuilt)))}
    origin.put(recipe.archive_url, archive_bytes)
    origin.put(test_file.url, shared_bytes(test_file.path))

    data_dir = tmp_path / "data"
    assert sorted(fetch(data_dir, ["dialogsum"], sources)) == [test_file.path, train_file.path]
    assert hashlib.sha256((data_dir / train_file.path).read_bytes()).hexdigest() == train_file.sha256
    assert sorted(p.name for p in (data_dir / "dialogsum").iterdir()) == ["dialogsum.test.jsonl",
                                                                         "dialogsum.train.jsonl"]
    assert origin.path_of(recipe.archive_url) in [request.target for request in origin.requests]


@pytest.mark.parametrize("ignore_range", [False, True], ids=["resumes", "restarts-when-range-ignored"])
def test_a_cut_connection_is_resumed_in_the_same_run(origin: OriginServer, tmp_path: Path, ignore_range: bool) -> None:
    serve(origin, BIG, SMALL)
    origin.cuts[origin.path_of(PUBMED[BIG].url)] = 1_000_000
    origin.ignore_range = ignore_range
    fetch(tmp_path, ["pubmedqa"])
    assert (tmp_path / BIG).read_bytes() == shared_bytes(BIG)
    first, second = requested(origin, BIG)
    # The client resumes from what it wrote (the last partial read of a broken response may be lost).
    assert first is None and 0 < resume_offset(second) <= 1_000_000
    assert leftovers(tmp_path) == []


def test_an_unfinished_download_resumes_in_the_next_run(origin: OriginServer, tmp_path: Path) -> None:
    serve(origin, BIG, SMALL)
    origin.cuts[origin.path_of(PUBMED[BIG].url)] = 100_000
    origin.cut_once = False  # every response breaks off: three attempts bring at most 300,000 bytes
    with pytest.raises(FetchError) as info:
        fetch(tmp_path, ["pubmedqa"])
    written = (tmp_path / f"{BIG}.part").stat().st_size
    message = str(info.value)
    assert message.startswith(f"{BIG}: download from {origin.url}/raw.githubusercontent.com/pubmedqa/")
    assert f"stopped at {written} of 2584787 bytes after 3 attempts" in message and 0 < written <= 300_000
    assert message.endswith("run the same command again to resume") and "\n" not in message
    assert not (tmp_path / BIG).exists()

    origin.cuts.clear()
    fetch(tmp_path, ["pubmedqa"])
    ranges = requested(origin, BIG)
    assert len(ranges) == 4 and ranges[-1] == f"bytes={written}-"
    assert (tmp_path / BIG).read_bytes() == shared_bytes(BIG) and leftovers(tmp_path) == []


def resume_offset(range_header: str | None) -> int:
    assert range_header is not None and range_header.startswith("bytes=") and range_header.endswith("-")
    return int(range_header[len("bytes="):-1])


def test_a_wrong_checksum_places_nothing(origin: OriginServer, tmp_path: Path) -> None:
    tampered = bytearray(shared_bytes(SMALL))
    tampered[10] ^= 1
    serve(origin, BIG, SMALL, replace={SMALL: bytes(tampered)})
    with pytest.raises(FetchError) as info:
        fetch(tmp_path, ["pubmedqa"])
    got, expected = hashlib.sha256(tampered).hexdigest(), PUBMED[SMALL].sha256
    assert str(info.value) == (f"{SMALL}: sha256 {got}, expected {expected} (from {PUBMED[SMALL].url}); "
                               f"the download was discarded")
    assert not (tmp_path / SMALL).exists() and not (tmp_path / f"{SMALL}.part").exists()


def test_a_missing_origin_file_is_a_one_line_error(origin: OriginServer, tmp_path: Path) -> None:
    serve(origin, BIG)
    with pytest.raises(FetchError) as info:
        fetch(tmp_path, ["pubmedqa"])
    url = origin.url + origin.path_of(PUBMED[SMALL].url)
    assert str(info.value) == f"{SMALL}: HTTP 404 Not Found from {url}"
    assert not (tmp_path / SMALL).exists() and not (tmp_path / f"{SMALL}.part").exists()


def test_a_corrupt_file_already_there_is_reported_not_overwritten(origin: OriginServer, tmp_path: Path) -> None:
    (tmp_path / "pubmedqa").mkdir()
    (tmp_path / SMALL).write_bytes(b"{}")
    with pytest.raises(DataCorrupt, match=rf"^data differs from its release: {SMALL} has 2 bytes, expected 11414 "):
        fetch(tmp_path, ["pubmedqa"])
    assert (tmp_path / SMALL).read_bytes() == b"{}" and origin.requests == []


def test_a_read_only_data_directory_is_refused_before_any_request(origin: OriginServer, tmp_path: Path) -> None:
    """In a child process; as root, one without CAP_DAC_OVERRIDE (root writes through permission bits)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o555)
    fetch_script = ("import sys; from benchmark.data.fetch import fetch_task_data\n"
                    "try: fetch_task_data(sys.argv[1], ['pubmedqa'], progress=False)\n"
                    "except Exception as error: print(type(error).__name__, error); sys.exit(3)\n")
    command = [sys.executable, "-c", fetch_script, str(data_dir)]
    if os.geteuid() == 0:
        command = [sys.executable, "-c", DROP_DAC_OVERRIDE, *command]
    try:
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    finally:
        data_dir.chmod(0o755)
    assert result.returncode == 3, result.stderr
    assert result.stdout == (f"FetchError cannot write into the data directory {str(data_dir)!r} (Permission denied); "
                             f"pass --data-dir with a writable folder or set CTKD_DATA_DIR\n")
    assert origin.requests == [] and list(data_dir.iterdir()) == []


# Drop CAP_DAC_OVERRIDE (1) from the bounding set (prctl PR_CAPBSET_DROP = 24), then exec the rest of argv.
DROP_DAC_OVERRIDE = ("import ctypes, os, sys\n"
                     "assert ctypes.CDLL(None, use_errno=True).prctl(24, 1, 0, 0, 0) == 0, 'prctl failed'\n"
                     "os.execv(sys.argv[1], sys.argv[1:])\n")


def test_proxy_variables_are_honoured(origin: OriginServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Origins on a host only the proxy can reach: every request goes through ``HTTP_PROXY``."""
    serve(origin, BIG, SMALL)
    monkeypatch.setenv(TEST_ORIGIN_ENV, "http://unreachable.invalid")
    monkeypatch.setenv("HTTP_PROXY", origin.url)
    fetch(tmp_path, ["pubmedqa"])
    assert (tmp_path / BIG).read_bytes() == shared_bytes(BIG)
    assert origin.requests and all(r.target.startswith("http://unreachable.invalid/raw.githubusercontent.com/")
                                   for r in origin.requests)


@pytest.mark.usefixtures("no_network")
def test_present_data_is_verified_without_network(tmp_path: Path) -> None:
    if SHARED is None or any(not (SHARED / name).is_dir() for name in TASK_DATA):
        pytest.skip(f"shared data not found (looked in {SHARED}; set CTKD_DATA_DIR)")
    assert fetch_task_data(SHARED, list(TASK_DATA), progress=False) == []
    hashes = ensure_task_data(SHARED, list(TASK_DATA), tmp_path / "cache", online=True, say=pytest.fail)
    assert hashes == {file.path: file.sha256 for data in TASK_DATA.values() for file in data.files}
    assert len(hashes) == 522


@pytest.mark.usefixtures("no_network")
def test_offline_missing_data_names_the_files_and_the_command(tmp_path: Path) -> None:
    with pytest.raises(DataMissing) as info:
        ensure_task_data(tmp_path, ["squad", "pubmedqa"], tmp_path / "cache", online=False)
    assert str(info.value) == (
        f"data not found in {str(tmp_path)!r}: squad/dev-v1.1.json, pubmedqa/ori_pqal.json, "
        f"pubmedqa/test_ground_truth.json; fetch it with: python run_bench.py data fetch --tasks squad pubmedqa "
        f"--data-dir {tmp_path} (a run fetches it on first use where its origin answers, unless --offline or CTKD_OFFLINE=1)")


def test_online_run_fetches_on_first_use(origin: OriginServer, tmp_path: Path) -> None:
    serve(origin, BIG, SMALL)
    messages: list[str] = []
    hashes = ensure_task_data(tmp_path / "data", ["pubmedqa"], tmp_path / "cache", online=True, say=messages.append)
    assert hashes == {path: file.sha256 for path, file in PUBMED.items()}
    assert len(messages) == 1 and messages[0].startswith("fetching pubmedqa: 2 file(s)")


def test_an_origin_that_does_not_answer_is_the_offline_error_naming_it(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:  # a port nothing listens on: connections are refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv(TEST_ORIGIN_ENV, f"http://127.0.0.1:{port}")
    with pytest.raises(DataMissing) as info:
        ensure_task_data(tmp_path / "data", ["pubmedqa"], tmp_path / "cache", online=True, say=pytest.fail)
    message = str(info.value)
    assert message.startswith(f"data not found in {str(tmp_path / 'data')!r}: pubmedqa/ori_pqal.json")
    assert message.endswith(f"; its origin 127.0.0.1:{port} does not answer from here") and "\n" not in message
    assert not (tmp_path / "data" / "pubmedqa").exists()


def test_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://raw.githubusercontent.com/o/r/0123/x.json"
    monkeypatch.delenv(TEST_ORIGIN_ENV, raising=False)
    assert origin_url(url) == url
    monkeypatch.setenv(TEST_ORIGIN_ENV, "http://127.0.0.1:9/")
    assert origin_url(url) == "http://127.0.0.1:9/raw.githubusercontent.com/o/r/0123/x.json"
    monkeypatch.delenv("CTKD_OFFLINE", raising=False)
    assert fetch_allowed()
    monkeypatch.setenv("CTKD_OFFLINE", "1")
    assert not fetch_allowed()
