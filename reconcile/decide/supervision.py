"""Supervision decisions for the run loop: which starts to hold back (backoff) and
which drivers to restart because upsd has been reporting their data stale."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from reconcile.decide import forced
from reconcile.decide.backoff import Backoff
from reconcile.decide.plan import drop
from reconcile.model import Plan, Served, start_key

# A driver whose UPS is attached but whose data upsd calls stale for this long is
# restarted: usbhid-ups can stay "Data stale" forever after a USB reset (NUT issues
# 2742, 2925). Longer than upsd's MAXAGE (15 s), so a slow poll is not punished.
STALE_RESTART_AFTER = 30.0
_STALE_STATES = {"DATA-STALE", "DRIVER-NOT-CONNECTED"}


@dataclass(frozen=True)
class Supervision:
    """What the run loop carries from one pass to the next. `apply` passes none: no
    backoff (it runs once) and no stale restarts (it has no history)."""

    backoff: Backoff = field(default_factory=Backoff)
    stale_since: Mapping[str, float] = field(default_factory=dict)  # the stale window, restarted at each restart
    stale_began: Mapping[str, float] = field(default_factory=dict)  # first seen stale, until fresh again
    stale_after: float | None = None  # None: never restart a driver for stale data
    now: float = 0.0
    # The forced shutdown (decide/forced.py). fsd_clear_after None: FSD is never called off
    # (apply runs once and has no clock). may_power_cycle False: no power cycle is sent
    # from this pass (apply: the running agent sent it, or decided not to, already).
    fsd_clear_after: float | None = None
    may_power_cycle: bool = False
    fsd: forced.Memory = field(default_factory=forced.Memory)

    @property
    def online_since(self) -> float | None:
        """While FSD is set: since when every UPS is on line without LB."""
        return self.fsd.online_since

    @property
    def power_cycled(self) -> frozenset[str]:
        """The UPSes the power cycle reached (or that refused it) in this FSD."""
        return self.fsd.power_cycled


def hold_back(plan: Plan, backoff: Backoff, now: float) -> tuple[Plan, list[str]]:
    """Drop the starts that are still in their backoff window, and the steps that need them."""
    held: list[str] = []
    indices = []
    for i, step in enumerate(plan.steps):
        key = start_key(step)
        if key is not None and not backoff.allowed(key, now):
            held.append(f"{key} (retry in {backoff.delay(key, now):.0f}s)")
            indices.append(i)
    return (drop(plan, indices) if indices else plan), held


def stale_drivers(
    served: Mapping[str, Served],
    since: Mapping[str, float],
    running: set[str],
    now: float,
    after: float = STALE_RESTART_AFTER,
) -> tuple[frozenset[str], dict[str, float]]:
    """(UPS names to restart, updated 'stale since' times).

    `served` is upsd's answer per UPS; only drivers that run (for a UPS on the bus) are
    considered: a driver that is not running is started anyway.
    """
    new_since: dict[str, float] = {}
    restart = set()
    for ups, state in served.items():
        if ups not in running or state.state not in _STALE_STATES:
            continue
        first = since.get(ups, now)
        if now - first >= after:
            restart.add(ups)  # the restart starts a fresh window
        else:
            new_since[ups] = first
    return frozenset(restart), new_since


def track_stale(
    served: Mapping[str, Served], began: Mapping[str, float], now: float
) -> tuple[dict[str, float], tuple[tuple[str, float], ...]]:
    """When each served UPS first went stale (kept across driver restarts), and the ones
    fresh again now with how long they were stale: (began, healed)."""
    new: dict[str, float] = {}
    healed: list[tuple[str, float]] = []
    for ups, state in sorted(served.items()):
        # Why only DATA-STALE begins one: "Driver not connected" alone is a driver not
        # started yet (a UPS just plugged, a placeholder) or one that died, not stale data;
        # during a stale episode it is the restart, which goes on counting.
        if state.state == "DATA-STALE" or (state.state in _STALE_STATES and ups in began):
            new[ups] = began.get(ups, now)
        elif state.state == "ok" and state.status == "WAIT" and ups in began:
            # Why WAIT goes on counting: upsd answers WAIT right after a restarted driver
            # connects, before its first data (nut-facts), so nothing is fresh yet; "fresh
            # again" said then would come with no charge or runtime to report.
            new[ups] = began[ups]
        elif state.state == "ok" and ups in began:
            healed.append((ups, now - began[ups]))
    return new, tuple(healed)


def after_pass(
    sup: Supervision,
    on_bus: Iterable[str],
    stopped: Iterable[str],
    started: Iterable[str],
    failed: Iterable[str],
    power_cycled: Iterable[str] = (),
    power_cycle_tried: Iterable[str] = (),
) -> Supervision:
    """The backoff after a pass (`on_bus`: the names of the UPSes attached or held;
    `stopped`: drivers the pass stopped; `started`/`failed`: the backoff keys of the
    starts that succeeded and failed), and the power cycles of this FSD: `power_cycled`,
    the UPSes this pass's reached (none is sent it twice), of `power_cycle_tried`, those
    it was sent to (the others are tried again, up to forced.POWER_CYCLE_TRIES times)."""
    memory = forced.sent(sup.fsd, power_cycled, power_cycle_tried)
    if memory is not sup.fsd:
        sup = replace(sup, fsd=memory)
    backoff = sup.backoff
    # A driver the agent stopped, or whose UPS has left the bus, did not die: its next
    # start (the UPS plugged back) is a first start, not a retry held back by backoff.
    keep = {f"driver:{ups}" for ups in on_bus}
    for key in [k for k in backoff.entries if k.startswith("driver:") and k not in keep]:
        backoff = backoff.forget(key)
    for ups in stopped:
        backoff = backoff.forget(f"driver:{ups}")
    for key in started:
        backoff = backoff.started(key, sup.now)
    # A start that failed is retried ever more slowly, like one that died at once: else
    # a device that never opens is tried at every tick, the lock held each time.
    for key in failed:
        backoff = backoff.failed(key, sup.now)
    return sup if backoff is sup.backoff else replace(sup, backoff=backoff)
