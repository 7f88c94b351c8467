"""A TF Hub look-alike on 127.0.0.1: serves compressed SavedModels, and misbehaves on request.

TF Hub answers `HANDLE?tf-hub-format=compressed` with a `.tar.gz` of the SavedModel folder's
contents; `HubServer` does the same for the paths it is told about (404 for any other), counts
the requests per path, and can answer with an error status, a short body, or a body shorter than
the Content-Length it announced (a connection dropped mid-download).
"""

from __future__ import annotations

import gzip
import io
import tarfile
import threading
import zlib
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


def hub_archive(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """The `.tar.gz` TF Hub serves for a SavedModel folder, plus `extra` members (name: data)."""
    return gzip.compress(_tar(folder, extra))


def archive_cut_before(folder: Path, member: str) -> bytes:
    """A download of `hub_archive(folder)` cut off exactly where `member` begins.

    The deflate stream is flushed at that point, so what arrives decompresses to a tar archive
    that simply stops between two members: the worst kind of cut, with no error inside the tar.
    """
    data = _tar(folder)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        offset = next(info.offset for info in archive if info.name == member)
    compressor = zlib.compressobj(wbits=31)  # gzip framing
    return compressor.compress(data[:offset]) + compressor.flush(zlib.Z_FULL_FLUSH)


def archive_with_symlink(folder: Path, name: str, target: str) -> bytes:
    """`hub_archive(folder)` plus a symbolic link member."""
    buffer = io.BytesIO(_tar(folder))
    with tarfile.open(fileobj=buffer, mode="a") as archive:
        link = tarfile.TarInfo(name)
        link.type, link.linkname = tarfile.SYMTYPE, target
        archive.addfile(link)
    return gzip.compress(buffer.getvalue())


def _tar(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(folder, arcname=".")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    announced_length: int | None = None  # Content-Length to claim; None: the body's true length


class HubServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) answering from `routes`."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply] = {}
        self.hits: Counter[str] = Counter()
        self.queries: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.running = True

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def serve(self, path: str, body: bytes, status: int = 200, announced_length: int | None = None):
        """Answer GET `path` (any query) with this status and body from now on."""
        self.routes[path] = Reply(status, body, announced_length)

    def stop(self) -> None:
        """Stop answering and close the port: from now on a connection is refused."""
        if self.running:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self.running = False


def _handler_for(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server naming)
            url = urlsplit(self.path)
            hub.hits[url.path] += 1
            hub.queries.append(url.query)
            reply = hub.routes.get(url.path, Reply(404, b"no such model"))
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/x-tar")
            length = reply.announced_length
            self.send_header("Content-Length", str(len(reply.body) if length is None else length))
            self.end_headers()
            self.wfile.write(reply.body)  # HTTP/1.0: the connection closes after each reply

        def log_message(self, format, *args) -> None:  # noqa: A002
            pass

    return Handler
