from __future__ import annotations

from reconcile.decide.backoff import Backoff
from reconcile.decide.settle import Settle
from reconcile.decide.supervision import hold_back, stale_drivers
from reconcile.model import Action, Plan, UsbDevice, WriteFile

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


def test_hold_back_drops_starts_in_their_window_only() -> None:
    plan = Plan(
        steps=(
            WriteFile("ups.conf", "x", None, "create"),
            Action("start_driver", "new", ups="a", driver="d"),
            Action("start_driver", "new", ups="b", driver="d"),
            Action("reload_upsd", "r", pid=5),
        )
    )
    b = Backoff({"driver:a": (3, 100.0, 90.0)})
    held_plan, held = hold_back(plan, b, 95.0)
    assert [getattr(s, "ups", None) for s in held_plan.actions] == ["b", None]
    assert held == ["driver:a (retry in 5s)"]
    assert hold_back(plan, b, 100.0)[0] == plan


def test_stale_drivers_are_restarted_only_after_the_threshold_and_only_if_running() -> None:
    fresh = {"a": "DATA-STALE", "b": "ok", "c": "DATA-STALE"}
    restart, since = stale_drivers(fresh, {}, {"a", "b"}, 100.0, 30.0)
    assert restart == frozenset() and since == {"a": 100.0}
    restart, since = stale_drivers(fresh, since, {"a", "b"}, 131.0, 30.0)
    assert restart == {"a"} and since == {}
    _, since = stale_drivers({"a": "ok"}, {"a": 100.0}, {"a"}, 120.0, 30.0)
    assert since == {}
