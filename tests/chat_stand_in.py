"""A local stand-in for an OpenAI-compatible ``/v1/chat/completions`` server (127.0.0.1 only), shared by the
judge tests: a handler subclass writes ``do_POST`` and answers with ``self.send_json``."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatStandIn(BaseHTTPRequestHandler):
    def send_json(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextmanager
def serving(handler: type[ChatStandIn], **state):
    """Run ``handler`` on a free loopback port; ``state`` becomes attributes of the server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []
    for key, value in state.items():
        setattr(server, key, value)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
