"""Act on the bus only once it has settled.

A USB device that is being plugged, reset or wiggled shows up and vanishes several
times within a second; acting on each would restart drivers for nothing.

A change has settled when either
- it has stayed for SETTLE_TIME (since it began: a new device's sysfs time, if known), or
- with `settle_min` (the agent hears uevents, so it rescans right after each one): two
  scans at least SETTLE_MIN apart read the same devices with the same descriptors, and
  the last settled change is at least SETTLE_TIME ago.
The second rule ends the wait early for a clean plug; its SETTLE_TIME clause keeps the
flapping guarantee: at most one settled change, so one config change, per SETTLE_TIME.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconcile.model import UsbDevice

Bus = tuple[UsbDevice, ...]


@dataclass(frozen=True)
class Settle:
    settled: Bus | None = None  # what we act on; None before the first settled scan
    pending: Bus | None = None  # the latest scan, if it differs from settled
    since: float = 0.0  # when pending began
    seen: float = 0.0  # when a scan first read pending as it is (monotonic)
    changed: float = float("-inf")  # when settled last changed

    def observe(
        self,
        bus: Bus,
        now: float,
        settle_time: float,
        changed_at: float | None = None,
        settle_min: float | None = None,
    ) -> Settle:
        """Feed one scan. The first scan settles at once: there is nothing to debounce.

        changed_at: when the change happened, if the caller knows (a new device's sysfs
        timestamp), already clamped to after the previous scan; default now.
        settle_min: allow the early settle (see the module's doc); None: SETTLE_TIME only.
        """
        if self.settled is None:
            return Settle(settled=bus, changed=now)
        if bus == self.settled:
            return Settle(settled=bus, changed=self.changed)
        if bus != self.pending:
            since = now if changed_at is None else min(now, changed_at)
            self = Settle(settled=self.settled, pending=bus, since=since, seen=now, changed=self.changed)
        if now - self.since >= settle_time:
            return Settle(settled=bus, changed=now)
        if settle_min is not None and now - self.seen >= settle_min and now - self.changed >= settle_time:
            return Settle(settled=bus, changed=now)
        return self

    def deadline(self, settle_time: float, settle_min: float | None = None) -> float | None:
        """When the pending bus may have settled (a scan then decides), if something is pending."""
        if self.pending is None:
            return None
        full = self.since + settle_time
        if settle_min is None:
            return full
        return min(full, max(self.seen + settle_min, self.changed + settle_time))
