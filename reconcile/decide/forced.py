"""A forced shutdown (FSD), from the low battery to the power coming back: pure decisions.

NUT's chain, and what the agent adds to it (docs/reliability.md, "The power-failure chain"):

1. The UPS reports OB LB. Our upsmon, as primary, sets FSD in upsd, waits HOSTSYNC for the
   secondaries (the Pi's own upsmon, the other hosts) to log out, runs SHUTDOWNCMD and
   writes POWERDOWNFLAG (`<statepath>/killpower`), then exits.
2. **Power cycle** (`cycle_or_skip`), only when a host is really going down: a secondary
   that was logged in to the UPS when FSD was set (remembered from the last pass before
   FSD that read the logins, and the first in FSD: `remember_logins`) has logged out
   since, once our upsmon has run its shutdown; or the container is stopped while FSD is
   set (its host is halting). Then the agent asks each such UPS to cut its load after
   `ups_off_delay` seconds and to restore it when mains return: NUT's late shutdown
   (`upsdrvctl shutdown`, which needs the driver stopped) done online through upsd
   (act/powercycle.py): its start delay first, above the off-delay (`delays`), both read
   back, then `shutdown.return`, each followed to the driver's answer (upsd's TRACKING).
   Without it a host halted while mains came back stays halted: NUT's "power race". Sent
   once per FSD once it reaches the UPS (tried again at later passes while it does not:
   login refused, no connection; at most POWER_CYCLE_TRIES times), never from `apply`,
   not to a UPS whose rule says `powers_host = false` (unless it says
   `power_cycle = true`). Every UPS not cycled is `skipped` with the reason.
3. **No second shutdown** (decide/plan.py). upsmon is not started again while FSD is set: a
   new upsmon would see FSD at once and shut down again, and again.
4. **FSD called off** (`decide_forced`'s `clear`). NUT clears FSD only by restarting upsd.
   The agent does that once every UPS upsd serves has been on line without LB (OL, no OB,
   no LB) for `fsd_clear_after` seconds (at least FSD_CLEAR_MIN), which means this host did
   not halt (it runs this code); never while our upsmon is still in its shutdown, nor before
   each UPS's power cycle was sent or skipped. Then upsmon starts again (and removes
   POWERDOWNFLAG, as upsmon does at start). An FSD still there after that restart is the
   driver's own (nutdrv_qx, blazer report it): it is reported once (`kept`), and upsd is
   not restarted for it again.

Time is passed in (monotonic seconds); nothing here sleeps or reads a clock.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from reconcile.decide.logins import address
from reconcile.model import OFF_DELAY, POWER_CYCLE_COMMAND, START_DELAY, Served

# Why at least 60 s (userconfig.py refuses less, this module never takes less): a clear
# before HOSTSYNC (15 s) + FINALDELAY (5 s) and a host's halt would call FSD off under a
# host still going down, before its power cycle was sent.
from reconcile.userconfig import FSD_CLEAR_MIN as FSD_CLEAR_MIN

# What upsd's ups.status must hold for "on line" and must not hold for "good".
_ON_LINE = "OL"
_NOT_GOOD = frozenset({"OB", "LB"})
POWERDOWNFLAG = "killpower"  # in NUT's state dir (templates/upsmon.conf.j2 names the same file)
# usbhid-ups(8): ondelay (ups.delay.start) "must be greater than offdelay", or the UPS may
# switch off and never come back when mains return during the countdown. CyberPower units
# count in whole minutes (they round both down), so there the margin is a minute.
START_MARGIN = 30
CYBERPOWER_MARGIN = 60
# How many times in one FSD the power cycle is tried on a UPS it never reached (upsd
# refused the login, no connection, out of time before the command): each try is a pass
# (the next periodic one), each failure an `ups.power_cycle` event with ok=false. Why a
# bound: a upsd that keeps refusing would be asked at every pass for the rest of the FSD,
# and FSD could never be called off (it waits for every power cycle sent or skipped).
POWER_CYCLE_TRIES = 5

Logins = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Memory:
    """What a forced shutdown carries from one pass to the next (in Supervision)."""

    online_since: float | None = None  # while FSD is set: since when every UPS is on line without LB
    # UPSes the power cycle reached in this FSD (the UPS answered it, or refused the delays)
    power_cycled: frozenset[str] = frozenset()
    # UPS -> the power cycle's tries in this FSD that never reached it (POWER_CYCLE_TRIES)
    tries: Mapping[str, int] = field(default_factory=dict)
    # The secondaries' login addresses per UPS (ours taken out, canonical spelling): on the
    # last pass that read them before FSD, and when FSD was first seen (with the former's).
    before_fsd: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    at_fsd: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cleared: frozenset[str] = frozenset()  # in FSD when upsd was last restarted to call it off
    kept: frozenset[str] = frozenset()  # their FSD stayed after that restart: the driver's own


@dataclass(frozen=True)
class Pass:
    """What the forced-shutdown decision reads of one pass."""

    served: Mapping[str, Served] | None
    shutdown_ran: bool  # POWERDOWNFLAG exists: our upsmon ran its shutdown
    upsmon_running: bool  # our upsmon is alive (in FSD: in its shutdown)
    logins: Logins | None  # upsd's LIST CLIENT addresses per UPS; None: not known this pass
    own_address: str  # the address our upsmon's login comes from
    now: float
    clear_after: float | None  # None: no clock (`apply`): FSD is never called off
    may_send: bool = False  # False (`apply`): never a power cycle, never a skip reported
    stopping: bool = False  # the agent is being stopped: its host is halting
    # UPS -> why it is never power-cycled (ups_off_delay 0, powers_host = false, no shutdown.return)
    blocked: Mapping[str, str] = field(default_factory=dict)
    placeholders: frozenset[str] = frozenset()  # served names with no UPS behind them (not held)


@dataclass(frozen=True)
class Forced:
    """This pass's view of a forced shutdown."""

    fsd: frozenset[str] = frozenset()  # UPSes upsd reports with FSD
    shutdown_ran: bool = False  # POWERDOWNFLAG exists: our upsmon ran SHUTDOWNCMD
    power_cycle: tuple[str, ...] = ()  # UPSes to send the power cycle to now
    skipped: Mapping[str, str] = field(default_factory=dict)  # UPS -> why it is not power-cycled
    clear: bool = False  # restart upsd now to call the forced shutdown off
    held_off: str | None = None  # why FSD, due to be called off, is not
    kept: frozenset[str] = frozenset()  # UPSes whose FSD upsd's restart did not remove (found now)
    memory: Memory = field(default_factory=Memory)

    @property
    def active(self) -> bool:
        return bool(self.fsd)

    @property
    def online_since(self) -> float | None:
        return self.memory.online_since


