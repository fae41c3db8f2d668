"""Act on the bus only once it has been stable for SETTLE_TIME.

A USB device that is being plugged, reset or wiggled shows up and vanishes several
times within a second; acting on each would restart drivers for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconcile.model import UsbDevice

Bus = tuple[UsbDevice, ...]


@dataclass(frozen=True)
class Settle:
    settled: Bus | None = None  # what we act on; None before the first settled scan
    pending: Bus | None = None  # the latest scan, if it differs from settled
    since: float = 0.0  # when pending was first seen

    def observe(self, bus: Bus, now: float, settle_time: float, changed_at: float | None = None) -> Settle:
        """Feed one scan. The first scan settles at once: there is nothing to debounce.

        changed_at: when the change happened, if the caller knows (a new device's sysfs
        timestamp), already clamped to after the previous scan; default now.
        """
        if self.settled is None:
            return Settle(settled=bus)
        if bus == self.settled:
            return Settle(settled=bus)
        if bus != self.pending:
            since = now if changed_at is None else min(now, changed_at)
            self = Settle(settled=self.settled, pending=bus, since=since)
        if now - self.since >= settle_time:
            return Settle(settled=bus)
        return self

    def deadline(self, settle_time: float) -> float | None:
        """When the pending bus will have settled, if something is pending."""
        return None if self.pending is None else self.since + settle_time
