"""A forced shutdown (FSD), from the low battery to the power coming back: pure decisions.

NUT's chain, and what the agent adds to it (docs/reliability.md, "The power-failure chain"):

1. The UPS reports OB LB. Our upsmon, as primary, sets FSD in upsd, waits HOSTSYNC for the
   secondaries (the Pi's own upsmon, the other hosts) to log out, runs SHUTDOWNCMD and
   writes POWERDOWNFLAG (`<statepath>/killpower`), then exits.
2. **Power cycle** (`power_cycle_now`). Once POWERDOWNFLAG is there (every secondary has had
   HOSTSYNC to go), or when the container is stopped while FSD is set (the host is halting),
   the agent asks each UPS in FSD to cut its load after `ups_off_delay` seconds and to
   restore it when mains return: NUT's late shutdown (`upsdrvctl shutdown`, which needs the
   driver stopped) done online through upsd, `SET VAR <ups> ups.delay.shutdown` then
   `INSTCMD <ups> shutdown.return`. Without it a host halted while mains came back stays
   halted: NUT's "power race". Sent once per FSD.
3. **No second shutdown** (decide/plan.py). upsmon is not started again while FSD is set: a
   new upsmon would see FSD at once and shut down again, and again.
4. **FSD called off** (`fsd_clear_due`). NUT clears FSD only by restarting upsd. The agent
   does that once every UPS upsd serves has been on line without LB (OL, no OB, no LB) for
   `fsd_clear_after` seconds, which means this host did not halt (it runs this code). Then
   upsmon starts again (and removes POWERDOWNFLAG, as upsmon does at start).

Time is passed in (monotonic seconds); nothing here sleeps or reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconcile.model import Served

# What upsd's ups.status must hold for "on line" and must not hold for "good".
_ON_LINE = "OL"
_NOT_GOOD = frozenset({"OB", "LB"})
POWER_CYCLE_COMMAND = "shutdown.return"
POWERDOWNFLAG = "killpower"  # in NUT's state dir (templates/upsmon.conf.j2 names the same file)


@dataclass(frozen=True)
class Forced:
    """This pass's view of a forced shutdown."""

    fsd: frozenset[str] = frozenset()  # UPSes upsd reports with FSD
    shutdown_ran: bool = False  # POWERDOWNFLAG exists: our upsmon ran SHUTDOWNCMD
    online_since: float | None = None  # while FSD is set: since when every UPS is on line without LB
    power_cycle: tuple[str, ...] = ()  # UPSes to send the power cycle to now
    clear: bool = False  # restart upsd now to call the forced shutdown off

    @property
    def active(self) -> bool:
        return bool(self.fsd)


def in_fsd(served: Mapping[str, Served] | None) -> frozenset[str]:
    return frozenset(name for name, s in (served or {}).items() if "FSD" in s.flags)


def all_good(served: Mapping[str, Served] | None) -> bool:
    """Every UPS upsd serves answers, on line, without OB or LB. A UPS that does not
    answer (no driver, stale data, held) is not known to be good."""
    if not served:
        return False
    return all(s.state == "ok" and _ON_LINE in s.flags and not s.flags & _NOT_GOOD for s in served.values())


def track_online(served: Mapping[str, Served] | None, since: float | None, now: float) -> float | None:
    """Since when every UPS has been good while FSD is set; None when FSD is not set or
    one of them is not good (the clock starts over)."""
    if not in_fsd(served) or not all_good(served):
        return None
    return now if since is None else since


def fsd_clear_due(since: float | None, now: float, clear_after: float) -> bool:
    return since is not None and now - since >= clear_after


def clear_at(since: float | None, clear_after: float | None) -> float | None:
    """When FSD may be called off (monotonic), if the clock for it runs."""
    return None if since is None or clear_after is None else since + clear_after


def power_cycle_now(
    fsd: frozenset[str], shutdown_ran: bool, stopping: bool, sent: frozenset[str], off_delay: int
) -> tuple[str, ...]:
    """The UPSes to power-cycle now: in FSD, not sent to yet in this FSD, and only once
    the primary upsmon has run its shutdown (or the agent is being stopped, the host
    going down). `off_delay` 0: never (the owner turned it off)."""
    if off_delay <= 0 or not (shutdown_ran or stopping):
        return ()
    return tuple(sorted(fsd - sent))


def decide_forced(
    served: Mapping[str, Served] | None,
    shutdown_ran: bool,
    sent: frozenset[str],
    online_since: float | None,
    now: float,
    clear_after: float | None,
    off_delay: int,
) -> Forced:
    """`clear_after` None: this pass has no clock (`apply` runs once), so FSD is never
    called off from it; only the long-running agent tracks the time on line."""
    fsd = in_fsd(served)
    since = track_online(served, online_since, now) if clear_after is not None else None
    clear = clear_after is not None and fsd_clear_due(since, now, clear_after)
    cycle = () if clear else power_cycle_now(fsd, shutdown_ran, False, sent, off_delay)
    return Forced(fsd, shutdown_ran, since, cycle, clear)


def can_power_cycle(commands: frozenset[str]) -> bool:
    return POWER_CYCLE_COMMAND in commands
