"""A NUT driver that takes commands, for tests: it speaks NUT's driver socket protocol to
the real upsd (docs/sock-protocol.txt, drivers/dstate.c), where dummy-ups refuses every
INSTCMD.

What it serves comes from a JSON file, named by its ups.conf section's `port` (as dummy-ups
takes a data file) and read again when it changes:

    {"vars": {"ups.status": "OL", "ups.delay.start": "30", ...},
     "rw": ["ups.delay.start", "ups.delay.shutdown"],   # writable through upsd's SET VAR
     "commands": ["shutdown.return"],                    # upsd's LIST CMD
     "set_answer": {"ups.delay.start": 3},               # the driver's code (upshandler.h): 3 = FAILED
     "set_ignored": ["ups.delay.start"],                 # answered as done, value unchanged
     "cmd_answer": {"shutdown.return": 0},
     "answer_after": 0.0,                                # seconds before it answers (PENDING meanwhile)
     "record": "/path/received.log"}                     # every INSTCMD and SET it got, one a line

As a real driver it is started by upsdrvctl (`<driver> -a <ups> -u <user>`): it opens its
socket `<statepath>/<driver>-<ups>`, goes to the background (upsdrvctl waits for that),
writes its PID file, drops to the user, and exits on SIGTERM. The tests put it in NUT's
driver directory inside a mount namespace of the agent's own (testbed/nut.py), so the
agent starts it like any other driver.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconcile.nutsyntax import parse_sections, tokenize

NAME = "stub-ups"  # its file name in the driver directory: the driver name in ups.conf
CHECK = 0.2  # seconds between looks at the JSON file
GROUP = "nut"  # NUT's group (Debian's build: RUN_AS_GROUP)


def encode(value: str) -> str:
    """pconf_encode, quoted."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Device:
    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)
    mtime: float = -1.0

    def load(self) -> list[str]:
        """Read the file again if it changed: the lines to send every client (changes only)."""
        try:
            mtime = self.path.stat().st_mtime
            if mtime == self.mtime:
                return []
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []  # (a half-written file: read at the next look)
        old_vars = dict(self.data.get("vars", {}))
        old_cmds = set(self.data.get("commands", []))
        self.data, self.mtime = data, mtime
        out = []
        for name, value in data.get("vars", {}).items():
            if old_vars.get(name) != str(value):
                self.values[name] = str(value)
                out.append(f"SETINFO {name} {encode(str(value))}")
        for name in [n for n in self.values if n not in data.get("vars", {}) and n in old_vars]:
            del self.values[name]
            out.append(f"DELINFO {name}")
        cmds = set(data.get("commands", []))
        out += [f"ADDCMD {c}" for c in sorted(cmds - old_cmds)] + [f"DELCMD {c}" for c in sorted(old_cmds - cmds)]
        return out

    def dump(self) -> list[str]:
        out = [f"SETINFO {n} {encode(v)}" for n, v in self.values.items()]
        out += [f"SETFLAGS {n} RW NUMBER" for n in self.data.get("rw", []) if n in self.values]
        out += [f"ADDCMD {c}" for c in self.data.get("commands", [])]
        return [*out, "DATAOK", "DUMPDONE"]


