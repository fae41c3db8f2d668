"""What is running: NUT's daemons and drivers as /proc shows them, and what upsd serves.

Only facts are gathered here. Which of these processes are the agent's own (and may be
signalled) is decided from them and the agent's record (decide/ownership.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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


def _fact(key: str, program: str, pid: int | None, source: str, marker: dict[str, str]) -> ProcFact | None:
    if pid is None:
        return None
    proc = processes.proc_id(pid, program)
    if proc is None:
        return None
    return ProcFact(key, program, proc, source, processes.started_for(pid, marker))


def gather(
    statepath: Path,
    marker: dict[str, str],
    ledger: Ledger,
    drivers: Iterable[str],
    upsd_at: tuple[str, int],
    upsmon_pidfiles: Iterable[Path] = UPSMON_OWN_PIDFILES,
) -> Facts:
    """Every live NUT process a PID file or the agent's record points at."""
    found: dict[tuple[str, int], ProcFact] = {}

    def add(fact: ProcFact | None) -> None:
        if fact is not None:
            found.setdefault((fact.key, fact.proc.pid), fact)

    pidfile = statepath / "upsd.pid"
    add(_fact("upsd", "upsd", processes.read_pid(pidfile), str(pidfile), marker))
    recorded_drivers = {
        key.removeprefix("driver:"): o.program for key, o in ledger.items() if key.startswith("driver:")
    }
    names = set(drivers) | set(recorded_drivers.values())
    for ups, (driver, path) in processes.driver_pidfiles(statepath, names).items():
        add(_fact(f"driver:{ups}", driver, processes.read_pid(path), str(path), marker))
    for path in sorted({*upsmon_pidfiles, statepath / "upsmon.pid"}):
        add(_fact("upsmon", "upsmon", processes.read_pid(path), str(path), marker))
    # What the agent started, even where no PID file points at it (upsmon writes its
    # own elsewhere; a driver's may have been removed).
    for key, owned in sorted(ledger.items()):
        add(_fact(key, owned.program, owned.pid, "record", marker))

    served = None
    if any(f.key == "upsd" for f in found.values()):
        served = what_upsd_serves(*upsd_at)
    return Facts(tuple(found.values()), served)


def what_upsd_serves(host: str, port: int, timeout: float = 2.0) -> dict[str, Served] | None:
    try:
        with upsd_client.Connection(host, port, timeout=timeout) as conn:
            return {name: conn.served(name) for name in conn.list_ups()}
    except upsd_client.UpsdError:
        return None
