"""The local annotation server: one page, one pair at a time, every answer saved at once.

Standard library only (``http.server``). It listens on a loopback address only (``127.0.0.1``,
``::1`` or ``localhost``) and answers only requests whose ``Host`` header names one, so a web
page elsewhere cannot reach it through DNS rebinding; POSTs must be ``application/json``, which a
cross-site form cannot send without a CORS preflight that this server never grants, and a request
whose ``Origin`` header is not a loopback page is refused too. A body is read only with a
``Content-Length`` of 0..1 MiB, within ``REQUEST_TIMEOUT_S`` seconds; JSON nested too deeply is a 400.

One server per labels file: :class:`LabelStore` holds an exclusive lock (``<labels>.lock``, ``flock``)
while it serves, so a second server on the same file is refused instead of overwriting the first's
labels with its own memory.

Routes:

- ``GET /``: the page (:mod:`saferlhf.annotation.page`, self-contained: inline script and style).
- ``GET /api/state``: ``{"pairs": [{id, prompt, response_0, response_1}], "labels": [entry or null],
  "start": index of the first pair neither labelled nor skipped, "labels_file", "progress"}``.
- ``POST /api/label`` with ``{"id", <some of better_response_id, safer_response_id,
  is_response_0_safe, is_response_1_safe, skipped>}``: merges the answer into the pair's entry and
  rewrites the labels file atomically before replying ``{"label": entry, "progress"}``; a bad
  update gets ``400 {"error": reason}`` and changes nothing.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import socketserver
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from saferlhf.annotation.files import (UPDATE_KEYS, AnnotationError, apply_update, check_label_update, is_complete,
                                       labels_path_for, new_entry, read_labels, read_pairs, write_labels)
from saferlhf.annotation.page import PAGE_HTML

MAX_BODY_BYTES = 1 << 20
REQUEST_TIMEOUT_S = 5  # a client that announces more body than it sends is dropped after this
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_loopback(host: str) -> None:
    """Raise ValueError unless ``host`` is a loopback address: the page must not be reachable from elsewhere."""
    if not is_loopback(host):
        raise ValueError(f"annotation server: refusing to listen on {host!r}; it listens on localhost only "
                         "(use 127.0.0.1, ::1 or localhost, and an SSH tunnel to reach it from another machine)")


class LabelStore:
    """The pairs of one file and their labels; ``update`` saves the labels file before it returns."""

    def __init__(self, pairs_path: str | Path, labels_path: str | Path | None = None):
        self.pairs_path = Path(pairs_path)
        self.labels_path = Path(labels_path) if labels_path else labels_path_for(self.pairs_path)
        self.pairs = [pair for _, pair in read_pairs(self.pairs_path)]
        self.pairs_by_id = {pair["id"]: pair for pair in self.pairs}
        self._file_lock = _lock_file(self.labels_path.with_name(self.labels_path.name + ".lock"), self.labels_path)
        try:
            for stale in self.labels_path.parent.glob(self.labels_path.name + ".*.tmp"):  # a killed save's; ours now
                stale.unlink()
            self.labels = read_labels(self.labels_path, self.pairs)
        except BaseException:
            self.close()
            raise
        self._lock = threading.Lock()

    def close(self) -> None:
        """Release the labels file for another server."""
        if self._file_lock is not None:
            os.close(self._file_lock)
            self._file_lock = None

    def update(self, data) -> dict:
        """Validate one answer, merge it, save atomically; returns the pair's new entry."""
        pair_id, changes = check_label_update(data, self.pairs_by_id)
        if not changes:
            raise AnnotationError("the update has no answer (send one of: " + ", ".join(UPDATE_KEYS[1:]) + ")")
        with self._lock:
            old = self.labels.get(pair_id) or new_entry(self.pairs_by_id[pair_id])
            self.labels[pair_id] = apply_update(old, changes)
            try:
                write_labels(self.labels_path, self.pairs, self.labels)
            except OSError:
                self.labels[pair_id] = old  # memory and file stay the same
                raise
            return self.labels[pair_id]

    def progress(self) -> dict:
        labelled = sum(is_complete(self.labels.get(pair["id"])) for pair in self.pairs)
        return {"labelled": labelled, "total": len(self.pairs), "labels_file": str(self.labels_path)}

    def start_index(self) -> int:
        """The first pair neither labelled nor skipped, else the first one not labelled, else 0."""
        entries = [self.labels.get(pair["id"]) for pair in self.pairs]
        for wanted in (lambda e: e is None or (not is_complete(e) and not e["skipped"]), lambda e: not is_complete(e)):
            for index, entry in enumerate(entries):
                if wanted(entry):
                    return index
        return 0

    def state(self) -> dict:
        with self._lock:
            shown = [{key: pair[key] for key in ("id", "prompt", "response_0", "response_1")} for pair in self.pairs]
            return {"pairs": shown, "labels": [self.labels.get(pair["id"]) for pair in self.pairs],
                    "start": self.start_index(), "labels_file": str(self.labels_path), "progress": self.progress()}


