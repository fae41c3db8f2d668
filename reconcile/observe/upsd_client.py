"""A minimal NUT network protocol client (docs/net-protocol.txt) for what upsd serves.

Used to await that upsd serves a UPS after a change and to read data freshness for
`status` and `health`. Every call has a timeout.
"""

from __future__ import annotations

import math
import re
import socket
from collections.abc import Callable, Mapping
from typing import TypeVar

from reconcile.model import Served
from reconcile.userconfig import reachable

QUICKACK = getattr(socket, "TCP_QUICKACK", None)
T = TypeVar("T")


class UpsdError(OSError):
    pass


def _ups_list(reply: Callable[[str], str]) -> list[str]:
    """The names in upsd's reply to LIST UPS, read line by line through `reply`."""
    first = reply("LIST UPS")
    if not first.startswith("BEGIN LIST UPS"):
        raise UpsdError(f"upsd: unexpected reply {first!r}")
    names: list[str] = []
    while True:
        line = reply("in the middle of LIST UPS")
        if line.startswith("END LIST UPS"):
            return names
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[0] == "UPS":
            names.append(parts[1])


class Connection:
    def __init__(self, host: str, port: int, timeout: float = 3.0) -> None:
        try:
            self._sock = socket.create_connection((reachable(host), port), timeout=timeout)
        except OSError as exc:
            raise UpsdError(f"upsd at {host}:{port}: {exc.strerror or exc}") from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self._sock.makefile("r", encoding="ascii", errors="replace", newline="\n")

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._sock.sendall(b"LOGOUT\n")
        except OSError:
            pass
        self._sock.close()

    def _send(self, text: str) -> None:
        # Straight to the socket: the file object is for reading lines only.
        try:
            self._sock.sendall(text.encode("ascii", "replace"))
        except OSError as exc:
            raise UpsdError(f"upsd: {exc}") from None

    def _reply(self, what: str) -> str:
        try:
            # Why: upsd writes a reply in several small packets; on a connection kept open,
            # the kernel's delayed ACK would hold each one back ~40 ms (Nagle on upsd's
            # side). Acknowledging at once keeps a tick's questions to upsd well under 1 ms.
            if QUICKACK is not None:
                self._sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
            raw = self._file.readline()
        except OSError as exc:
            raise UpsdError(f"upsd: {exc}") from None
        if not raw:
            raise UpsdError(f"upsd closed the connection ({what})")
        return raw.rstrip("\n")

    def command(self, line: str) -> str:
        self._send(line + "\n")
        return self._reply(line)

    def listing(self, query: str) -> list[str]:
        """The lines of upsd's answer to `LIST <query>` (e.g. "CMD my-ups"), between its
        BEGIN and END lines. Raises UpsdError for an ERR reply."""
        self._send(f"LIST {query}\n")
        first = self._reply(f"LIST {query}")
        if not first.startswith(f"BEGIN LIST {query}"):
            raise UpsdError(f"upsd: LIST {query}: {first}")
        lines: list[str] = []
        while not (line := self._reply(f"in the middle of LIST {query}")).startswith("END LIST"):
            lines.append(line)
        return lines

    def all_served(self, guess: tuple[str, ...] = ()) -> dict[str, Served]:
        """Every UPS upsd lists, with its status. `guess`: the names it listed last time,
        asked for in the same write as LIST UPS (one round trip on a quiet bus)."""
        self._send("LIST UPS\n" + "".join(f"GET VAR {name} ups.status\n" for name in guess))
        names = _ups_list(self._reply)
        found = {name: _served(self._reply(f"GET VAR {name}")) for name in guess}
        return {name: found[name] if name in found else self.served(name) for name in names}

    def served(self, ups: str) -> Served:
        """Whether upsd has fresh data for the UPS ("ok"), and its ups.status."""
        return _served(self.command(f"GET VAR {ups} ups.status"))


# A number as NUT's drivers write one; not Python's float() alone, which also takes
# "inf", "nan" and "1_0".
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


def number(value: str | None) -> float | None:
    """A variable's value as a number ("13.60" -> 13.6), or None (text such as "OL CHRG", or none)."""
    text = (value or "").strip()
    if not _NUMBER.fullmatch(text):
        return None
    out = float(text)
    return out if math.isfinite(out) else None


