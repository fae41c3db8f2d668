"""What a notification says, and when (pure: no I/O, time passed in).

`notice_for` turns an event of the stream into a `Notice` (which one of NOTIFY_EVENTS it
is, about which UPS, how urgent), or None for events nobody is told about. `compose`
writes its message: what happened, to which UPS on which host, the UPS's charge and
runtime, and what happens next ("this host shuts down at low battery (LB)"). `Debounce`
decides when a notice goes out: a flapping device gives one message per window.

Why power notices are never held back: upsmon's ONBATT, LOWBATT, FSD, SHUTDOWN (and the
agent's held, power_cycle, fsd_cleared) come with a shutdown clock running; a person
must hear of them at once. upsmon debounces its own. The agent's bus and driver notices
(plugged, unplugged, swapped, healed, backoff) are what a bad cable repeats every few
seconds: the first goes out at once, what follows within the window is summed up in one
message at its end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from reconcile import events

# Held back and summed up while a device flaps (see above); every other notice is sent at once.
DEBOUNCED = frozenset({"plugged", "unplugged", "swapped", "healed", "backoff"})
# Apprise's notify types: info, success, warning, failure.
SEVERITY = {
    "ONBATT": "warning",
    "ONLINE": "success",
    "LOWBATT": "failure",
    "FSD": "failure",
    "COMMBAD": "warning",
    "COMMOK": "success",
    "SHUTDOWN": "failure",
    "REPLBATT": "warning",
    "NOCOMM": "failure",
    "plugged": "success",
    "unplugged": "warning",
    "swapped": "warning",
    "healed": "success",
    "backoff": "warning",
    "held": "failure",
    "released": "info",
    "fsd_cleared": "success",
    "power_cycle": "warning",
    "no_power_cycle": "failure",
    "fsd_kept": "failure",
}
WHAT = {
    "ONBATT": "on battery",
    "ONLINE": "back on mains",
    "LOWBATT": "battery low",
    "FSD": "forced shutdown",
    "COMMBAD": "communication lost",
    "COMMOK": "communication back",
    "SHUTDOWN": "shutting down",
    "REPLBATT": "replace the battery",
    "NOCOMM": "unavailable",
    "plugged": "plugged in",
    "unplugged": "unplugged",
    "swapped": "another UPS",
    "healed": "data fresh again",
    "backoff": "driver failing",
    "held": "gone while on battery",
    "released": "no longer watched",
    "fsd_cleared": "forced shutdown called off",
    "power_cycle": "power cycle",
    "no_power_cycle": "no power cycle",
    "fsd_kept": "forced shutdown stays",
}


@dataclass(frozen=True)
class Notice:
    name: str  # one of settings.UPSMON_NOTICES or AGENT_NOTICES
    ups: str | None  # None: about the host (upsmon's SHUTDOWN)
    detail: str = ""  # what the event adds (a driver's why, upsd's answer, seconds stale)
    seconds: int | None = None  # a duration the event carries (stale for, on line for)
    ok: bool = True  # power_cycle: whether the UPS took the command

    @property
    def debounced(self) -> bool:
        return self.name in DEBOUNCED


def notice_for(event: events.Event, backing_off: frozenset[str]) -> Notice | None:
    """The notice an event makes, or None. `backing_off`: the UPSes already reported as
    backing off (a held-back start is reported once per episode, not at every pass)."""
    if isinstance(event, events.UpsmonNotice):
        return Notice(event.type, event.ups or None, event.message)
    if isinstance(event, events.Plugged):
        return Notice("plugged", event.ups, event.model or event.vidpid)
    if isinstance(event, events.Unplugged):
        return Notice("unplugged", event.ups, f"port {event.port}")
    if isinstance(event, events.Swapped):
        return Notice("swapped", event.ups)
    if isinstance(event, events.DriverHealed):
        stale = event.stale_seconds
        return Notice("healed", event.ups, seconds=int(float(stale)) if _is_number(stale) else None)
    if isinstance(event, events.BackoffHold):
        ups = backoff_ups(event.target)
        return Notice("backoff", ups) if ups is not None and ups not in backing_off else None
    if isinstance(event, events.Held):
        return Notice("held", event.ups)
    if isinstance(event, events.Released):
        return Notice("released", event.ups, event.why)
    if isinstance(event, events.FsdCleared):
        return Notice("fsd_cleared", event.ups, seconds=event.on_line_seconds)
    if isinstance(event, events.PowerCycled):
        return Notice("power_cycle", event.ups, event.answer, seconds=event.off_delay, ok=event.ok)
    if isinstance(event, events.PowerCycleRefused):
        # (Only the refusal at the power cycle: a driver with no shutdown.return is told at start, in the log.)
        return Notice("no_power_cycle", event.ups, event.why, ok=False)
    if isinstance(event, events.FsdKept):
        return Notice("fsd_kept", event.ups, event.why)
    return None


def backoff_ups(target: str) -> str | None:
    """The UPS of a held-back driver start ("driver:my-ups (retry in 4s)" -> "my-ups"), else None."""
    key = target.split(" ", 1)[0]
    return key.removeprefix("driver:") or None if key.startswith("driver:") else None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- the message ---------------------------------------------------------------------


@dataclass(frozen=True)
class Readings:
    """What upsd served of the UPS (the latest known: a UPS just unplugged has none now)."""

    model: str | None = None
    charge: float | None = None  # percent
    runtime: float | None = None  # seconds
    status: str | None = None
    # The owner's thresholds in force ([[device]] rules): the driver's LB values while it
    # decides LB itself (driver.flag.ignorelb: low_battery_percent, low_runtime_seconds),
    # and upssched's timer (on_battery_max_seconds, read from upssched.conf).
    charge_low: float | None = None  # battery.charge.low, with ignorelb only
    runtime_low: float | None = None  # battery.runtime.low, with ignorelb only
    on_battery_max: int | None = None


@dataclass(frozen=True)
class Policy:
    """What decides what happens next: the agent's shutdown settings (config.toml)."""

    deadtime: int  # upsmon's DEADTIME: seconds a UPS on battery may be silent
    off_delay: int  # seconds between the power cycle and the UPS cutting its load (0: never)
    no_power_cycle: frozenset[str] = frozenset()  # UPSes that cannot be power-cycled


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    type: str  # Apprise's: info, success, warning, failure


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _cycle(ups: str | None, policy: Policy) -> str:
    if policy.off_delay <= 0 or (ups is not None and ups in policy.no_power_cycle):
        return "The UPS is not power-cycled: halted hosts stay off until someone powers them on."
    return (
        f"The UPS then cuts its load after {policy.off_delay} s and restores it when mains return, "
        "so the hosts boot again."
    )


