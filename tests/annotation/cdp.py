"""A minimal Chrome DevTools Protocol client for tests, standard library only.

Chromium started with ``--remote-debugging-pipe`` reads protocol commands on file descriptor 3 and
writes replies and events on descriptor 4, each message a JSON object followed by a NUL byte (the
transport Puppeteer uses). No websocket library is needed. Clicks are real mouse events
(``Input.dispatchMouseEvent`` at the element's centre), so they go through hit-testing and the
page's own event handlers like a person's click.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

# Puts the two pipe ends on descriptors 3 and 4 in the child, then runs chromium (a shell's ``3<&N`` fails
# for N > 9 in dash, and plain dup2 could overwrite one end with the other).
LAUNCHER = ("import fcntl, os, sys; fds = [int(fd) for fd in sys.argv[1:3]]; "
            "high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds]; [os.close(fd) for fd in fds]; "
            "os.dup2(high[0], 3); os.dup2(high[1], 4); os.execv(sys.argv[3], sys.argv[3:])")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1280,900", "--remote-debugging-pipe"]


class CDPError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page; ``open``, ``evaluate``, ``wait_for``, ``click``, ``close``."""

    def __init__(self, binary: Path, profile_dir: Path):
        to_chrome_read, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_write = os.pipe()
        command = [sys.executable, "-c", LAUNCHER, str(to_chrome_read), str(from_chrome_write), str(binary),
                   *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"]
        profile_dir.mkdir(parents=True, exist_ok=True)
        self._log = profile_dir / "chromium.log"  # a file, not a pipe: a full pipe would block chromium
        with open(self._log, "wb") as log:
            self.process = subprocess.Popen(command, pass_fds=(to_chrome_read, from_chrome_write),
                                            stdout=subprocess.DEVNULL, stderr=log)
        os.close(to_chrome_read)
        os.close(from_chrome_write)
        self._buffer, self._next_id, self.session = b"", 0, None

    def call(self, method: str, params: dict | None = None, timeout: float = 30.0, page: bool = True) -> dict:
        """Send one command (to the page session unless ``page=False``) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if page and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise CDPError(f"{method}: {reply['error']}")
                    return reply["result"]
            ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"no reply to {method} within {timeout} s")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise CDPError(f"chromium closed the pipe during {method}: {self._stderr_tail()}")
            self._buffer += chunk

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": url}, page=False)
        attached = self.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, page=False)
        self.session = attached["sessionId"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"].get("exception", {}).get("description")
            raise CDPError(f"{expression!r} raised {details}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0):
        """Poll until ``expression`` is truthy (errors while the page loads count as false)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except CDPError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still false after {timeout} s")
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        """A left mouse click at the centre of the first element matching ``selector``."""
        found = json.dumps(selector)
        box = self.evaluate(f"""(() => {{
            const el = document.querySelector({found});
            if (!el) return null;
            el.scrollIntoView({{block: "center"}});
            const r = el.getBoundingClientRect();
            const x = r.left + r.width / 2, y = r.top + r.height / 2;
            const hit = document.elementFromPoint(x, y);
            return {{x, y, hit: !!hit && (hit === el || el.contains(hit)), disabled: !!el.disabled}};
        }})()""")
        if box is None:
            raise CDPError(f"no element matches {selector}")
        if not box["hit"]:
            raise CDPError(f"{selector} is covered by another element at its centre")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent",
                      {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1})

    def close(self) -> None:
        try:
            self.call("Browser.close", page=False, timeout=10)
        except (CDPError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_chrome, self._from_chrome):
            os.close(fd)

    def _stderr_tail(self) -> str:
        return self._log.read_text(errors="replace")[-800:]
