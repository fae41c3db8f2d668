"""A minimal NUT network protocol client (docs/net-protocol.txt) for what upsd serves.

Used to await that upsd serves a UPS after a change and to read data freshness for
`status` and `health`. Every call has a timeout.
"""

from __future__ import annotations

import socket

from reconcile.model import Served
from reconcile.userconfig import reachable


class UpsdError(OSError):
    pass


class Connection:
    def __init__(self, host: str, port: int, timeout: float = 3.0) -> None:
        try:
            self._sock = socket.create_connection((reachable(host), port), timeout=timeout)
        except OSError as exc:
            raise UpsdError(f"upsd at {host}:{port}: {exc.strerror or exc}") from None
        self._file = self._sock.makefile("rw", encoding="ascii", errors="replace", newline="\n")

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._file.write("LOGOUT\n")
            self._file.flush()
        except OSError:
            pass
        self._sock.close()

    def command(self, line: str) -> str:
        try:
            self._file.write(line + "\n")
            self._file.flush()
            reply = self._file.readline()
        except OSError as exc:
            raise UpsdError(f"upsd: {exc}") from None
        if not reply:
            raise UpsdError("upsd closed the connection")
        return reply.rstrip("\n")

    def list_ups(self) -> list[str]:
        first = self.command("LIST UPS")
        if not first.startswith("BEGIN LIST UPS"):
            raise UpsdError(f"upsd: unexpected reply {first!r}")
        names: list[str] = []
        while True:
            try:
                raw = self._file.readline()
            except OSError as exc:
                raise UpsdError(f"upsd: {exc}") from None
            if not raw:
                raise UpsdError("upsd closed the connection in the middle of LIST UPS")
            line = raw.rstrip("\n")
            if line.startswith("END LIST UPS"):
                return names
            parts = line.split(" ", 2)
            if len(parts) >= 2 and parts[0] == "UPS":
                names.append(parts[1])

    def served(self, ups: str) -> Served:
        """Whether upsd has fresh data for the UPS ("ok"), and its ups.status."""
        reply = self.command(f"GET VAR {ups} ups.status")
        if reply.startswith("ERR "):
            return Served(reply[4:].split(" ")[0], None)
        # VAR <ups> ups.status "OL"
        value = reply.split(" ", 3)[3].strip('"') if reply.count(" ") >= 3 else ""
        return Served("ok", value)