def shuts_down(readings: Readings) -> str:
    """When this host shuts down while on battery: "at 50 % / after 300 s on battery", or
    "when the battery runs low (LB)" when the owner set no threshold."""
    parts = [
        *([f"at {readings.charge_low:g} %"] if readings.charge_low is not None else []),
        *([f"at {_minutes(readings.runtime_low)} of runtime left"] if readings.runtime_low is not None else []),
    ]
    if not parts:
        parts.append("when the battery runs low (LB)")
    if readings.on_battery_max is not None:
        parts.append(f"after {readings.on_battery_max} s on battery")
    return " / ".join(parts) + (", whichever comes first" if len(parts) > 1 else "")


def next_step(notice: Notice, policy: Policy, readings: Readings) -> str:
    """What happens next, in one or two sentences."""
    n, ups = notice.name, notice.ups
    runtime = f" About {_minutes(readings.runtime)} of runtime left." if readings.runtime is not None else ""
    texts = {
        "ONBATT": f"This host shuts down {shuts_down(readings)}." + runtime,
        "ONLINE": "Nothing to do: the shutdown is off.",
        "LOWBATT": "The hosts on this UPS shut down now (FSD). " + _cycle(ups, policy),
        "FSD": "This host halts now. " + _cycle(ups, policy),
        "COMMBAD": f"If the UPS is on battery and stays silent for {policy.deadtime} s (DEADTIME), "
        "this host shuts down.",
        "COMMOK": "Nothing to do.",
        "SHUTDOWN": "upsmon runs the shutdown command now.",
        "REPLBATT": "Replace the battery: it may not carry the load through an outage.",
        "NOCOMM": "While it is unavailable, nothing shuts this host down on a power failure: check its cable.",
        "plugged": "Nothing to do: it is served and watched.",
        "unplugged": "Its driver is stopped; it is served again when it comes back.",
        "swapped": "Check that this is the UPS you meant: the name now serves another device.",
        "healed": "Nothing to do: its driver was restarted.",
        "backoff": "Its driver keeps failing to start; it is retried with a growing pause. Check the USB cable.",
        "held": f"It stays watched: unless it returns within {policy.deadtime} s (DEADTIME), this host shuts down.",
        "released": "Nothing to do.",
        "fsd_cleared": "This host keeps running.",
        "power_cycle": (
            f"The UPS cuts its load in {notice.seconds} s and restores it when mains return."
            if notice.ok
            else "The UPS refused: halted hosts stay off until someone powers them on."
        ),
        "no_power_cycle": "Nothing was sent to the UPS: halted hosts stay off until someone powers them on.",
        "fsd_kept": "upsmon stays stopped while the UPS reports FSD: this host is not protected. Check the UPS.",
    }
    return texts.get(n, "")


