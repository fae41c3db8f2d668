from __future__ import annotations

from reconcile.decide.backoff import Backoff
from reconcile.decide.settle import Settle
from reconcile.decide.supervision import hold_back, stale_drivers
from reconcile.model import Plan, ProcId, ReloadUpsd, Served, StartDriver, StartUpsd, StartUpsmon, UsbDevice, WriteFile

D1 = (UsbDevice("1-1", "051d", "0002", 1, 2),)
D2 = (UsbDevice("1-1", "051d", "0002", 1, 3),)  # the same port re-enumerated


def test_first_scan_settles_at_once() -> None:
    assert Settle().observe(D1, 0.0, 2.0).settled == D1


def test_a_change_settles_only_after_it_stays_for_the_settle_time() -> None:
    s = Settle().observe((), 0.0, 2.0)
    s = s.observe(D1, 10.0, 2.0)
    assert s.settled == () and s.deadline(2.0) == 12.0
    s = s.observe(D1, 11.0, 2.0)
    assert s.settled == ()
    s = s.observe(D1, 12.0, 2.0)
    assert s.settled == D1 and s.pending is None


def test_flapping_restarts_the_settle_window() -> None:
    s = Settle().observe((), 0.0, 2.0).observe(D1, 10.0, 2.0).observe((), 11.0, 2.0)
    assert s.settled == () and s.pending is None  # back to what was settled: nothing pending
    s = s.observe(D1, 11.5, 2.0).observe(D2, 12.5, 2.0)
    assert s.pending == D2 and s.since == 12.5


def test_a_known_appearance_time_shortens_the_wait() -> None:
    s = Settle().observe((), 0.0, 2.0).observe(D1, 10.0, 2.0, changed_at=7.5)
    assert s.settled == D1  # present and unchanged since 7.5: 2.5 s already
    s2 = Settle().observe((), 0.0, 2.0).observe(D1, 10.0, 2.0, changed_at=9.0)
    assert s2.settled == () and s2.deadline(2.0) == 11.0


def test_backoff_grows_and_caps_and_forgets_after_healthy_run() -> None:
    b = Backoff().started("driver:x", 0.0)
    assert b.allowed("driver:x", 0.0) and b.delay("driver:x", 0.0) == 0.0
    delays = []
    now = 0.0
    for _ in range(9):  # dies at once every time: each restart waits longer
        now = max(now + 1, b.entries["driver:x"][1])
        assert b.allowed("driver:x", now)
        b = b.started("driver:x", now)
        delays.append(b.delay("driver:x", now))
        assert not b.allowed("driver:x", now + delays[-1] - 0.5)
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0] and max(delays) == 60.0
    b = b.started("driver:x", now + 61)
    assert b.delay("driver:x", now + 61) == 0.0


def test_hold_back_drops_starts_in_their_window_and_what_needs_them() -> None:
    plan = Plan(
        steps=(
            WriteFile(name="ups.conf", content="x", old=None, reason="create"),
            StartDriver(ups="a", driver="d", loaded=(), reason="new", needs=frozenset({0})),
            StartDriver(ups="b", driver="d", loaded=(), reason="new", needs=frozenset({0})),
            ReloadUpsd(proc=ProcId(5, 1), loaded=(), reason="r", needs=frozenset({0})),
            StartUpsd(loaded=(), reason="not running"),
            StartUpsmon(loaded=(), reason="not running", needs=frozenset({4})),
        )
    )
    b = Backoff({"driver:a": (3, 100.0, 90.0), "upsd": (1, 101.0, 99.0)})
    held_plan, held = hold_back(plan, b, 95.0)
    assert [getattr(s, "ups", s.kind) for s in held_plan.steps] == ["write", "b", "reload_upsd"]
    assert [sorted(s.needs) for s in held_plan.steps] == [[], [0], [0]]
    assert held == ["driver:a (retry in 5s)", "upsd (retry in 6s)"]
    assert hold_back(plan, b, 101.0)[0] == plan


def test_stale_drivers_are_restarted_only_after_the_threshold_and_only_if_running() -> None:
    stale, ok = Served("DATA-STALE", None), Served("ok", "OL")
    fresh = {"a": stale, "b": ok, "c": stale}
    restart, since = stale_drivers(fresh, {}, {"a", "b"}, 100.0, 30.0)
    assert restart == frozenset() and since == {"a": 100.0}
    restart, since = stale_drivers(fresh, since, {"a", "b"}, 131.0, 30.0)
    assert restart == {"a"} and since == {}
    _, since = stale_drivers({"a": ok}, {"a": 100.0}, {"a"}, 120.0, 30.0)
    assert since == {}


def test_a_stop_on_purpose_forgets_the_failures_so_a_replug_starts_at_once() -> None:
    b = Backoff()
    for i in range(6):  # a UPS plugged back every 5 s, its driver started each time
        b = b.started("driver:a", i * 5.0)
    assert not b.allowed("driver:a", 26.0)  # counted as a crash loop
    b = b.started("driver:b", 0.0).forget("driver:a")
    assert b.allowed("driver:a", 26.0) and b.delay("driver:a", 26.0) == 0.0
    assert b.started("driver:a", 26.0).allowed("driver:a", 26.0)  # the next start is a first start
    assert b.entries.keys() == {"driver:b"} and b.forget("driver:x") is b