def in_fsd(served: Mapping[str, Served] | None) -> frozenset[str]:
    return frozenset(name for name, s in (served or {}).items() if "FSD" in s.flags)


def all_good(served: Mapping[str, Served] | None, placeholders: frozenset[str] = frozenset()) -> bool:
    """Every UPS upsd serves answers, on line, without OB or LB. A UPS that does not
    answer (no driver, stale data, held) is not known to be good. `placeholders`: names
    served with no UPS behind them by design (UPS_NAME beside a pinned name, a host_ups
    not plugged in): they never answer, and never power a host, so they do not count.
    Why: else a pinned-name Pi (pi-cabin: my-ups a placeholder) never calls FSD off."""
    real = {name: s for name, s in (served or {}).items() if name not in placeholders}
    if not real:
        return False
    return all(s.state == "ok" and _ON_LINE in s.flags and not s.flags & _NOT_GOOD for s in real.values())


def track_online(
    served: Mapping[str, Served] | None, since: float | None, now: float, placeholders: frozenset[str] = frozenset()
) -> float | None:
    """Since when every UPS has been good while FSD is set; None when FSD is not set or
    one of them is not good (the clock starts over)."""
    if not in_fsd(served) or not all_good(served, placeholders):
        return None
    return now if since is None else since


def fsd_clear_due(since: float | None, now: float, clear_after: float) -> bool:
    """`clear_after` is never taken below FSD_CLEAR_MIN (a config file checked elsewhere,
    or one written by hand for this function, cannot shorten it)."""
    return since is not None and now - since >= max(clear_after, FSD_CLEAR_MIN)


