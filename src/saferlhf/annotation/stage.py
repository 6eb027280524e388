"""``saferlhf annotate``: serve the annotation page for a pairs file until Ctrl-C.

    saferlhf annotate pairs=runs/demo/round1/pairs.jsonl            # prints http://127.0.0.1:8765/
    saferlhf annotate pairs=pairs.jsonl port=0 open_browser=true     # any free port, open a browser

Labels are saved next to the pairs file (``pairs.labels.jsonl``) after every answer; running the
command again resumes. See docs/annotation.md.
"""

from __future__ import annotations

import errno
import sys
from dataclasses import dataclass

from saferlhf.annotation.files import AnnotationError
from saferlhf.annotation.server import is_loopback, serve
from saferlhf.config import _check, doc


@dataclass
class AnnotateConfig:
    pairs: str = doc("", "Pairs file written by export_pairs (JSON Lines: id, prompt, response_0, response_1).")
    labels: str = doc("", "Labels file ('' = next to the pairs file: <name>.labels.jsonl).")
    host: str = doc("127.0.0.1", "Loopback address to listen on: 127.0.0.1, ::1 or localhost (nothing else).")
    port: int = doc(8765, "Port to listen on (0 = any free port).")
    open_browser: bool = doc(False, "Open the page in the default web browser.")

    def validate(self, prefix: str) -> None:
        _check(bool(self.pairs), prefix + "pairs", "must name the pairs file (pairs=FILE.jsonl)")
        _check(is_loopback(self.host), prefix + "host", "must be a loopback address (127.0.0.1, ::1 or localhost)")
        _check(0 <= self.port <= 65535, prefix + "port", "must be in 0..65535")


def run(config: AnnotateConfig) -> dict:
    """Serve until Ctrl-C; returns ``{"labelled", "total", "labels_file"}``. Exits 2 on a bad file or busy port."""
    try:
        return serve(config.pairs, config.host, config.port, config.open_browser, config.labels or None)
    except AnnotationError as error:
        print(f"saferlhf annotate: {error}", file=sys.stderr)
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        print(f"saferlhf annotate: port {config.port} is in use; choose another (port=0 picks a free one)",
              file=sys.stderr)
    raise SystemExit(2)
