"""Restart with backoff: a daemon or driver that keeps dying is retried ever more slowly."""

from __future__ import annotations

from dataclasses import dataclass, field

BASE = 1.0
CAP = 60.0
HEALTHY_AFTER = 60.0  # a process that ran this long has its failure count forgotten


@dataclass(frozen=True)
class Backoff:
    # key (e.g. "driver:my-ups", "upsd") -> (failures, not before, last start)
    entries: dict[str, tuple[int, float, float]] = field(default_factory=dict)

    def allowed(self, key: str, now: float) -> bool:
        entry = self.entries.get(key)
        return entry is None or now >= entry[1]

    def started(self, key: str, now: float) -> Backoff:
        """Record a start; each start within HEALTHY_AFTER of the previous one counts as a failure."""
        failures, _, last = self.entries.get(key, (0, 0.0, -HEALTHY_AFTER))
        failures = failures + 1 if now - last < HEALTHY_AFTER else 0
        delay = 0.0 if failures == 0 else min(CAP, BASE * 2 ** (failures - 1))
        return Backoff({**self.entries, key: (failures, now + delay, now)})

    def failed(self, key: str, now: float) -> Backoff:
        """Record a start that failed (the program exited with an error, or never showed
        up): always a failure, so the tries are spaced 1, 2, 4 ... s up to CAP."""
        failures = self.entries.get(key, (0, 0.0, 0.0))[0] + 1
        return Backoff({**self.entries, key: (failures, now + min(CAP, BASE * 2 ** (failures - 1)), now)})

    def forget(self, key: str) -> Backoff:
        """The agent stopped it on purpose (its UPS was unplugged, or it is replaced): the
        next start is not a retry after a death, so it starts with a clean slate. Without
        this, a UPS unplugged and plugged back six times within a minute was served only
        after waits of 8, 16, 32 s (seen in the hotplug benchmark)."""
        if key not in self.entries:
            return self
        return Backoff({k: v for k, v in self.entries.items() if k != key})

    def delay(self, key: str, now: float) -> float:
        entry = self.entries.get(key)
        return 0.0 if entry is None else max(0.0, entry[1] - now)