def clear_at(since: float | None, clear_after: float | None) -> float | None:
    """When FSD may be called off (monotonic), if the clock for it runs."""
    return None if since is None or clear_after is None else since + max(clear_after, FSD_CLEAR_MIN)


# --- who is halting -------------------------------------------------------------------


def secondaries(addresses: Iterable[str], own: str, ours_running: bool) -> tuple[str, ...]:
    """The logins of a UPS without our own upsmon's (one login from `own`, while it runs),
    each address in one spelling (decide/logins.py, as `health` compares them: upsd may
    list ::ffff:127.0.0.1 for 127.0.0.1). Why by count: with host networking the Pi's
    upsmon logs in from 127.0.0.1 too."""
    left = Counter(address(a) for a in addresses)
    own = address(own)
    if ours_running and left[own] > 0:
        left[own] -= 1
    return tuple(sorted(left.elements()))


def _union(a: Iterable[str], b: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted((Counter(a) | Counter(b)).elements()))


def logged_out(at_fsd: Iterable[str], now: Iterable[str]) -> tuple[str, ...]:
    """The logins there when FSD was set and gone now (by address, repeats counted)."""
    return tuple(sorted((Counter(at_fsd) - Counter(now)).elements()))


def remember_logins(p: Pass, memory: Memory) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """(before_fsd, at_fsd) after this pass. Every pass not in FSD that read a UPS's
    logins replaces its secondaries with those (on line too: a UPS can go from OL straight
    to OB LB, and upsmon sets FSD at its next poll, so the agent's first pass may see FSD
    already). The first pass in FSD freezes them, with those of the last pass before (a
    secondary may have logged out between that pass and this one: it saw FSD first).

    When the logins are read is observer.logins_of's: at every pass while secondaries are
    configured ([[shutdown.secondary]], expect_secondaries), else only while a UPS is on
    battery or in FSD; so with no secondary configured only a pass on battery is
    remembered (one on line is not read, and what an earlier outage read is stale)."""
    before: dict[str, tuple[str, ...]] = {}
    at_fsd: dict[str, tuple[str, ...]] = {}
    for ups, s in (p.served or {}).items():
        now = None
        if p.logins is not None and ups in p.logins:
            now = secondaries(p.logins[ups], p.own_address, p.upsmon_running)
        if "FSD" in s.flags:
            if ups in memory.at_fsd:
                at_fsd[ups] = memory.at_fsd[ups]
            else:
                at_fsd[ups] = _union(memory.before_fsd.get(ups, ()), now or ())
        elif s.state != "ok":
            # No answer this pass (FSD may be set unseen: a secondary's logout then is not
            # to replace what was there before): what was known stays.
            if ups in memory.before_fsd:
                before[ups] = memory.before_fsd[ups]
            if ups in memory.at_fsd:
                at_fsd[ups] = memory.at_fsd[ups]
        elif now is not None:
            before[ups] = now
        elif "OB" in s.flags and ups in memory.before_fsd:
            before[ups] = memory.before_fsd[ups]  # on battery, not read this pass (upsd did not answer)
    return before, at_fsd


