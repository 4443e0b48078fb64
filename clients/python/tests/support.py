"""Shared test helpers: the import of the package under test, a scripted in-process HTTP
server standing in for the service, and an fvecs reader."""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

try:
    import squash_client  # noqa: F401  (the installed package when there is one)
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    import squash_client  # noqa: F401

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


class Recorded:
    """One request as the fake server received it."""

    def __init__(self, method: str, path: str, headers: Dict[str, str], raw: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.raw = raw

    @property
    def json(self) -> Any:
        return json.loads(self.raw.decode("utf-8"))


# A canned answer: status, body (a JSON-able value, or bytes sent as they are), extra headers.
Canned = Tuple[int, Any, Dict[str, str]]


class FakeService:
    """An HTTP server on 127.0.0.1 answering each request with the next canned response
    (or, when the script is empty, with ``default``), and recording every request."""

    def __init__(self) -> None:
        self.requests: List[Recorded] = []
        self.script: List[Canned] = []
        self.default: Canned = (200, {"status": "ok"}, {})
        self.delay_s = 0.0
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body, extra = service._next(Recorded(self.command, self.path, headers, raw))
                if service.delay_s:
                    threading.Event().wait(service.delay_s)
                data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("x-request-id", "req-test")
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _next(self, request: Recorded) -> Canned:
        with self._lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else self.default

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeService":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self, *script: Canned, default: Optional[Canned] = None) -> None:
        with self._lock:
            self.requests.clear()
            self.script = list(script)
            self.default = default or (200, {"status": "ok"}, {})
            self.delay_s = 0.0

    @property
    def last(self) -> Recorded:
        return self.requests[-1]


def read_fvecs(path: str, limit: Optional[int] = None) -> List[List[float]]:
    """Returns the records of an fvecs file (int32 dimension, then that many float32s)."""
    vectors: List[List[float]] = []
    with open(path, "rb") as file:
        while limit is None or len(vectors) < limit:
            header = file.read(4)
            if not header:
                break
            (dim,) = struct.unpack("<i", header)
            vectors.append(list(struct.unpack(f"<{dim}f", file.read(4 * dim))))
    return vectors


def read_ivecs(path: str, limit: Optional[int] = None) -> List[List[int]]:
    """Returns the records of an ivecs file (int32 dimension, then that many int32s)."""
    rows: List[List[int]] = []
    with open(path, "rb") as file:
        while limit is None or len(rows) < limit:
            header = file.read(4)
            if not header:
                break
            (dim,) = struct.unpack("<i", header)
            rows.append(list(struct.unpack(f"<{dim}i", file.read(4 * dim))))
    return rows
