"""When the run loop works: pure timing rules, time passed in. reconcile/timers.py hands
them to the `schedule` package, which runs the jobs.

Periodic jobs (`jobs`):
- the pass, every RESCAN_INTERVAL while the kernel's uevents are heard (they announce every
  USB change, so the pass is only for what nothing announces: a dead driver, stale data, a
  changed file, a lost uevent), or every SCAN_INTERVAL when polling;
- with SIMULATE, the simulator's clock, every SIMULATE_STEP: the simulated UPS changes
  between passes as a real one does, and a simulated plug or unplug brings the pass
  forward as a uevent would.
One-shot passes (`one_shots`, `nudge_delay`), each bringing the pass forward:
- a nudge: a uevent of our subsystem, or an overflow of the socket (some were lost, so
  look now). It runs at once, but no sooner than MIN_GAP after the last pass: one plug
  sends several messages within a few milliseconds (the device, each interface, each
  driver bound), and one pass reads them all;
- the settle deadline (decide/settle.py): a pending bus change is acted on the moment it
  has settled;
- the moment a forced shutdown may be called off (decide/forced.py: every UPS on line for
  fsd_clear_after).
A one-shot only ever makes the pass earlier; the periodic pass is never late for it.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_GAP = 0.1  # seconds between a pass and a nudged one
SIMULATE_STEP = 1.0  # seconds between two steps of the simulator's clock
CLOCK_JUMP = 1.0  # wall and monotonic clocks apart by more than this: the clock was set
FOREVER = 3600.0  # the longest sleep when no job is installed (never while the loop runs)

PASS, SIMULATE = "pass", "simulate"  # the periodic jobs
NUDGE, SETTLE, FSD_CLEAR = "nudge", "settle", "fsd-clear"  # the one-shot passes


@dataclass(frozen=True)
class Job:
    name: str
    every: float  # seconds


def interval(listening: bool, scan_interval: float, rescan_interval: float) -> float:
    return rescan_interval if listening else scan_interval


def jobs(pass_interval: float, simulate: bool) -> tuple[Job, ...]:
    """The periodic jobs of the run loop."""
    return (Job(PASS, pass_interval), *((Job(SIMULATE, SIMULATE_STEP),) if simulate else ()))


def nudge_delay(now: float, last_pass: float | None) -> float:
    """Seconds from `now` until a pass asked for by a uevent may run."""
    return 0.0 if last_pass is None else max(0.0, last_pass + MIN_GAP - now)


def one_shots(now: float, settle_deadline: float | None, fsd_clear_at: float | None) -> dict[str, float | None]:
    """After a pass: the one-shot passes it asks for, as seconds from `now` (None: none)."""
    return {
        SETTLE: None if settle_deadline is None else max(0.0, settle_deadline - now),
        FSD_CLEAR: None if fsd_clear_at is None else max(0.0, fsd_clear_at - now),
    }


def clock_jump(offset_before: float, offset_now: float) -> float:
    """By how many seconds the wall clock was set (0: not), from two readings of wall
    clock minus monotonic clock. A small drift (NTP slewing, rounding) is no jump."""
    jump = offset_now - offset_before
    return jump if abs(jump) > CLOCK_JUMP else 0.0


def too_slow(pass_interval: float, pollfreq: float) -> bool:
    """A pass interval at or above upsmon's POLLFREQ: the agent may not see a UPS go on
    battery before it vanishes, and would then let it go instead of holding it
    (decide/power.py). Allowed (the owner may trade that for less CPU), but said at start."""
    return pass_interval >= pollfreq