def cycle_or_skip(
    fsd: frozenset[str], p: Pass, at_fsd: Logins, sent: frozenset[str], tries: Mapping[str, int]
) -> tuple[tuple[str, ...], dict[str, str]]:
    """(the UPSes to power-cycle now, the others in FSD with why they are not).

    Nothing before the moment comes: our upsmon has run its shutdown (POWERDOWNFLAG), or
    is gone, or the agent is being stopped. Then a UPS is cycled when a host it powers is
    really going down: the agent's own (being stopped), or a secondary logged in when FSD
    was set that has logged out since. `sent`: the UPSes it reached already; `tries`: how
    often it was tried on the others without reaching them (given up at POWER_CYCLE_TRIES,
    but for the stop: the host is halting, a last try is all that is left). `apply`
    (may_send False) neither sends nor skips."""
    if not (p.may_send or p.stopping):
        return (), {}
    if not (p.stopping or p.shutdown_ran or not p.upsmon_running):
        return (), {}  # our upsmon is in its HOSTSYNC wait: the secondaries are still going
    cycle: list[str] = []
    skipped: dict[str, str] = {}
    for ups in sorted(fsd - sent):
        if ups in p.blocked:
            skipped[ups] = p.blocked[ups]
        elif p.stopping:
            cycle.append(ups)
        elif tries.get(ups, 0) >= POWER_CYCLE_TRIES:
            skipped[ups] = (
                f"given up: tried {tries[ups]} times in this FSD and it never reached the UPS "
                "(each ups.power_cycle event with ok=false says why)"
            )
        elif p.logins is None or ups not in p.logins:
            continue  # who is logged in is not known this pass: decided on the next
        elif logged_out(at_fsd.get(ups, ()), secondaries(p.logins[ups], p.own_address, p.upsmon_running)):
            cycle.append(ups)
        elif not at_fsd.get(ups):
            skipped[ups] = "no host is halting: no secondary was logged in when FSD was set"
        else:
            who = ", ".join(at_fsd[ups])
            skipped[ups] = f"no host is halting: the secondaries logged in when FSD was set ({who}) are still there"
    return tuple(cycle), skipped


def power_cycle_now(p: Pass, memory: Memory) -> tuple[tuple[str, ...], dict[str, str]]:
    """cycle_or_skip for this pass, with the logins it remembers (the stop's path)."""
    fsd = in_fsd(p.served)
    _, at_fsd = remember_logins(p, memory)
    return cycle_or_skip(fsd, p, at_fsd, memory.power_cycled, memory.tries)


# --- FSD called off -------------------------------------------------------------------


def _after_clear(served: Mapping[str, Served] | None, memory: Memory) -> tuple[frozenset[str], frozenset[str]]:
    """(cleared, kept): a UPS FSD was called off for is confirmed once upsd answers for it
    again: without FSD (the clear worked: forgotten) or with it (the driver's own: kept).
    upsd not answering this pass: nothing is known, all is kept."""
    if served is None:
        return memory.cleared, memory.kept
    cleared, kept = set(memory.cleared), set(memory.kept)
    for ups in memory.cleared:
        s = served.get(ups)
        if s is None:
            cleared.discard(ups)
        elif s.state == "ok" and s.status != "WAIT":
            cleared.discard(ups)
            if "FSD" in s.flags:
                kept.add(ups)
    for ups in memory.kept:
        s = served.get(ups)
        if s is None or (s.state == "ok" and "FSD" not in s.flags):
            kept.discard(ups)
    return frozenset(cleared), frozenset(kept)


def held_off(fsd: frozenset[str], p: Pass, kept: frozenset[str], settled: frozenset[str]) -> str | None:
    """Why FSD must not be called off now, or None."""
    if fsd & kept:
        return f"FSD on {', '.join(sorted(fsd & kept))} stayed after upsd's restart: the driver reports it itself"
    if p.upsmon_running:
        return "our upsmon is in its shutdown (it set FSD or saw it)"
    if fsd - settled:
        return f"the power cycle of {', '.join(sorted(fsd - settled))} is not sent or skipped yet"
    return None


def decide_forced(p: Pass, memory: Memory) -> Forced:
    fsd = in_fsd(p.served)
    before, at_fsd = remember_logins(p, memory)
    cleared, kept = _after_clear(p.served, memory)
    since = track_online(p.served, memory.online_since, p.now, p.placeholders) if p.clear_after is not None else None
    sent = memory.power_cycled & fsd  # a new FSD is a new forced shutdown: cycled again
    tries = {ups: n for ups, n in memory.tries.items() if ups in fsd}  # (and tried afresh)
    cycle, skipped = cycle_or_skip(fsd, p, at_fsd, sent, tries)
    due = p.clear_after is not None and fsd_clear_due(since, p.now, p.clear_after)
    why = held_off(fsd, p, kept, sent | frozenset(skipped)) if due else None
    clear = due and why is None
    new = Memory(
        online_since=None if clear else since,
        power_cycled=sent,
        tries=tries,
        before_fsd=before,
        at_fsd=at_fsd,
        cleared=fsd if clear else cleared,
        kept=kept,
    )
    return Forced(
        fsd=fsd,
        shutdown_ran=p.shutdown_ran,
        power_cycle=() if clear else cycle,
        skipped=skipped,
        clear=clear,
        held_off=why,
        kept=kept - memory.kept,
        memory=new,
    )