def model_of(variables: Mapping[str, str]) -> str | None:
    """The UPS's model: device.model, or ups.model where a driver serves only the older name."""
    return variables.get("device.model") or variables.get("ups.model") or None


def mfr_of(variables: Mapping[str, str]) -> str | None:
    """The UPS's maker: device.mfr, or ups.mfr where a driver serves only the older name."""
    return variables.get("device.mfr") or variables.get("ups.mfr") or None


def ups_names(conn: Connection) -> list[str]:
    return [line.split(" ", 2)[1] for line in conn.listing("UPS") if line.startswith("UPS ")]


def commands(conn: Connection, ups: str) -> frozenset[str]:
    """The instant commands upsd offers for the UPS (LIST CMD): what its driver supports."""
    return frozenset(line.split(" ")[2] for line in conn.listing(f"CMD {ups}") if line.count(" ") >= 2)


def variables(conn: Connection, ups: str) -> dict[str, str]:
    """Every variable upsd serves for the UPS (LIST VAR), values unquoted. Raises
    UpsdError ("... ERR DATA-STALE", "... ERR DRIVER-NOT-CONNECTED") without fresh data."""
    out = {}
    for line in conn.listing(f"VAR {ups}"):
        # VAR <ups> <name> "<value>", the value with \\ and \" escaped (docs/net-protocol.txt)
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[0] == "VAR" and parts[3].startswith('"') and parts[3].endswith('"'):
            out[parts[2]] = re.sub(r"\\(.)", r"\1", parts[3][1:-1])
    return out


def version(conn: Connection) -> str:
    """upsd's version ("2.8.4"), from its VER answer ("Network UPS Tools upsd 2.8.4 - ..."), or ""."""
    m = re.search(r"upsd ([0-9][0-9A-Za-z.+~-]*)", conn.command("VER"))
    return m.group(1) if m else ""


def clients(conn: Connection, ups: str) -> int:
    """How many upsmons are logged in to the UPS (LIST CLIENT: one line per login)."""
    return len(logins(conn, ups))


def logins(conn: Connection, ups: str) -> tuple[str, ...]:
    """The address of each upsmon logged in to the UPS (LIST CLIENT: one `CLIENT <ups>
    <address>` line per login; upsd never names the user), repeats kept, sorted."""
    prefix = f"CLIENT {ups} "
    return tuple(
        sorted(line[len(prefix) :].strip() for line in conn.listing(f"CLIENT {ups}") if line.startswith(prefix))
    )


def all_logins(conn: Connection, upses: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """logins() for each of `upses`. Raises UpsdError for any ERR (a UPS gone since LIST
    UPS, say): then the whole answer is unknown for this pass, never a UPS with no logins."""
    return {ups: logins(conn, ups) for ups in upses}


def _served(reply: str) -> Served:
    if reply.startswith("ERR "):
        return Served(reply[4:].split(" ")[0], None)
    # VAR <ups> ups.status "OL"
    value = reply.split(" ", 3)[3].strip('"') if reply.count(" ") >= 3 else ""
    return Served("ok", value)


class Session:
    """One connection kept from pass to pass (a long-running agent asks upsd every tick),
    opened again when upsd closed it or restarted. Every call still has a timeout."""

    def __init__(self, host: str, port: int, timeout: float = 2.0) -> None:
        self.at = (host, port)
        self.timeout = timeout
        self._conn: Connection | None = None
        self._names: tuple[str, ...] = ()

    def served(self) -> dict[str, Served] | None:
        """What upsd serves, per UPS; None when it does not answer."""
        for _ in range(2):
            try:
                if self._conn is None:
                    self._conn = Connection(*self.at, timeout=self.timeout)
                found = self._conn.all_served(self._names)
                self._names = tuple(found)
                return found
            except UpsdError:
                self.close()
        return None

    def ask(self, question: Callable[[Connection], T]) -> T | None:
        """One question on the kept connection (e.g. `lambda c: commands(c, "my-ups")`);
        None when upsd does not answer it (or answers ERR)."""
        for _ in range(2):
            try:
                if self._conn is None:
                    self._conn = Connection(*self.at, timeout=self.timeout)
                return question(self._conn)
            except UpsdError:
                self.close()
        return None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None
            self._names = ()