class Stub:
    def __init__(self, device: Device, sock: socket.socket, record: Any) -> None:
        self.device, self.sock, self.record = device, sock, record
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ)
        self.clients: dict[socket.socket, bytes] = {}
        self.later: list[tuple[float, str]] = []  # (when, line for every client): the delayed answers
        self.stopping = False

    def send(self, conn: socket.socket, lines: list[str]) -> None:
        try:
            conn.sendall("".join(line + "\n" for line in lines).encode())
        except OSError:
            self.drop(conn)

    def broadcast(self, lines: list[str]) -> None:
        for conn in list(self.clients):
            self.send(conn, lines)

    def drop(self, conn: socket.socket) -> None:
        if conn in self.clients:
            del self.clients[conn]
            self.selector.unregister(conn)
            conn.close()

    def answer(self, tracking: str | None, code: int) -> None:
        if tracking is None:
            return
        after = float(self.device.data.get("answer_after", 0.0))
        self.later.append((time.monotonic() + after, f"TRACKING {tracking} {code}"))

    def handle(self, conn: socket.socket, words: list[str]) -> None:
        verb = words[0].upper()
        if verb in ("INSTCMD", "SET"):
            self.record.write(" ".join(words) + "\n")
            self.record.flush()
        tracking = words[words.index("TRACKING") + 1] if "TRACKING" in words[:-1] else None
        data = self.device.data
        if verb == "PING":
            self.send(conn, ["PONG"])
        elif verb == "DUMPALL":
            self.send(conn, self.device.dump())
        elif verb == "GETPID":
            self.send(conn, [f"PID {os.getpid()}"])
        elif verb == "LOGOUT":
            self.send(conn, ["OK Goodbye"])
            self.drop(conn)
        elif verb == "INSTCMD" and len(words) >= 2:
            known = words[1] in data.get("commands", [])
            self.answer(tracking, int(data.get("cmd_answer", {}).get(words[1], 0 if known else 2)))
        elif verb == "SET" and len(words) >= 3:
            var, value = words[1], words[2]
            writable = var in data.get("rw", [])
            code = int(data.get("set_answer", {}).get(var, 0 if writable else 2))
            if code == 0 and var not in data.get("set_ignored", []):
                self.device.values[var] = value
                self.broadcast([f"SETINFO {var} {encode(value)}"])  # before the answer, as dstate does
            self.answer(tracking, code)

    def serve(self) -> None:
        next_check = 0.0
        while not self.stopping:
            now = time.monotonic()
            if now >= next_check:
                changed = self.device.load()
                if changed:
                    self.broadcast(changed)
                next_check = now + CHECK
            due = [item for item in self.later if item[0] <= now]
            for item in due:
                self.later.remove(item)
                self.broadcast([item[1]])
            wait = min([next_check, *[w for w, _ in self.later]]) - time.monotonic()
            for key, _ in self.selector.select(max(0.0, wait)):
                if key.fileobj is self.sock:
                    conn, _ = self.sock.accept()
                    self.clients[conn] = b""
                    self.selector.register(conn, selectors.EVENT_READ)
                    continue
                conn = key.fileobj  # type: ignore[assignment]
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    self.drop(conn)
                    continue
                buffer = self.clients[conn] + chunk
                *lines, rest = buffer.split(b"\n")
                self.clients[conn] = rest
                for raw in lines:
                    for words in tokenize(raw.decode("ascii", "replace")):
                        self.handle(conn, words)


def _args(argv: list[str]) -> dict[str, str]:
    """-a <ups> and -u <user> of a driver's command line (the rest, upsdrvctl's flags, ignored)."""
    out = {}
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-a", "-u"):
            out[arg] = argv[i + 1]
    return out


def main(argv: list[str]) -> int:
    args = _args(argv)
    ups = args.get("-a")
    if ups is None:
        print(f"{NAME}: -a <ups> is needed", file=sys.stderr)
        return 1
    driver = Path(argv[0]).name
    confpath = Path(os.environ.get("NUT_CONFPATH", "/etc/nut"))
    statepath = Path(os.environ.get("NUT_STATEPATH", "/run/nut"))
    _, sections = parse_sections((confpath / "ups.conf").read_text())
    section = next((s for s in sections if s.name == ups), None)
    port = section.get("port") if section is not None else None
    if port is None:
        print(f"{NAME}: no [{ups}] with a port in {confpath / 'ups.conf'}", file=sys.stderr)
        return 1
    device = Device(Path(port) if os.path.isabs(port) else confpath / port)
    device.load()
    record = open(device.data.get("record", os.devnull), "a")  # noqa: SIM115 - kept for the driver's life
    path = statepath / f"{driver}-{ups}"
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(8)
    user = pwd.getpwnam(args.get("-u", "nut"))
    # As drivers/main.c does: the socket's group is NUT's (upsd runs as nut), even when the
    # driver runs as root (`upsdrvctl -u root`, as the agent starts drivers).
    os.chown(path, user.pw_uid, grp.getgrnam(GROUP).gr_gid)
    os.chmod(path, 0o660)
    if os.fork() > 0:
        os._exit(0)  # the parent: upsdrvctl waits for it, as for a real driver's background()
    os.setsid()
    # background(): no terminal, and none of upsdrvctl's pipes held open (its caller waits for them)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    pidfile = statepath / f"{driver}-{ups}.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    stub = Stub(device, sock, record)

    def stop(signum: int, frame: object) -> None:
        stub.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        stub.serve()
    finally:
        for leftover in (path, pidfile):
            try:
                leftover.unlink()
            except OSError:
                pass  # (the state dir may be root's: the agent removes them)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