def sent(memory: Memory, reached: Iterable[str], tried: Iterable[str] = ()) -> Memory:
    """The memory once the power cycle was tried on `tried` and reached `reached` (the UPS
    answered the command, or refused the delays: never sent again in this FSD). One it
    did not reach has one try more counted: tried again at a later pass, up to
    POWER_CYCLE_TRIES times in this FSD."""
    more = frozenset(reached)
    missed = [ups for ups in tried if ups not in more]
    if more <= memory.power_cycled and not missed:
        return memory
    tries = dict(memory.tries)
    for ups in missed:
        tries[ups] = tries.get(ups, 0) + 1
    return replace(memory, power_cycled=memory.power_cycled | more, tries=tries)


# --- the delays -----------------------------------------------------------------------


def is_cyberpower(variables: Mapping[str, str]) -> bool:
    """A CyberPower unit: its maker as the driver reports it, or usbhid-ups's subdriver."""
    said = " ".join(variables.get(k, "") for k in ("device.mfr", "ups.mfr", "driver.version.data"))
    return "cyber" in said.lower()


@dataclass(frozen=True)
class Delays:
    """The delays to set before the power cycle (act/powercycle.py asks `delays` for them
    once it has read the UPS's variables), and the check of what the UPS reports back."""

    start: int  # ups.delay.start to set
    off: int  # ups.delay.shutdown to set
    cyberpower: bool

    def refused(self, start: int | None, off: int | None) -> str | None:
        """Why the delays the UPS reports (read back after the SETs) do not allow the
        power cycle, or None. The off-delay at least the one asked for (a host still
        halting must not lose power), the start delay above it by the margin (else the
        UPS may stay off)."""
        margin = CYBERPOWER_MARGIN if self.cyberpower else START_MARGIN
        if off is None or start is None:
            missing = [name for name, v in ((START_DELAY, start), (OFF_DELAY, off)) if v is None]
            return f"the UPS reports no {' and no '.join(missing)}"
        if off < self.off:
            return f"{OFF_DELAY} is {off} s, {self.off} s asked: a host still halting would lose power"
        if start < off + margin:
            return f"{START_DELAY} is {start} s, not {margin} s above {OFF_DELAY} ({off} s): the UPS might stay off"
        return None


def delays(off_delay: int, variables: Mapping[str, str]) -> Delays:
    """The delays for an off-delay of `off_delay` s on the UPS whose variables these are:
    the start delay above the off-delay by START_MARGIN; on CyberPower both in whole
    minutes (the off-delay rounded up: never shorter than asked), a minute apart."""
    if is_cyberpower(variables):
        off = math.ceil(off_delay / 60) * 60
        return Delays(off + CYBERPOWER_MARGIN, off, True)
    return Delays(off_delay + START_MARGIN, off_delay, False)


def blocked(powers_host: bool, asked: bool | None, commands: frozenset[str] | None, off_delay: int) -> str | None:
    """Why a UPS is never power-cycled, or None. `asked`: its rule's power_cycle
    (None: not said); `commands`: what its driver offers (None: not known yet)."""
    if off_delay <= 0:
        return "ups_off_delay = 0: the power cycle is turned off"
    if asked is False:
        return "power_cycle = false on its [[device]] rule"
    if not powers_host and asked is not True:
        return "powers_host = false (power_cycle = true on its [[device]] rule would ask for it)"
    if commands is not None and POWER_CYCLE_COMMAND not in commands:
        return f"its driver offers no {POWER_CYCLE_COMMAND}"
    return None


def can_power_cycle(commands: frozenset[str]) -> bool:
    return POWER_CYCLE_COMMAND in commands
