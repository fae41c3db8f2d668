"""The run loop's timed jobs on the `schedule` package (reconcile/timers.py), on a clock
the test sets: no sleeps. `schedule` reads the wall clock through its module's
`datetime`; the test gives it one that reads the same fake clock as the Timers."""

from __future__ import annotations

import datetime
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import schedule

from reconcile import logfmt
from reconcile.timers import Timers

EPOCH = datetime.datetime(2026, 12, 7, 12, 0, 0)


@dataclass
class Clock:
    mono: float = 1000.0
    wall_offset: float = 0.0  # what someone set the wall clock by
    runs: list[tuple[str, float]] = field(default_factory=list)

    def wall(self) -> datetime.datetime:
        return EPOCH + datetime.timedelta(seconds=self.mono - 1000.0 + self.wall_offset)

    def monotonic(self) -> float:
        return self.mono

    def job(self, name: str) -> Callable[[], None]:
        def run() -> None:
            self.runs.append((name, self.mono))

        return run


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    c = Clock()

    class FakeDatetime(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> FakeDatetime:
            w = c.wall()
            return cls(w.year, w.month, w.day, w.hour, w.minute, w.second, w.microsecond)

    fake = types.SimpleNamespace(**{k: getattr(datetime, k) for k in dir(datetime) if not k.startswith("__")})
    fake.datetime = FakeDatetime
    monkeypatch.setattr(schedule, "datetime", fake)
    yield c


def turn(t: Timers, c: Clock, until: float) -> None:
    """What the loop does: sleep idle() (here: move the clock), run what is due."""
    while True:
        t.run_pending()
        idle = t.idle()
        if c.mono + idle > until:
            c.mono = until
            t.run_pending()
            return
        c.mono += idle


def test_a_periodic_job_runs_every_interval(clock: Clock) -> None:
    t = Timers(clock.wall, clock.monotonic)
    t.every("pass", 4.0, clock.job("pass"))
    assert t.idle() == pytest.approx(4.0)
    turn(t, clock, 1012.5)
    assert [at for _, at in clock.runs] == pytest.approx([1004.0, 1008.0, 1012.0])


def test_run_now_restarts_the_period_and_a_one_shot_runs_once(clock: Clock) -> None:
    t = Timers(clock.wall, clock.monotonic)
    t.every("pass", 4.0, clock.job("pass"))
    clock.mono = 1001.0
    t.run_now("pass")  # a nudged pass at 1001: the next periodic one at 1005, not 1004
    t.once("settle", 0.5, clock.job("settle"))
    assert t.pending("settle") == pytest.approx(0.5)
    turn(t, clock, 1005.5)
    assert clock.runs == [("pass", 1001.0), ("settle", 1001.5), ("pass", 1005.0)]
    assert t.pending("settle") is None


@pytest.mark.parametrize("nudge_first", [True, False])
def test_a_pass_due_twice_at_one_moment_runs_once(clock: Clock, nudge_first: bool) -> None:
    """A nudge and the periodic pass due together: one pass, not two back to back, in
    either order (the Runner's pass cancels the nudge it serves; a nudge restarts the
    period of the pass)."""
    t = Timers(clock.wall, clock.monotonic)

    def a_pass() -> None:
        clock.runs.append(("pass", clock.mono))
        t.cancel("nudge")

    install: list[Callable[[], None]] = [
        lambda: t.every("pass", 4.0, a_pass),
        lambda: t.once("nudge", 4.0, lambda: t.run_now("pass")),
    ]
    for step in reversed(install) if nudge_first else install:  # ties run in the order installed
        step()
    turn(t, clock, 1004.0)
    assert [name for name, _ in clock.runs] == ["pass"]


def test_a_one_shot_due_at_once_runs_at_the_next_turn(clock: Clock) -> None:
    t = Timers(clock.wall, clock.monotonic)
    t.every("pass", 4.0, clock.job("pass"))
    t.once("nudge", 0.0, clock.job("nudge"))  # schedule itself would loop for ever on a period of 0
    assert t.idle() == pytest.approx(0.0, abs=0.01)
    turn(t, clock, 1000.5)
    assert [name for name, _ in clock.runs] == ["nudge"]


def test_a_clock_set_back_makes_no_job_late_and_set_forward_none_early(clock: Clock) -> None:
    t = Timers(clock.wall, clock.monotonic)
    t.every("pass", 4.0, clock.job("pass"))
    clock.mono, clock.wall_offset = 1002.0, -3600.0  # NTP sets the clock back an hour
    assert t.idle() == pytest.approx(2.0)  # not 3602
    clock.wall_offset = 86400.0 - 3600.0  # then a day forward
    assert t.idle() == pytest.approx(2.0)  # not overdue
    turn(t, clock, 1008.0)
    assert [at for _, at in clock.runs] == pytest.approx([1004.0, 1008.0])


def test_a_job_that_raises_is_logged_and_runs_again_at_its_time(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    logfmt.setup(False, None)
    t = Timers(clock.wall, clock.monotonic)

    def bad() -> None:
        clock.runs.append(("bad", clock.mono))
        raise RuntimeError("boom")

    t.every("bad", 2.0, bad)
    turn(t, clock, 1004.0)
    assert [at for _, at in clock.runs] == pytest.approx([1002.0, 1004.0])  # rescheduled, not spinning
    assert 'event=job.failed job=bad error="RuntimeError: boom"' in capsys.readouterr().out
