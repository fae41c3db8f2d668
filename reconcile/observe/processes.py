"""What /proc says about a process: its command name, start time, and whether it was
started for our NUT directories. PID files only say where to look.

Why the start time: a PID is reused once its process is gone (after a container
restart the PID in a stale PID file often belongs to something else). (pid, start time)
names one process for the life of the system; every signal the agent sends is checked
against it first (see act/daemons.py).
"""

from __future__ import annotations

import os
import select
import time
from functools import lru_cache
from pathlib import Path

from reconcile.model import ProcId


def _read(path: str, limit: int = 4096) -> bytes | None:
    # Plain open(): a running agent reads these files at every tick.
    try:
        with open(path, "rb") as handle:
            return handle.read(limit)
    except OSError:
        return None


def read_pid(path: Path | str) -> int | None:
    raw = _read(str(path), 64)
    text = raw.decode("ascii", "replace").strip() if raw is not None else ""
    return int(text) if text.isdigit() and 1 < int(text) < 1 << 22 else None


def stat(pid: int) -> tuple[str, str, int] | None:
    """(command name, state letter, start time in clock ticks after boot), or None if gone."""
    raw = _read(f"/proc/{pid}/stat")
    if raw is None:
        return None
    text = raw.decode("ascii", "replace")
    # The name sits in parentheses and may itself hold spaces or ')': split at the last ')'.
    head, _, tail = text.rpartition(")")
    fields = tail.split()
    if len(fields) < 20 or not fields[19].isdigit():
        return None
    return head[head.find("(") + 1 :], fields[0], int(fields[19])


def proc_id(pid: int, program: str) -> ProcId | None:
    """The live (not zombie) process `pid`, if it runs `program`."""
    info = stat(pid)
    if info is None:
        return None
    comm, state, start = info
    # The kernel truncates the command name to 15 characters.
    if state in ("Z", "X") or comm != program[:15]:
        return None
    return ProcId(pid, start)


class Pidfds:
    """The processes a pass confirmed, watched through pidfds, so the next pass need not
    read /proc for them again: one poll() for all tells which have exited since.

    Why a pidfd is enough: it names one process, never the next one to get its PID, and
    it turns readable when that process exits (a zombie included). So while it is not
    readable, the (pid, start time) read when it was opened still names a live process.
    Where pidfd_open fails (a kernel before 5.3, seccomp), /proc is read as before."""

    def __init__(self) -> None:
        self._held: dict[int, tuple[ProcId, str, int]] = {}  # pid -> (proc, name, pidfd)
        # started_for() of a held process, by (proc, marker, binary): how a process was
        # started does not change while it lives, and a stranger (a host's own upsmon at
        # NUT's fixed PID file) would otherwise have its environment read at every pass.
        self._started: dict[tuple[ProcId, tuple[tuple[str, str], ...], str | None], bool | None] = {}

    def refresh(self) -> None:
        """Forget the processes that have exited: one poll() over every pidfd."""
        if not self._held:
            return
        poller = select.poll()
        by_fd = {fd: pid for pid, (_, _, fd) in self._held.items()}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(0):
            self._forget(by_fd[fd])

    def proc_id(self, pid: int, program: str) -> ProcId | None:
        """proc_id(), answered from the pidfd when the process was confirmed before."""
        held = self._held.get(pid)
        if held is not None:
            if held[1] == program[:15]:
                return held[0]
            return proc_id(pid, program)  # asked as another program: /proc says no
        proc = proc_id(pid, program)
        if proc is None:
            return None
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return proc
        # The pidfd names whoever had the PID when it was opened: read /proc once more, so
        # it is the process just confirmed and not one that took the PID in between.
        if proc_id(pid, program) != proc:
            os.close(fd)
            return proc_id(pid, program)
        self._held[pid] = (proc, program[:15], fd)
        return proc

    def started_for(self, proc: ProcId, marker: dict[str, str], binary: str | None = None) -> bool | None:
        """started_for(), read once while the process's pidfd is held (and at every call
        for a process not held: then the PID may already name another)."""
        held = self._held.get(proc.pid)
        if held is None or held[0] != proc:
            return started_for(proc.pid, marker, binary)
        key = (proc, tuple(sorted(marker.items())), binary)
        if key not in self._started:
            self._started[key] = started_for(proc.pid, marker, binary)
        return self._started[key]

    def _forget(self, pid: int) -> None:
        held = self._held.pop(pid, None)
        if held is not None:
            os.close(held[2])
            self._started = {key: v for key, v in self._started.items() if key[0] != held[0]}

    def close(self) -> None:
        for pid in list(self._held):
            self._forget(pid)


def started_for(pid: int, marker: dict[str, str], binary: str | None = None) -> bool | None:
    """Whether the process was started with our NUT directories in its environment
    (every NUT program the agent runs gets them).

    /proc hides the environment of a process that changed its user (upsd, dropped to
    `nut`) from a root without CAP_SYS_PTRACE, which is the agent in its container
    (compose.yaml drops every capability but four). Then, with `binary` given, the
    process counts as ours when it runs that very program (its argv[0], which
    /proc/<pid>/cmdline shows to anyone): it sits at a PID file in our own state dir,
    which only root and group nut can write. Else None: unknown, so never signalled."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except PermissionError:
        return True if binary is not None and runs(pid, binary) else None
    except OSError:
        return False
    env = dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return all(env.get(k.encode()) == v.encode() for k, v in marker.items())


def runs(pid: int, binary: str) -> bool:
    """Whether process `pid` was started as `binary` (its argv[0], both paths resolved)."""
    raw = _read(f"/proc/{pid}/cmdline")
    if not raw:
        return False
    argv0 = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    return os.path.realpath(argv0) == os.path.realpath(binary)


def hz() -> int:
    """Clock ticks a second, the unit of /proc/<pid>/stat's start time."""
    return int(os.sysconf("SC_CLK_TCK"))


@lru_cache(maxsize=1)
def boot_wall() -> float:
    """When the system booted, on the wall clock (/proc/stat's btime: fixed until the next boot)."""
    try:
        for line in Path("/proc/stat").read_text(encoding="ascii").splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return time.time() - boot_ticks() / hz()


def boot_ticks() -> int:
    """Now, on the clock of /proc/<pid>/stat's start time (clock ticks after boot)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * hz())


def driver_pidfiles(statepath: Path | str, drivers: set[str]) -> dict[str, tuple[str, str]]:
    """NUT's driver PID files, <driver>-<ups>.pid, by UPS name: {ups: (driver, path)}.

    `drivers` is every driver name that could be in use; the longest matching prefix
    wins, since both driver and UPS names may contain '-'.
    """
    found: dict[str, tuple[str, str]] = {}
    folder = os.fspath(statepath)
    try:
        entries = os.listdir(folder)
    except OSError:
        return found
    for entry in sorted(entries):
        if not entry.endswith(".pid"):
            continue
        stem = entry[: -len(".pid")]
        candidates = [d for d in drivers if stem.startswith(d + "-") and len(stem) > len(d) + 1]
        if candidates:
            driver = max(candidates, key=len)
            found[stem[len(driver) + 1 :]] = (driver, os.path.join(folder, entry))
    return found
