"""When the run loop's next pass is due: pure, time passed in.

Two kinds of wake-up:
- the periodic pass, every RESCAN_INTERVAL while the kernel's uevents are heard (they
  announce every USB change, so the pass is only for what nothing announces: a dead
  driver, stale data, a changed file), or every SCAN_INTERVAL when polling;
- a nudge: a uevent of our subsystem, or an overflow of the socket (some were lost, so
  look now). A nudged pass runs at once, but no sooner than MIN_GAP after the last one:
  one plug sends several messages within a few milliseconds (the device, each interface,
  each driver bound), and one pass reads them all.
The settle deadline (decide/settle.py) also wakes the loop: a pending change is acted on
the moment it has settled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MIN_GAP = 0.1  # seconds between two nudged passes


@dataclass(frozen=True)
class Timer:
    interval: float  # between periodic passes
    last: float | None = None  # when the last pass began (monotonic); None: never
    nudged: float | None = None  # when a uevent first asked for a pass since then

    def due(self, settle_deadline: float | None = None) -> float:
        """When the next pass should begin (monotonic; in the past means now)."""
        if self.last is None:
            return float("-inf")
        due = self.last + self.interval
        if self.nudged is not None:
            due = min(due, max(self.nudged, self.last + MIN_GAP))
        if settle_deadline is not None:
            due = min(due, settle_deadline)
        return due

    def nudge(self, now: float) -> Timer:
        return self if self.nudged is not None else replace(self, nudged=now)

    def passed(self, began: float) -> Timer:
        """A pass began at `began`: what was asked for until then is served by it."""
        return replace(self, last=began, nudged=None)


def interval(listening: bool, scan_interval: float, rescan_interval: float) -> float:
    return rescan_interval if listening else scan_interval


def too_slow(pass_interval: float, pollfreq: float) -> bool:
    """A pass interval at or above upsmon's POLLFREQ: the agent may not see a UPS go on
    battery before it vanishes, and would then let it go instead of holding it
    (decide/power.py). Allowed (the owner may trade that for less CPU), but said at start."""
    return pass_interval >= pollfreq
