"""Which running NUT processes are the agent's own: the only ones it ever signals.

A process is ours when the agent's record names it by PID *and* start time (a PID
alone is reused), or when the record says the agent was starting that program and the
process started no earlier. Failing that, a process whose environment shows it was
started for our NUT directories (NUT_CONFPATH and NUT_STATEPATH) is adopted: one an
earlier version, or an agent killed before it could record it, started. Anything else
at one of our PID files is a stranger: reported, never signalled, and its PID file is
left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reconcile.decide import loaded as loaded_
from reconcile.model import Daemon, DriverProc, FileState, Ledger, Owned, ProcFact, Stranger


@dataclass(frozen=True)
class Ownership:
    drivers: dict[str, DriverProc]
    upsd: Daemon | None
    upsmon: Daemon | None
    strangers: tuple[Stranger, ...]
    ledger: Ledger  # the record as it is now: the dead dropped, the adopted added
    adopted: tuple[str, ...]


def _recorded(fact: ProcFact, owned: Owned | None) -> bool:
    if owned is None or owned.program != fact.program:
        return False
    if owned.pid is None:
        return fact.proc.start >= owned.start  # started by the pass that recorded the intent
    return owned.pid == fact.proc.pid and owned.start == fact.proc.start


def adopted_loaded(key: str, started_at: float, files: Mapping[str, FileState]) -> loaded_.Loaded:
    """What an adopted process loaded, as far as can be told: a file not changed since the
    process started is what it read; a newer one is not (so it gets reloaded)."""

    def older(name: str) -> bool:
        mtime = files[name].mtime if name in files else None
        return mtime is None or mtime <= started_at

    contents = {name: f.content for name, f in files.items()}
    if key == "upsd":
        return loaded_.of_files(contents, tuple(n for n in loaded_.UPSD_FILES if older(n)))
    if key == "upsmon":
        return loaded_.of_files(contents, ("upsmon.conf",)) if older("upsmon.conf") else ()
    if key.startswith("driver:") and older("ups.conf"):
        block = loaded_.section_blocks(contents.get("ups.conf")).get(key.removeprefix("driver:"))
        return loaded_.of_section(block)
    return ()


def sort_out(
    facts: Iterable[ProcFact], ledger: Mapping[str, Owned], files: Mapping[str, FileState], boot_wall: float, hz: int
) -> Ownership:
    """`boot_wall`: when the system booted (wall clock); `hz`: clock ticks a second."""
    ours: Ledger = {}
    strangers: list[Stranger] = []
    adopted: list[str] = []
    for fact in sorted(facts, key=lambda f: (f.key, f.source != "record", f.proc.pid)):
        if fact.key in ours:
            if ours[fact.key].pid != fact.proc.pid:
                strangers.append(Stranger(fact.key, fact.program, fact.proc.pid, fact.source))
            continue
        owned = ledger.get(fact.key)
        if _recorded(fact, owned):
            assert owned is not None
            ours[fact.key] = Owned(fact.program, fact.proc.pid, fact.proc.start, owned.loaded)
        elif fact.marked:
            started_at = boot_wall + fact.proc.start / hz
            ours[fact.key] = Owned(
                fact.program, fact.proc.pid, fact.proc.start, adopted_loaded(fact.key, started_at, files)
            )
            adopted.append(fact.key)
        elif fact.source != "record":
            strangers.append(Stranger(fact.key, fact.program, fact.proc.pid, fact.source))
        # else: our record names a PID that another process has now (the record is dropped;
        # nothing points at that process but the stale record, so it is not in the way).
    drivers = {
        key.removeprefix("driver:"): DriverProc(key.removeprefix("driver:"), o.program, o.proc, o.loaded)
        for key, o in ours.items()
        if key.startswith("driver:") and o.proc is not None
    }

    def daemon(key: str) -> Daemon | None:
        o = ours.get(key)
        return None if o is None or o.proc is None else Daemon(o.proc, o.loaded)

    return Ownership(drivers, daemon("upsd"), daemon("upsmon"), tuple(strangers), ours, tuple(adopted))
