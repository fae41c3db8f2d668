"""What is running: NUT's daemons and drivers as /proc shows them, and what upsd serves.

Only facts are gathered here. Which of these processes are the agent's own (and may be
signalled) is decided from them and the agent's record (decide/ownership.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from reconcile.model import Ledger, ProcFact, Served
from reconcile.observe import processes, upsd_client

# Where upsmon itself writes its PID file: NUT's compiled-in PIDPATH (/run/nut for
# Debian, the state dir for our source build). Only read, to find an upsmon that is
# not ours: NUT allows one upsmon per PID file.
UPSMON_OWN_PIDFILES = (Path("/run/nut/upsmon.pid"), Path("/var/run/nut/upsmon.pid"))


@dataclass(frozen=True)
class Facts:
    procs: tuple[ProcFact, ...]
    served: dict[str, Served] | None  # None: no upsd answered


def _fact(
    key: str,
    program: str,
    pid: int | None,
    source: str,
    marker: dict[str, str],
    ledger: Ledger,
    binaries: Mapping[str, str] = MappingProxyType({}),
    alive: processes.Pidfds | None = None,
) -> ProcFact | None:
    if pid is None:
        return None
    proc = alive.proc_id(pid, program) if alive is not None else processes.proc_id(pid, program)
    if proc is None:
        return None
    owned = ledger.get(key)
    if owned is not None and owned.program == program and (owned.proc == proc or owned.pid is None):
        # The record already tells (decide/ownership.py): its environment is not needed.
        return ProcFact(key, program, proc, source, None)
    binary = binaries.get(program)
    started = (
        alive.started_for(proc, marker, binary) if alive is not None else processes.started_for(pid, marker, binary)
    )
    return ProcFact(key, program, proc, source, started)


def gather(
    statepath: Path,
    marker: dict[str, str],
    ledger: Ledger,
    drivers: Iterable[str],
    upsd_at: tuple[str, int],
    upsmon_pidfiles: Iterable[Path] = UPSMON_OWN_PIDFILES,
    session: upsd_client.Session | None = None,
    binaries: Mapping[str, str] = MappingProxyType({}),
    alive: processes.Pidfds | None = None,
) -> Facts:
    """Every live NUT process a PID file or the agent's record points at. `binaries`:
    the program the agent runs as upsd and as upsmon, for telling its own where /proc
    hides their environment (processes.started_for)."""
    found: dict[tuple[str, int], ProcFact] = {}
    if alive is not None:
        alive.refresh()

    def add(fact: ProcFact | None) -> None:
        if fact is not None:
            found.setdefault((fact.key, fact.proc.pid), fact)

    # Plain strings, not Path: this runs at every tick.
    folder = os.fspath(statepath)
    pidfile = os.path.join(folder, "upsd.pid")
    add(_fact("upsd", "upsd", processes.read_pid(pidfile), pidfile, marker, ledger, binaries, alive))
    recorded_drivers = {
        key.removeprefix("driver:"): o.program for key, o in ledger.items() if key.startswith("driver:")
    }
    names = set(drivers) | set(recorded_drivers.values())
    for ups, (driver, path) in processes.driver_pidfiles(statepath, names).items():
        add(_fact(f"driver:{ups}", driver, processes.read_pid(path), path, marker, ledger, alive=alive))
    for upsmon_pid in sorted({*map(os.fspath, upsmon_pidfiles), os.path.join(folder, "upsmon.pid")}):
        add(_fact("upsmon", "upsmon", processes.read_pid(upsmon_pid), upsmon_pid, marker, ledger, binaries, alive))
    # What the agent started, even where no PID file points at it (upsmon writes its
    # own elsewhere; a driver's may have been removed).
    for key, owned in sorted(ledger.items()):
        if owned.pid is not None and (key, owned.pid) not in found:
            add(_fact(key, owned.program, owned.pid, "record", marker, ledger, alive=alive))

    served = None
    if any(f.key == "upsd" for f in found.values()):
        served = (session or upsd_client.Session(*upsd_at)).served()
    return Facts(tuple(found.values()), served)
