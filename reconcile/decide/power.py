"""NUT's safety rules across an unplug: a UPS that vanishes on battery stays watched.

upsmon counts a UPS it has not heard from for DEADTIME, whose last status was on
battery, as critical (OB+LB): the host shuts down, as it should when the UPS cable drops
mid-outage. That rule can only fire while upsmon still watches the UPS. So a UPS that
powers this host, last seen on battery (OB) or in forced shutdown (FSD), that leaves the
bus is *held*: its section and MONITOR line stay, with no driver (the device is gone,
so clients read "Driver not connected" and upsmon's polls fail), until

- it comes back (then it is served as usual), or
- the upsmon that saw it on battery is gone: it ran the shutdown command and exited, or
  was restarted; a new upsmon never heard the UPS, and NUT assumes such a UPS is on line.

A UPS with FSD stays held while the upsd that holds the flag runs: FSD is never cleared
by the agent (removing the section would). The unplug of a UPS on line power is handled
as usual: MONITOR out, driver stopped, section out. That includes `OL LB` (charging after
an outage: upsmon's rule needs OB, so holding it would only keep `health` unhealthy
until the upsmon restarts), and a UPS whose rule says `powers_host = false` (its MONITOR
power value is 0: its loss never shuts this host down).

Why the agent can know: it reads every attached UPS's status from upsd each pass (every
RESCAN_INTERVAL, 4 s by default, or SCAN_INTERVAL, 2 s, when it polls the bus), more
often than upsmon polls (POLLFREQ, 5 s), and
remembers the ones on battery in its state dir, so a crash or restart of the agent
does not forget them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from reconcile.model import ProcId, Served, Ups, UsbDevice

# What a hold is for: upsmon's DEADTIME rule fires for a lost UPS last seen OB; FSD means
# this host (and every secondary) is already shutting down. LB alone (on line) is neither.
ON_BATTERY = frozenset({"OB", "FSD"})


@dataclass(frozen=True)
class Seen:
    """A UPS last seen on battery, and who saw it."""

    name: str
    key: str  # Ups.key of the device
    device: UsbDevice
    twin: bool
    status: str
    upsmon: ProcId | None  # the upsmon running when it was seen
    upsd: ProcId | None

    @property
    def fsd(self) -> bool:
        return "FSD" in self.status.split()

    @property
    def on_battery(self) -> bool:
        return bool(ON_BATTERY & set(self.status.split()))


Memory = dict[str, Seen]  # by UPS name


def held(memory: Mapping[str, Seen], attached: set[str], upsmon: ProcId | None, upsd: ProcId | None) -> Memory:
    """The UPSes to keep watching although they are not on the bus (`attached`: keys)."""
    out: Memory = {}
    for name, seen in memory.items():
        if seen.key in attached or not seen.on_battery:  # (an older version recorded LB too)
            continue
        if (seen.upsmon is not None and seen.upsmon == upsmon) or (
            seen.fsd and seen.upsd is not None and seen.upsd == upsd
        ):
            out[name] = seen
    return out


def remember(
    memory: Mapping[str, Seen],
    attached: Mapping[str, Ups],
    names: Mapping[str, str],
    served: Mapping[str, Served] | None,
    upsmon: ProcId | None,
    upsd: ProcId | None,
    holding: Mapping[str, Seen],
) -> Memory:
    """The memory after this pass: attached UPSes that power this host and that upsd
    reports on battery (OB) or in FSD are (re)recorded,
    those it reports on line are forgotten, those it cannot read now are kept as they
    were; held UPSes stay; the rest (gone, not held) are forgotten."""
    out: Memory = dict(holding)
    for key, ups in attached.items():
        name = names[key]
        state = (served or {}).get(name)
        if state is not None and state.state == "ok":
            if state.flags & ON_BATTERY and ups.powers_host:
                out[name] = Seen(name, key, ups.usb, ups.twin, state.status or "", upsmon, upsd)
        elif name in memory and memory[name].key == key:
            out[name] = replace(memory[name], device=ups.usb)
    return out


def changes(before: Mapping[str, Seen], after: Mapping[str, Seen]) -> list[tuple[str, str]]:
    """(ups, what) for the log: on battery, back on line (or gone), status changes."""
    events = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is None and new is not None:
            events.append((name, f"on battery ({new.status})"))
        elif old is not None and new is None:
            events.append((name, "no longer on battery (on line, or gone while on line)"))
        elif old is not None and new is not None and old.status != new.status:
            events.append((name, f"status {new.status}"))
    return events
