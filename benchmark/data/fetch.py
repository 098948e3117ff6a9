"""Fetch task data from its origins into a data directory: resumable, verified, placed atomically.

Each file is downloaded onto ``<file>.part`` (a broken download resumes there with an HTTP Range request), its
sha256 is checked, and only then is it renamed to its final path, so a final path holds the release or nothing.
A derived file (DialogSum's train file) is rebuilt from its verified archive by the recipe its registry entry
records, and checked against its own sha256 in the same way. HTTP goes through ``requests``, which honours the
standard proxy variables (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) and ``REQUESTS_CA_BUNDLE``.

Fetching on first use is allowed unless ``CTKD_OFFLINE=1`` (or the run's ``--offline``) forbids it, and happens only
when the origin answers; :func:`ensure_task_data` is the run-time hook: nothing touches the network when the data is
present. (Hub models keep their own switch, ``CTKD_ONLINE=1``: multi-GB downloads are never a surprise.)
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Iterable, Mapping
from urllib.parse import urlsplit

import requests
from tqdm import tqdm

from benchmark.core.build_lock import build_lock
from benchmark.core.digest import file_sha256
from benchmark.data.check import DataMissing, missing_files, verify_task_data
from tasks.base import DataError, one_line
from tasks.data_sources import TASK_DATA, DataFile, TaskData

__all__ = ["FetchError", "fetch_allowed", "origin_url", "fetch_task_data", "ensure_task_data"]

OFFLINE_ENV = "CTKD_OFFLINE"
# Test only: "<scheme>://<host:port>" that replaces "https://" of every origin URL, which is then requested as
# "<value>/<origin host>/<origin path>" (a local server holding a copy of the files under the origins' layout).
TEST_ORIGIN_ENV = "CTKD_DATA_TEST_ORIGIN"
ATTEMPTS = 3  # per file; each attempt after the first resumes from what the last one wrote
TIMEOUT_S = (10, 60)  # connect, read (between two chunks)
PROBE_TIMEOUT_S = 5  # whether an origin answers at all: a closed network must not hold a run for long
WORKERS = 8  # parallel downloads: FairytaleQA is 510 small files
_CHUNK = 1 << 16
_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)

Say = Callable[[str], None]


class FetchError(DataError):
    """A download failed, or its bytes are not the release; nothing was placed at the file's final path."""


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def fetch_allowed() -> bool:
    """Whether missing task data may be fetched (unless ``CTKD_OFFLINE=1``)."""
    return os.environ.get(OFFLINE_ENV) != "1"


def origin_url(url: str) -> str:
    """``url``, or its copy on the test server when ``CTKD_DATA_TEST_ORIGIN`` is set."""
    test_origin = os.environ.get(TEST_ORIGIN_ENV)
    if not test_origin:
        return url
    parts = urlsplit(url)
    return f"{test_origin.rstrip('/')}/{parts.netloc}{parts.path}"


def ensure_task_data(data_dir: Path, tasks: Iterable[str], cache_dir: Path, *, online: bool,
                     sources: Mapping[str, TaskData] = TASK_DATA, say: Say = _say) -> dict[str, str]:
    """Verify the data of ``tasks``, fetching what is missing first when ``online`` and its origin answers; returns
    ``{path under the data directory: sha256}`` (for ``run.json``). Offline, or with an origin that does not answer,
    missing files raise :class:`~benchmark.data.check.DataMissing` naming them and the command that fetches them."""
    tasks = list(tasks)
    try:
        return verify_task_data(data_dir, tasks, cache_dir, sources)
    except DataMissing as error:
        if not online:
            raise
        silent = _silent_origin(missing_files(data_dir, tasks, cache_dir, sources))
        if silent:
            raise DataMissing(f"{error}; its origin {silent} does not answer from here") from None
    fetch_task_data(data_dir, tasks, cache_dir=cache_dir, sources=sources, say=say)
    return verify_task_data(data_dir, tasks, cache_dir, sources)


def fetch_task_data(data_dir: Path, tasks: Iterable[str], *, cache_dir: Path | None = None,
                    sources: Mapping[str, TaskData] = TASK_DATA, say: Say = _say,
                    progress: bool | None = None) -> list[str]:
    """Download the missing files of ``tasks`` into ``data_dir``; returns their paths (empty, without touching the
    network, when nothing is missing). A corrupt file already there is an error, not overwritten. ``progress``:
    show a progress bar per task (default: when stderr is a terminal)."""
    data_dir = Path(data_dir)
    tasks = list(tasks)
    if not missing_files(data_dir, tasks, cache_dir, sources):
        return []
    _require_writable(data_dir)
    fetched: list[str] = []
    for name in tasks:
        data = sources[name]
        with build_lock(data_dir / data.subdir):  # another process may be fetching the same task
            files = missing_files(data_dir, [name], cache_dir, sources)
            if not files:
                continue
            size = sum(file.download_size for file in files)
            say(f"fetching {name}: {len(files)} file(s), {size / 1e6:.1f} MB from {data.origin} "
                f"into {data_dir / data.subdir}")
            with tqdm(total=size, unit="B", unit_scale=True, desc=name, file=sys.stderr,
                      disable=None if progress is None else not progress) as bar:
                _fetch_files(data_dir, files, bar)
            fetched += [file.path for file in files]
    return fetched


