"""What a decision means as events (reconcile/events.py): pure, no I/O.

- `problems`: what is wrong while it lasts (a stranger, an unservable UPS, a held UPS,
  a skipped file ...). `once` turns them into events: each when it starts, and a
  `problem.cleared` (or `ups.released`) when it ends, so a lasting problem is one line,
  not one per tick.
- `bus`: plugged, unplugged, swapped, renamed, from the decision before and this one.
- `power`: on battery, status changes, back on line (decide/power.py's memory).
- `died`: a driver of ours gone on its own (the agent starts it again, with backoff).
"""

from __future__ import annotations

from collections.abc import Iterable

from reconcile import events as ev
from reconcile.decide.decision import Decision
from reconcile.decide.power import Memory, changes
from reconcile.logfmt import format_fields
from reconcile.model import StopDriver, Ups


def problems(d: Decision) -> list[ev.Event]:
    found: list[ev.Event] = [ev.Unservable(p.ups, p.reason) for p in d.problems]
    found += [ev.Twins(w) for w in d.warnings]
    found += [ev.PlanWarning(w) for w in d.plan.warnings]
    found += [ev.PlanBlocked(w) for w in d.plan.blocked]
    found += [ev.StrangerFound(s.program, s.pid, s.source) for s in d.owned.strangers]
    found += [ev.Adopted(key) for key in d.owned.adopted]
    found += [ev.Held(d.names[u.key]) for u in d.held]
    found += [ev.FileSkipped(s.name, s.reason) for s in d.plan.skipped]
    found += [ev.BackoffHold(item) for item in d.held_back]
    return found


def once(
    current: Iterable[ev.Event], reported: frozenset[ev.Event], on_bus: frozenset[str] = frozenset()
) -> tuple[list[ev.Event], frozenset[ev.Event]]:
    """The events to emit for `current` problems given those `reported` so far: the new
    ones, then one for each that is over (`on_bus`: the UPS names attached now, to say
    why a hold ended). Returns them and what is reported now."""
    now = frozenset(current)
    out = [e for e in current if e not in reported]
    for gone in sorted(reported - now, key=lambda e: (e.kind, format_fields(e.fields()))):
        if isinstance(gone, ev.Held):
            why = (
                "back on the bus"
                if gone.ups in on_bus
                else "the upsmon (or the upsd with FSD) that saw it on battery is gone"
            )
            out.append(ev.Released(gone.ups, why))
        elif gone.level != "debug" and not isinstance(gone, ev.Adopted):
            out.append(ev.ProblemCleared(gone.kind, format_fields(gone.fields())))
    return out, now


def _model(ups: Ups) -> str | None:
    return " ".join(p for p in (ups.usb.manufacturer, ups.usb.product) if p) or None


def bus(before: Decision | None, after: Decision) -> list[ev.Event]:
    """What changed on the bus between two decisions of one agent (none for its first)."""
    if before is None:
        return []
    old = {before.names[u.key]: u for u in before.attached}
    new = {after.names[u.key]: u for u in after.attached}
    old_name = {u.key: n for n, u in old.items()}
    new_name = {u.key: n for n, u in new.items()}
    out: list[ev.Event] = []
    for name in sorted(set(new) - set(old)):
        ups = new[name]
        if ups.key in old_name:
            out.append(ev.Renamed(old_name[ups.key], name, ups.usb.fingerprint))
        else:
            out.append(ev.Plugged(name, ups.usb.port, ups.usb.vidpid, _model(ups)))
    for name in sorted(set(old) - set(new)):
        if old[name].key not in new_name:
            out.append(ev.Unplugged(name, old[name].usb.port))
    for name in sorted(set(old) & set(new)):
        if old[name].key != new[name].key:
            out.append(ev.Swapped(name, old[name].usb.fingerprint, new[name].usb.fingerprint))
    return out


def power(before: Memory, after: Memory) -> list[ev.Event]:
    return [ev.Power(ups, what) for ups, what in changes(before, after)]


def healed(stale: Iterable[tuple[str, float]]) -> list[ev.Event]:
    return [ev.DriverHealed(ups, f"{seconds:.0f}") for ups, seconds in stale]


def died(before: Decision | None, after: Decision) -> list[ev.Event]:
    """The drivers the agent had in the decision before that are gone now, though their
    UPS is still attached and that pass did not stop them."""
    if before is None:
        return []
    stopped = {s.ups for s in before.plan.steps if isinstance(s, StopDriver)}
    attached = {after.names[u.key] for u in after.attached}
    return [
        ev.DriverDied(ups, proc.driver, proc.proc.pid)
        for ups, proc in sorted(before.owned.drivers.items())
        if ups not in after.owned.drivers and ups not in stopped and ups in attached
    ]


def no_power_cycle(before: Decision | None, d: Decision) -> list[ev.Event]:
    """The UPSes that cannot be power-cycled, once for each driver start (what upsd
    offers for a UPS is read again when its driver restarts). The first pass says it too:
    the owner must hear it at start."""
    old = before.cannot_power_cycle if before is not None else {}
    return [
        ev.NoPowerCycle(ups, " ".join(sorted(offered)) or "none")
        for ups, offered in sorted(d.cannot_power_cycle.items())
        if old.get(ups) != offered
    ]


def stale(d: Decision) -> list[ev.Event]:
    """The drivers this pass restarts because upsd called their data stale too long."""
    return [ev.DriverStale(ups) for ups in sorted(d.restart)]


def fsd_cleared(d: Decision) -> list[ev.Event]:
    """FSD called off in this pass (its upsd restart follows as steps)."""
    if not d.forced.clear:
        return []
    on_line = d.supervision.now - (d.forced.online_since or d.supervision.now)
    return [ev.FsdCleared(",".join(sorted(d.forced.fsd)), int(on_line))]


def forced(before: Decision | None, d: Decision) -> list[ev.Event]:
    """FSD called off in this pass; the UPSes in FSD not power-cycled, each once per FSD
    and reason; and those whose FSD stayed after upsd's restart (found in this pass:
    once) (decide/forced.py)."""
    old = before.forced.skipped if before is not None else {}
    out = fsd_cleared(d)
    out += [ev.PowerCycleSkipped(ups, why) for ups, why in sorted(d.forced.skipped.items()) if old.get(ups) != why]
    return out + [ev.FsdKept(ups) for ups in sorted(d.forced.kept)]