def compose(notice: Notice, host: str, readings: Readings, policy: Policy) -> Message:
    """The message for one notice."""
    what = WHAT.get(notice.name, notice.name)
    title = f"[{host}] {notice.ups}: {what}" if notice.ups else f"[{host}] {what}"
    lines = []
    model = f" ({readings.model})" if readings.model else ""
    if notice.ups:
        lines.append(f"UPS {notice.ups}{model} on {host}: {what}.")
    else:
        lines.append(f"{host}: {what}.")
    if notice.name == "healed" and notice.seconds is not None:
        lines.append(f"It was stale for {notice.seconds} s.")
    elif notice.name == "fsd_cleared" and notice.seconds is not None:
        lines.append(f"Every UPS has been on mains without low battery for {notice.seconds} s.")
    elif notice.name == "power_cycle" and not notice.ok and notice.detail:
        lines.append(f"upsd answered: {notice.detail}.")
    elif notice.name in ("no_power_cycle", "fsd_kept") and notice.detail:
        lines.append(f"Why: {notice.detail}.")
    elif notice.name in ("plugged",) and notice.detail:
        lines.append(f"Device: {notice.detail}.")
    elif notice.name in ("unplugged",) and notice.detail:
        lines.append(f"It left {notice.detail}.")
    state = [
        *([f"charge {readings.charge:g} %"] if readings.charge is not None else []),
        *([f"runtime {_minutes(readings.runtime)}"] if readings.runtime is not None else []),
        *([f"status {readings.status}"] if readings.status else []),
    ]
    if state and notice.ups:
        lines.append("Now: " + ", ".join(state) + ".")
    step = next_step(notice, policy, readings)
    if step:
        lines.append("Next: " + step)
    return Message(title, "\n".join(lines), SEVERITY.get(notice.name, "info"))


def summary(held: tuple[Notice, ...], window: float) -> Notice:
    """One notice for what a window held back: the last one, with the count of the rest."""
    last = held[-1]
    counts = Counter(n.name for n in held)
    told = ", ".join(f"{WHAT.get(name, name)} x{count}" for name, count in sorted(counts.items()))
    return replace(last, detail=f"{last.detail} (in the last {window:g} s: {told})".strip())


# --- when -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Debounce:
    """Per UPS: when its window ends, and the notices held back in it.

    A debounced notice in a quiet time goes out at once and opens a window of `window`
    seconds; those that follow in it are held, and at its end (`due`) go out as one
    summary, which opens the next window. So a flapping device gives at most one
    message per window, and the first news is never late."""

    window: float
    ends: Mapping[str, float] = field(default_factory=dict)
    held: Mapping[str, tuple[Notice, ...]] = field(default_factory=dict)

    def offer(self, notice: Notice, now: float) -> tuple[Debounce, tuple[Notice, ...]]:
        """(the new state, what to send now)."""
        if not notice.debounced or self.window <= 0:
            return self, (notice,)
        key = notice.ups or ""
        if now >= self.ends.get(key, 0.0):
            return replace(self, ends={**self.ends, key: now + self.window}), (notice,)
        return replace(self, held={**self.held, key: (*self.held.get(key, ()), notice)}), ()

    def due(self, now: float) -> tuple[Debounce, tuple[Notice, ...]]:
        """What the windows over by `now` send (one summary each), and the new state."""
        out: list[Notice] = []
        ends, held = dict(self.ends), dict(self.held)
        for key, end in self.ends.items():
            if now < end:
                continue
            waiting = held.pop(key, ())
            if waiting:
                out.append(waiting[0] if len(waiting) == 1 else summary(waiting, self.window))
                ends[key] = now + self.window
            else:
                del ends[key]
        return replace(self, ends=ends, held=held), tuple(out)

    def next_due(self) -> float | None:
        """When `due` has something to send next (monotonic), or None."""
        waiting = [self.ends[k] for k in self.held if k in self.ends]
        return min(waiting) if waiting else None