def _silent_origin(files: Iterable[DataFile]) -> str | None:
    """The first origin host of ``files`` that does not answer a HEAD request (one probe per host); None when all
    answer."""
    by_host = {urlsplit(url).netloc: url for url in (origin_url(file.url) for file in files)}
    for host, url in by_host.items():
        try:
            requests.head(url, timeout=PROBE_TIMEOUT_S, allow_redirects=True)
        except requests.RequestException:
            return host
    return None


def _require_writable(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as error:
        raise FetchError(f"cannot write into the data directory {str(data_dir)!r} ({error.strerror}); pass "
                         f"--data-dir with a writable folder or set CTKD_DATA_DIR") from None


def _fetch_files(data_dir: Path, files: list[DataFile], bar: tqdm) -> None:
    """Fetch ``files`` on a few threads (one HTTP session each); the first failure cancels what has not started."""
    local = threading.local()
    sessions: list[requests.Session] = []

    def fetch(file: DataFile) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            sessions.append(local.session)
        _fetch_file(local.session, data_dir, file, bar)

    try:
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(files))) as pool:
            futures = [pool.submit(fetch, file) for file in files]
            try:
                for future in as_completed(futures):
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        for session in sessions:
            session.close()


def _fetch_file(session: requests.Session, data_dir: Path, file: DataFile, bar: tqdm) -> None:
    final = data_dir / file.path
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        part = final.with_name(final.name + ".part")
        if file.derivation is None:
            _download(session, file.url, part, file.size, file.path, bar)
            _require_sha256(part, file.sha256, file.path, file.url)
        else:
            recipe = file.derivation
            archive = final.with_name(recipe.archive_url.rsplit("/", 1)[-1] + ".part")
            _download(session, recipe.archive_url, archive, recipe.archive_size, file.path, bar)
            _require_sha256(archive, recipe.archive_sha256, f"{file.path} (its archive)", recipe.archive_url)
            part.write_bytes(recipe.build(archive.read_bytes()))
            _require_sha256(part, file.sha256, file.path, f"{recipe.recipe.__name__} on {recipe.archive_url}")
            archive.unlink()
        _place(part, final)
    except requests.RequestException as error:
        raise FetchError(f"{file.path}: {one_line(str(error))}") from None
    except OSError as error:
        raise FetchError(f"{file.path}: cannot write {str(error.filename)!r} ({error.strerror})") from None


def _download(session: requests.Session, url: str, part: Path, size: int, label: str, bar: tqdm) -> None:
    """Bring ``part`` to ``size`` bytes from ``url``, resuming from what it holds; a few attempts."""
    url = origin_url(url)
    have = _resume_point(part, size)
    bar.update(have)
    error = ""
    for _ in range(ATTEMPTS):
        if have == size:
            return
        try:
            with session.get(url, headers=_request_headers(have), stream=True, timeout=TIMEOUT_S) as response:
                if response.status_code == 200 and have:  # the server ignored the range: start again
                    bar.update(-have)
                    have = 0
                elif response.status_code >= 500:
                    error = f"HTTP {response.status_code} {response.reason}"
                    continue
                elif response.status_code not in (200, 206):
                    raise FetchError(f"{label}: HTTP {response.status_code} {response.reason} from {url}")
                elif response.status_code == 206 and not _starts_at(response, have):
                    raise FetchError(f"{label}: {url} answered range {response.headers.get('Content-Range')!r} "
                                     f"to a request from byte {have}")
                with part.open("ab" if have else "wb") as out:
                    for chunk in response.iter_content(_CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
        except _TRANSIENT as cause:
            error = one_line(str(cause))
        have = _resume_point(part, size)
    if have != size:
        raise FetchError(f"{label}: download from {url} stopped at {have} of {size} bytes after {ATTEMPTS} "
                         f"attempts ({error or 'connection closed early'}); run the same command again to resume")


def _request_headers(offset: int) -> dict[str, str]:
    # identity: a range must count bytes of the file itself, not of a compressed encoding of it
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return headers


def _starts_at(response: requests.Response, offset: int) -> bool:
    """Whether a 206 response's ``Content-Range: bytes <start>-<end>/<total>`` starts at ``offset``."""
    content_range = response.headers.get("Content-Range", "")
    return content_range.startswith(f"bytes {offset}-")


def _resume_point(part: Path, size: int) -> int:
    """Bytes already in ``part``; a part longer than the file cannot be a prefix of it and is dropped."""
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        return 0
    return have


def _require_sha256(path: Path, expected: str, label: str, origin: str) -> None:
    got = file_sha256(path)
    if got != expected:
        path.unlink()
        raise FetchError(f"{label}: sha256 {got}, expected {expected} (from {origin}); the download was discarded")


def _place(part: Path, final: Path) -> None:
    """Rename the verified ``part`` onto ``final`` after its bytes reached the disk."""
    with part.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(part, final)
