"""The run loop's timed jobs, driven by the `schedule` package.

Two kinds, both `schedule` jobs of one private Scheduler:
- periodic jobs (`every`): the level-triggered pass every RESCAN_INTERVAL (or SCAN_INTERVAL
  when polling), the simulator's clock (decide/wake.py lists them, as plain data);
- one-shots (`once`): a pass at a moment the last pass computed (the settle deadline, the
  time a forced shutdown may be called off) or asked for by a uevent. A one-shot cancels
  itself after it ran.

The loop sleeps for `idle()` seconds (on the uevent socket and the signal pipe,
wakeups.py), then calls `run_pending()`. `run_now(name)` runs a periodic job at once and
restarts its period, so a pass that a uevent brought forward is not followed by a second
one a moment later.

Why a guard around the clock: `schedule` times its jobs by the wall clock
(`datetime.now()`, local time). A Pi has no real-time clock: at boot it runs on the time
it last saved, then NTP sets it, often hours later; a DST change moves local time by an
hour. A jump back would make every job late by that much, and "late" here means a UPS that
is not watched. So each turn compares the wall clock with the monotonic one and, when they
disagree (decide/wake.py: clock_jump), moves every job's next run by the jump: no job runs
early or late because the clock was set.
"""

from __future__ import annotations

import datetime
import time
import traceback
from collections.abc import Callable
from typing import cast

import schedule

from reconcile import logfmt
from reconcile.decide import wake

MIN_DELAY = 0.001  # seconds: the soonest a one-shot runs ("at the next turn")
Wall = Callable[[], datetime.datetime]
Mono = Callable[[], float]


def _wall() -> datetime.datetime:
    # The clock `schedule` itself reads: naive local time.
    return datetime.datetime.now()


def _survive(name: str, job: Callable[[], object]) -> Callable[[], None]:
    """`job`, made to survive one bad run. Why here: a job that raises out of `schedule`
    is never rescheduled (its next run stays in the past) and would run again at every
    turn of the loop, the loop spinning on it."""

    def run() -> None:
        try:
            job()
        except Exception as exc:  # noqa: BLE001 - the loop must survive one bad job
            logfmt.error("job.failed", job=name, error=f"{type(exc).__name__}: {exc}")
            logfmt.debug("job.traceback", trace=traceback.format_exc())

    return run


class Timers:
    def __init__(self, wall: Wall = _wall, mono: Mono = time.monotonic) -> None:
        self._scheduler = schedule.Scheduler()
        self._jobs: dict[str, schedule.Job] = {}
        self._wall, self._mono = wall, mono
        self._offset = self._clock_offset()

    def _clock_offset(self) -> float:
        """Wall clock minus monotonic clock, in seconds: constant until someone sets the clock."""
        return (self._wall() - datetime.datetime(1970, 1, 1)).total_seconds() - self._mono()

    def every(self, name: str, seconds: float, job: Callable[[], object]) -> None:
        """(Re)install periodic job `name`; its first run is `seconds` from now."""
        self.cancel(name)
        # schedule's hint says int; it builds a timedelta of the value, so fractions of a
        # second work (1.1 as Debian 12 ships it, and 1.2).
        self._jobs[name] = self._scheduler.every(cast(int, seconds)).seconds.do(_survive(name, job))

    def once(self, name: str, delay: float, job: Callable[[], object]) -> None:
        """(Re)install one-shot `name`, `delay` seconds from now (0: at the next turn)."""
        self.cancel(name)
        installed: list[schedule.Job] = []

        def run_once() -> type[schedule.CancelJob]:
            if self._jobs.get(name) is installed[0]:  # not when `job` installed a new one
                del self._jobs[name]
            _survive(name, job)()
            return schedule.CancelJob  # run_pending removes it

        # Why never 0: schedule 1.2 steps a job's next run forward by its period until it
        # lies in the future, which for a period of 0 never ends.
        delay = max(MIN_DELAY, delay)
        installed.append(self._scheduler.every(cast(int, delay)).seconds.do(run_once))
        self._jobs[name] = installed[0]

    def cancel(self, name: str) -> None:
        job = self._jobs.pop(name, None)
        if job is not None:
            self._scheduler.cancel_job(job)

    def pending(self, name: str) -> float | None:
        """Seconds until job `name` runs (≤ 0: due), or None when there is none."""
        job = self._jobs.get(name)
        if job is None or job.next_run is None:
            return None
        return (job.next_run - self._wall()).total_seconds()

    def run_now(self, name: str) -> None:
        """Run periodic job `name` now; its period starts again from here."""
        job = self._jobs.get(name)
        if job is not None:
            job.run()  # type: ignore[no-untyped-call]  # schedule's Job.run has no annotations

    def idle(self) -> float:
        """Seconds the loop may sleep before a job is due (0: one is due now)."""
        self._heal_clock()
        idle = self._scheduler.idle_seconds
        return wake.FOREVER if idle is None else max(0.0, idle)

    def run_pending(self) -> None:
        """Run every job that is due, each at most once."""
        self._heal_clock()
        for job in sorted(j for j in self._scheduler.jobs if j.should_run):
            # Why look again before each: a job run just before may have served this one
            # (a one-shot pass restarts the periodic pass's period) or cancelled it.
            # Scheduler.run_pending would run it all the same: two passes back to back.
            if job not in self._scheduler.jobs or not job.should_run:
                continue
            if job.run() is schedule.CancelJob:  # type: ignore[no-untyped-call]
                self._scheduler.cancel_job(job)

    def _heal_clock(self) -> None:
        offset = self._clock_offset()
        jump = wake.clock_jump(self._offset, offset)
        self._offset = offset
        if jump == 0.0:
            return
        logfmt.info("clock.jump", seconds=round(jump, 3), then="the timed jobs keep their monotonic times")
        shift = datetime.timedelta(seconds=jump)
        for job in self._scheduler.jobs:
            if job.next_run is not None:
                job.next_run += shift
            if job.last_run is not None:
                job.last_run += shift
