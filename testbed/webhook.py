"""A webhook receiver for the notification tests: what Apprise's json:// posts."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

from testbed.nut import free_port


class Receiver:
    """A webhook on loopback: keeps every JSON body Apprise's json:// posts. With `hang`
    set, it takes each request and does not answer until `release` is set."""

    def __init__(self, bind: str = "127.0.0.1") -> None:
        self.messages: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # time.monotonic() at each message's arrival
        self.in_flight = 0
        self.lock = threading.Lock()
        self.hang = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.messages.append(body)
                    receiver.arrived.append(time.monotonic())
                    receiver.in_flight += 1
                if receiver.hang.is_set():
                    receiver.release.wait(120)  # the server's own thread: a receiver that hangs
                with receiver.lock:
                    receiver.in_flight -= 1
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up (killed) while we hung

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((bind, free_port()), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def titles(self) -> list[str]:
        with self.lock:
            return [str(m.get("title")) for m in self.messages]

    def find(self, fragment: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if fragment in str(m.get("title"))]

    def arrived_after(self, fragment: str, since: float) -> float | None:
        """When the first message with `fragment` in its title arrived at or after `since`."""
        with self.lock:
            pairs = list(zip(self.messages, self.arrived, strict=True))
        return next((t for m, t in pairs if t >= since and fragment in str(m.get("title"))), None)

    def has(self, fragment: str) -> bool:
        return bool(self.find(fragment))

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
