"""A local stand-in for the data origins: an HTTP server on 127.0.0.1 serving ``<root>/<host>/<path>``.

It answers ``Range: bytes=N-`` with 206, logs every request, and can misbehave on purpose: drop the connection
after sending part of a file (``cuts``), ignore ranges, or answer a request made through it as an HTTP proxy
(absolute-form request line) like any other.
"""
from __future__ import annotations

import argparse
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from tasks.data_sources import TASK_DATA, DataFile


@dataclass
class Request:
    target: str  # the request line's target: a path, or a full URL when the server is used as a proxy
    range: str | None


@dataclass
class OriginServer:
    root: Path
    cuts: dict[str, int] = field(default_factory=dict)  # served path -> bytes a response sends before it drops
    cut_once: bool = True  # drop each cut file's first response only
    ignore_range: bool = False
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.origin = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @staticmethod
    def path_of(url: str) -> str:
        """The path this server serves an origin ``url`` at: ``/<host>/<path>``."""
        parts = urlsplit(url)
        return f"/{parts.netloc}{parts.path}"

    def put(self, url: str, content: bytes) -> None:
        """Serve ``content`` where the origin ``url`` is mirrored."""
        path = self.root / self.path_of(url).lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    def serve_copies(self, data_dir: Path, files: Iterable[DataFile],
                     replace: Mapping[str, bytes] | None = None) -> None:
        """Serve each (not derived) file from its copy under ``data_dir``, or from ``replace[file.path]``."""
        for file in files:
            if file.derivation is None:
                content = (replace or {}).get(file.path)
                self.put(file.url, content if content is not None else (Path(data_dir) / file.path).read_bytes())

    def __enter__(self) -> "OriginServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        origin: OriginServer = self.server.origin  # type: ignore[attr-defined]
        origin.requests.append(Request(self.path, self.headers.get("Range")))
        path = urlsplit(self.path).path if "://" in self.path else self.path
        file = origin.root / path.lstrip("/")
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        start = 0
        requested = self.headers.get("Range")
        if requested and not origin.ignore_range:
            start = int(requested.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cut = origin.cuts.get(path)
        if cut is not None and len(data) - start > cut:
            if origin.cut_once:
                del origin.cuts[path]
            self.wfile.write(data[start:start + cut])
            self.close_connection = True  # fewer bytes than Content-Length promised, then the connection closes
            return
        self.wfile.write(data[start:])

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


def main() -> None:
    """Serve the copies under ``--data-dir`` of every registered file that is not derived, until interrupted."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True, help="empty folder to lay the origins' layout out in")
    args = parser.parse_args()
    server = OriginServer(args.root)
    server.serve_copies(args.data_dir, [file for data in TASK_DATA.values() for file in data.files])
    with server:
        print(f"export CTKD_DATA_TEST_ORIGIN={server.url}", flush=True)
        server._thread.join()


if __name__ == "__main__":
    main()
