"""The actual state: NUT's config files on disk and the processes running."""

from __future__ import annotations

import os
from pathlib import Path

from reconcile.model import ActualState, DriverProc, FileState
from reconcile.nutsyntax import NutSyntaxError, section_drivers
from reconcile.observe import processes

MANAGED_HEADER = "# Managed by nut-reconcile: edits are overwritten. Delete this line to manage the file yourself."
FILES = ("nut.conf", "ups.conf", "upsd.conf", "upsd.users", "upsmon.conf")


def read_file(confpath: Path, name: str) -> FileState:
    path = confpath / name
    try:
        content: str | None = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        content = None
    except OSError:
        # Unreadable: treat as someone else's file, never overwrite it.
        return FileState(name, "", managed=False, writable=False)
    managed = content is None or content.startswith(MANAGED_HEADER)
    if content is None:
        writable = os.access(confpath, os.W_OK)
    else:
        # access() reports EROFS for a read-only mount, also for root.
        writable = os.access(path, os.W_OK) and os.access(confpath, os.W_OK)
    return FileState(name, content, managed=managed, writable=writable)


def observe(confpath: Path, statepath: Path, upsmon_pidfile: Path, drivers: set[str]) -> ActualState:
    """`drivers`: driver names that may have PID files here, besides those in ups.conf."""
    files = {name: read_file(confpath, name) for name in FILES}
    try:
        drivers = drivers | set(section_drivers(files["ups.conf"].content).values())
    except NutSyntaxError:
        pass  # the planner reports an unparsable ups.conf
    running = processes.find_driver_pids(statepath, drivers)
    return ActualState(
        files=files,
        drivers={ups: DriverProc(ups, drv, pid) for ups, (drv, pid) in running.items()},
        upsd_pid=processes.running_pid(statepath / "upsd.pid", "upsd"),
        upsmon_pid=processes.running_pid(upsmon_pidfile, "upsmon"),
    )