def _lock_file(lock_path: Path, labels_path: Path) -> int | None:
    """An exclusive ``flock`` on ``lock_path`` (its descriptor), or AnnotationError if another process holds it."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: one server per file is then the user's to keep
        return None
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise AnnotationError(f"another annotation server is already saving labels to {labels_path} (it holds "
                              f"{lock_path}); stop it first, or label another file") from None
    return fd


class _Handler(BaseHTTPRequestHandler):
    server: "AnnotationServer"
    timeout = REQUEST_TIMEOUT_S  # socket timeout: a body shorter than its Content-Length cannot hold a thread

    def do_GET(self):  # noqa: N802 (http.server naming)
        if not self._host_ok():
            return
        if self.path in ("/", "/index.html"):
            self._send(200, PAGE_HTML.encode("utf-8"), "text/html; charset=utf-8")
        elif self.path == "/api/state":
            self._send_json(200, self.server.store.state())
        else:
            self._send_json(404, {"error": f"no such page: {self.path}"})

    def do_POST(self):  # noqa: N802
        if not self._host_ok():
            return
        if self.path != "/api/label":
            return self._send_json(404, {"error": f"no such endpoint: {self.path}"})
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            return self._send_json(415, {"error": "the body must be sent as Content-Type: application/json"})
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self._send_json(400, {"error": "Content-Length is not a number"})
        if length < 0:
            return self._send_json(400, {"error": f"Content-Length {length} is negative"})
        if length > MAX_BODY_BYTES:
            return self._send_json(413, {"error": f"body of {length} bytes is larger than {MAX_BODY_BYTES}"})
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            return None
        if len(body) < length:
            return self._send_json(400, {"error": f"the body ended after {len(body)} of {length} bytes"})
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return self._send_json(400, {"error": f"the body is not JSON: {error}"})
        except RecursionError:
            return self._send_json(400, {"error": "the body is not JSON this server reads: nested too deeply"})
        store = self.server.store
        try:
            entry = store.update(data)
        except AnnotationError as error:
            return self._send_json(400, {"error": str(error)})
        except OSError as error:
            return self._send_json(500, {"error": f"could not save {store.labels_path}: {error}"})
        self._send_json(200, {"label": entry, "progress": store.progress()})

    def _host_ok(self) -> bool:
        host = self.headers.get("Host", "")
        if not is_loopback(_host_name(host)):
            self._send_json(403, {"error": f"Host header {host!r} is not a loopback name"})
            return False
        origin = self.headers.get("Origin")  # sent by browsers with every POST: the page must be this server's
        if origin is not None and not (origin.startswith("http://") and is_loopback(_host_name(origin[7:]))):
            self._send_json(403, {"error": f"Origin {origin!r} is not a page of this server"})
            return False
        return True

    def _send_json(self, code: int, payload) -> None:
        self._send(code, json.dumps(payload).encode("utf-8"), "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # quiet: the page shows what happened
        pass


def _host_name(host: str) -> str:
    """``name`` of ``name:port``, ``[v6]:port`` or ``name`` (a path after it ignored)."""
    host = host.split("/", 1)[0]
    return host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0]


class AnnotationServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` bound to a loopback address, serving one :class:`LabelStore`."""

    daemon_threads = True

    def __init__(self, store: LabelStore, host: str = "127.0.0.1", port: int = 0):
        check_loopback(host)
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.store = store
        super().__init__((host.strip("[]"), port), _Handler)

    def server_close(self) -> None:
        super().server_close()
        self.store.close()

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # HTTPServer's version adds a slow reverse-DNS lookup
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def make_server(pairs_path: str | Path, host: str = "127.0.0.1", port: int = 0,
                labels_path: str | Path | None = None) -> AnnotationServer:
    """A ready server for ``pairs_path`` (not yet serving); call ``serve_forever`` in a thread to test."""
    check_loopback(host)  # before reading anything
    store = LabelStore(pairs_path, labels_path)
    try:
        return AnnotationServer(store, host, port)
    except BaseException:
        store.close()
        raise


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 0, open_browser: bool = False,
          labels_path: str | Path | None = None) -> dict:
    """Serve the annotation page for the pairs file ``path`` until Ctrl-C; returns the progress.

    Prints the URL. Every answer is already on disk when the page shows it, so stopping the
    server (or closing the page) loses nothing; serving the same file again resumes.
    """
    server = make_server(path, host, port, labels_path)
    progress = server.store.progress()
    print(f"[saferlhf annotate] {progress['total']} pairs in {path}, {progress['labelled']} labelled so far; "
          f"labels are saved to {progress['labels_file']}", flush=True)
    print(f"[saferlhf annotate] open {server.url}  (Ctrl-C stops the server)", flush=True)
    if open_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    progress = server.store.progress()
    print(f"\n[saferlhf annotate] stopped: {progress['labelled']} of {progress['total']} pairs labelled "
          f"in {progress['labels_file']}", flush=True)
    return progress
