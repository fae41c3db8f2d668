"""Supervision decisions for the run loop: which starts to hold back (backoff) and
which drivers to restart because upsd has been reporting their data stale."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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
    stale_since: Mapping[str, float] = field(default_factory=dict)
    stale_after: float | None = None  # None: never restart a driver for stale data
    now: float = 0.0


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
