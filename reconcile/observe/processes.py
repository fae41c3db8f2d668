"""Which NUT daemons and drivers are running: PID files checked against /proc."""

from __future__ import annotations

import os
from pathlib import Path


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 1 else None


def alive(pid: int, program: str) -> bool:
    """True when pid runs `program` and is not a zombie (guards against PID reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    state = stat[stat.rfind(")") + 2 : stat.rfind(")") + 3]
    # The kernel truncates comm to 15 characters.
    return state not in ("Z", "X") and comm == program[:15]


def running_pid(pidfile: Path, program: str) -> int | None:
    pid = read_pid(pidfile)
    return pid if pid is not None and alive(pid, program) else None


def find_driver_pids(statepath: Path, drivers: set[str]) -> dict[str, tuple[str, int]]:
    """Running drivers by UPS name: {ups: (driver, pid)}, from <driver>-<ups>.pid files.

    `drivers` is every driver name that could be in use; the longest matching prefix
    wins, since both driver and UPS names may contain '-'.
    """
    found: dict[str, tuple[str, int]] = {}
    try:
        entries = os.listdir(statepath)
    except OSError:
        return found
    for entry in entries:
        if not entry.endswith(".pid"):
            continue
        stem = entry[: -len(".pid")]
        candidates = [d for d in drivers if stem.startswith(d + "-") and len(stem) > len(d) + 1]
        if not candidates:
            continue
        driver = max(candidates, key=len)
        pid = running_pid(statepath / entry, driver)
        if pid is not None:
            found[stem[len(driver) + 1 :]] = (driver, pid)
    return found
