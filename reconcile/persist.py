"""What a pass keeps on disk: the agent's state files that changed, and status.json.

Each state file is written only when it changed (the state dir may sit on an SD card),
and kept in memory when it cannot be written (store.Store). Passwords first:
upsd.users must never hold one that is not kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from reconcile import events, logfmt, store
from reconcile.act.files import write_atomic
from reconcile.decide.decision import Decision, device_views
from reconcile.observe import nut_scanner


def save_state(st: store.Store, d: Decision) -> None:
    if d.secrets_to_keep != d.obs.stored_secrets:
        st.save(store.SECRETS, d.secrets_to_keep)
    if d.book != d.obs.book:
        st.save(store.NAMES, d.book)
    if d.memory != d.obs.memory:
        st.save(store.SEEN, d.memory)
    if d.owned.ledger != d.obs.ledger:
        st.save(store.PROCS, d.owned.ledger)
    # What an earlier pass could not write and this one did not change: written again now
    # (after the saves above, so a file that changed is not written twice in one pass).
    st.retry_unsaved((store.SECRETS, store.NAMES, store.SEEN, store.PROCS))
    if d.obs.scanner_ran:
        key = nut_scanner.cache_key({dev.vidpid for dev in d.obs.bus})
        try:
            write_atomic(st.agent_dir / store.SCANNER, nut_scanner.cache_text(key, d.obs.scanner), mode=0o600)
        except OSError as exc:
            logfmt.debug("nut-scanner.cache", error=str(exc))


def status_state(d: Decision) -> dict[str, Any]:
    """What the pass decided, not live readings (`status` shows those): so an unchanged
    state is not written again."""
    return {
        "devices": device_views(d),
        "held_back": list(d.held_back),
        "problems": [str(p) for p in d.problems] + list(d.plan.warnings) + list(d.plan.blocked),
    }


@dataclass
class StatusFile:
    """status.json, written when the pass carried something out or its state changed."""

    st: store.Store
    last_state: dict[str, Any] | None = None  # None: not read yet

    def save(self, d: Decision, outcome_ok: bool | None, errors: list[str], by: str) -> None:
        """`outcome_ok`: None when nothing was carried out (in sync)."""
        state = status_state(d)
        if self.last_state is None:
            last = self.st.load(store.STATUS) or {}
            self.last_state = last.get("state") if last.get("outcome") in ("in sync", "ok") else {}
        if outcome_ok is None and state == self.last_state:
            return  # nothing new: no write (SD card)
        result = "in sync" if outcome_ok is None else "ok" if outcome_ok else "errors"
        try:
            self.st.write(store.STATUS, store.status_record(by, result, errors, state))
            self.last_state = state if outcome_ok is not False else {}
        except OSError as exc:
            logfmt.debug("status.write", error=str(exc))


# The events `status` shows as a host's last event: what happened to a UPS or its power,
# not the steps carried out for it.
NOTABLE = frozenset(
    {
        "ups.plugged",
        "ups.unplugged",
        "ups.swapped",
        "ups.renamed",
        "ups.power",
        "ups.held",
        "ups.released",
        "ups.power_cycle",
        "power_cycle.skipped",
        "fsd.cleared",
        "fsd.kept",
        "driver.died",
        "driver.stale",
        "driver.healed",
        "upsmon.notice",
    }
)


@dataclass
class Recent:
    """recent.json, kept by an events consumer: the last notable event and the stale heals
    per UPS. Written only when one of those happens (never per pass: SD card); a write
    that fails is kept in memory by the Store and written with the next event."""

    st: store.Store
    value: dict[str, Any] | None = field(default=None)

    def consume(self, event: events.Event) -> None:
        kind = events.name_of(event)
        # (ups.no_power_cycle only when the power cycle was refused: the one at start is no news)
        if kind not in NOTABLE and not isinstance(event, events.PowerCycleRefused):
            return
        if self.value is None:
            self.value = self.st.load(store.RECENT) or {"last_event": None, "heals": {}}
        ups = getattr(event, "ups", None)
        if isinstance(event, events.UpsmonNotice):
            kind = f"upsmon.{event.type}"
        heals = dict(self.value["heals"])
        if isinstance(event, events.DriverHealed):
            heals[event.ups] = heals.get(event.ups, 0) + 1
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        # Why the UPS only when it is one name: fsd.cleared names several, comma-separated.
        one = ups if isinstance(ups, str) and "," not in ups and ups else None
        self.value = {"last_event": {"kind": kind, "ups": one, "at": at}, "heals": heals}
        self.st.save(store.RECENT, self.value)
