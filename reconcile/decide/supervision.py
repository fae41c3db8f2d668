"""Supervision decisions for the run loop: which starts to hold back (backoff) and
which drivers to restart because upsd has been reporting their data stale."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from reconcile.decide.backoff import Backoff
from reconcile.model import Action, Plan

# A driver whose UPS is attached but whose data upsd calls stale for this long is
# restarted: usbhid-ups can stay "Data stale" forever after a USB reset (NUT issues
# 2742, 2925). Longer than upsd's MAXAGE (15 s), so a slow poll is not punished.
STALE_RESTART_AFTER = 30.0
_STALE_STATES = {"DATA-STALE", "DRIVER-NOT-CONNECTED"}


def backoff_key(action: Action) -> str | None:
    if action.kind == "start_driver":
        return f"driver:{action.ups}"
    if action.kind in ("start_upsd", "start_upsmon"):
        return action.kind.split("_", 1)[1]
    return None


def hold_back(plan: Plan, backoff: Backoff, now: float) -> tuple[Plan, list[str]]:
    """Drop the starts that are still in their backoff window (and their stop twin)."""
    held: list[str] = []
    steps = []
    for step in plan.steps:
        key = backoff_key(step) if isinstance(step, Action) else None
        if key is not None and not backoff.allowed(key, now):
            held.append(f"{key} (retry in {backoff.delay(key, now):.0f}s)")
            continue
        steps.append(step)
    return dataclasses.replace(plan, steps=tuple(steps)), held


def stale_drivers(
    freshness: Mapping[str, str],
    since: Mapping[str, float],
    running: set[str],
    now: float,
    after: float = STALE_RESTART_AFTER,
) -> tuple[frozenset[str], dict[str, float]]:
    """(UPS names to restart, updated 'stale since' times).

    `freshness` is upsd's answer per UPS ("ok" or NUT's error); only drivers that run
    are considered: a driver that is not running is started anyway.
    """
    new_since: dict[str, float] = {}
    restart = set()
    for ups, state in freshness.items():
        if ups not in running or state not in _STALE_STATES:
            continue
        first = since.get(ups, now)
        if now - first >= after:
            restart.add(ups)  # the restart starts a fresh window
        else:
            new_since[ups] = first
    return frozenset(restart), new_since
