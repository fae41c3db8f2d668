"""The one decision entry and the typed event stream: pure, no I/O (no /proc, no files,
no daemons). An Observation is written by hand; the decision and its events are read."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from reconcile import events, logfmt
from reconcile.decide import report, supervision
from reconcile.decide.backoff import Backoff
from reconcile.decide.decision import Decision, Inputs, Observation, decide, reuse
from reconcile.decide.identity import NameBook
from reconcile.decide.supervision import Supervision
from reconcile.model import (
    FileState,
    ProcFact,
    ProcId,
    Served,
    StartDriver,
    StartUpsd,
    StartUpsmon,
    UsbDevice,
    WriteFile,
)
from reconcile.observe.actual import FILES
from reconcile.observe.driver_table import DriverTable
from reconcile.observe.running import Facts
from reconcile.userconfig import UserConfig

TABLE = DriverTable({"051d:0002": "usbhid-ups"}, None)


def device(port: str = "1-1", serial: str = "S1") -> UsbDevice:
    return UsbDevice(port, "051d", "0002", 1, 2, serial, manufacturer="APC", product="Back-UPS")


def inputs() -> Inputs:
    counter = itertools.count(1)
    return Inputs(UserConfig(), TABLE, "my-ups", "/run/nut", "root", 30, 100, lambda: f"pw{next(counter)}")


def observation(
    *bus: UsbDevice, served: dict[str, Served] | None = None, procs: tuple[ProcFact, ...] = ()
) -> Observation:
    return Observation(
        bus=bus,
        scanner={},
        scanner_ran=False,
        book=NameBook(),
        stored_secrets={},
        password_files={},
        memory={},
        ledger={},
        files={name: FileState(name, None, True, True) for name in FILES},
        facts=Facts(procs, served),
        boot_wall=1_000_000.0,
        today=20_000,
    )


def test_one_ups_on_an_empty_system_plans_the_driver_upsd_and_upsmon_in_order() -> None:
    d = decide(observation(device()), Supervision(), inputs())
    assert d.names == {"051d:0002:serial=S1": "my-ups"}
    writes = {s.name: s.content for s in d.plan.steps if isinstance(s, WriteFile)}
    assert "[my-ups]" in writes["ups.conf"] and "usbhid-ups" in writes["ups.conf"]
    assert [type(s) for s in d.plan.steps if not isinstance(s, WriteFile)] == [StartDriver, StartUpsd, StartUpsmon]
    assert d.secrets.monuser == "pw1" and d.secrets.upsmon == "pw2"  # generated, and to be kept
    assert d.secrets_to_keep == {"monuser": "pw1", "upsmon": "pw2"}
    assert "pw1" in writes["upsd.users"]


def test_equal_observations_reuse_the_decision_when_it_had_nothing_to_do() -> None:
    obs = observation(device())
    d = decide(obs, Supervision(), inputs())
    assert reuse(d, obs, Supervision()) is None  # it had steps: decided afresh
    in_sync = dataclasses.replace(d, plan=dataclasses.replace(d.plan, steps=()))
    assert in_sync.plan.in_sync
    again = reuse(in_sync, obs, Supervision(now=5.0))
    assert again is not None and again.plan is in_sync.plan and again.supervision.now == 5.0
    assert reuse(in_sync, observation(device(serial="S2")), Supervision()) is None


def _named(d: Decision, names: dict[str, str]) -> Decision:
    return dataclasses.replace(d, names={**d.names, **names})


def test_bus_events_plugged_unplugged_swapped_and_renamed() -> None:
    one = decide(observation(device()), Supervision(), inputs())
    none = decide(observation(), Supervision(), inputs())
    assert report.bus(None, one) == []  # an agent's first pass is the baseline
    assert report.bus(none, one) == [events.Plugged("my-ups", "1-1", "051d:0002", "APC Back-UPS")]
    assert report.bus(one, none) == [events.Unplugged("my-ups", "1-1")]
    other = decide(observation(device(serial="S9")), Supervision(), inputs())
    assert report.bus(one, other) == [events.Swapped("my-ups", "051d:0002:serial=S1", "051d:0002:serial=S9")]
    renamed = _named(one, {"051d:0002:serial=S1": "my-ups-2"})
    assert report.bus(one, renamed) == [events.Renamed("my-ups", "my-ups-2", "051d:0002:serial=S1")]


def test_a_problem_is_reported_once_while_it_lasts_and_cleared_when_it_ends() -> None:
    stranger = ProcFact("upsd", "upsd", ProcId(77, 5), "/run/nut/upsd.pid", False)
    d = decide(observation(device(), procs=(stranger,)), Supervision(), inputs())
    first, reported = report.once(report.problems(d), frozenset())
    assert events.StrangerFound("upsd", 77, "/run/nut/upsd.pid") in first
    again, reported = report.once(report.problems(d), reported)
    assert again == []
    gone, reported = report.once([], reported)
    cleared = [e.problem for e in gone if isinstance(e, events.ProblemCleared)]
    assert len(cleared) == len(gone) and "process.stranger" in cleared
    assert reported == frozenset()


def test_a_hold_that_ends_is_released_with_the_reason() -> None:
    held = events.Held("my-ups")
    out, _ = report.once([], frozenset({held}), on_bus=frozenset({"my-ups"}))
    assert out == [events.Released("my-ups", "back on the bus")]
    out, _ = report.once([], frozenset({held}))
    assert isinstance(out[0], events.Released) and out[0].why.startswith("the upsmon")


def test_stale_data_healed_says_how_long_it_was_stale_across_a_restart() -> None:
    began, healed = supervision.track_stale({"my-ups": Served("DATA-STALE", None)}, {}, 10.0)
    assert began == {"my-ups": 10.0} and healed == ()
    began, healed = supervision.track_stale({"my-ups": Served("DRIVER-NOT-CONNECTED", None)}, began, 40.0)
    assert began == {"my-ups": 10.0}  # the restart does not reset when it began
    # upsd's WAIT (a restarted driver connected, no data yet) is not fresh data: it goes on counting.
    began, healed = supervision.track_stale({"my-ups": Served("ok", "WAIT")}, began, 50.0)
    assert began == {"my-ups": 10.0} and healed == ()
    began, healed = supervision.track_stale({"my-ups": Served("ok", "OL")}, began, 52.5)
    assert began == {} and healed == (("my-ups", 42.5),)
    assert report.healed(healed) == [events.DriverHealed("my-ups", "42")]
    # A driver not started yet (a UPS just plugged) is no stale data: nothing healed after it.
    began, healed = supervision.track_stale({"my-ups": Served("DRIVER-NOT-CONNECTED", None)}, {}, 60.0)
    assert began == {} and healed == ()


def test_after_pass_counts_failed_starts_and_forgets_what_left_the_bus() -> None:
    sup = Supervision(now=100.0)
    sup = supervision.after_pass(sup, ["a", "b"], [], ["driver:a"], ["driver:b"])
    assert sup.backoff.allowed("driver:a", 100.0)  # a first start: no wait
    assert not sup.backoff.allowed("driver:b", 100.5) and sup.backoff.allowed("driver:b", 101.0)
    sup = supervision.after_pass(dataclasses.replace(sup, now=101.0), ["a"], [], [], [])
    assert "driver:b" not in sup.backoff.entries  # its UPS left the bus: a replug starts at once
    same = supervision.after_pass(sup, ["a"], [], [], [])
    assert same is sup


def test_failed_starts_back_off_1_2_4_seconds() -> None:
    b, now, gaps = Backoff(), 0.0, []
    for _ in range(4):
        b = b.failed("upsd", now)
        gaps.append(b.delay("upsd", now))
        now += b.delay("upsd", now)
    assert gaps == [1.0, 2.0, 4.0, 8.0]


def test_the_stream_hands_every_event_to_every_consumer_and_survives_a_broken_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logfmt.setup(False, None)
    seen: list[events.Event] = []

    def broken(event: events.Event) -> None:
        raise RuntimeError("broker down")

    remove = [events.subscribe(seen.append), events.subscribe(broken)]
    try:
        events.emit(events.Held("my-ups"))
        events.emit(events.StepDone("start_driver", "my-ups", "usbhid-ups", "not running", 42))
    finally:
        for undo in remove:
            undo()
    assert [type(e) for e in seen] == [events.Held, events.StepDone]
    out = capsys.readouterr().out
    assert "level=warning event=ups.held ups=my-ups why=" in out
    assert 'event=start.driver ups=my-ups driver=usbhid-ups why="not running" pid=42' in out
    assert out.count("event=events.consumer") == 1 and "broker down" in out


def test_a_driver_gone_on_its_own_is_reported_died_one_the_agent_stopped_is_not() -> None:
    driver = ProcFact("driver:my-ups", "usbhid-ups", ProcId(50, 9), "/run/nut/usbhid-ups-my-ups.pid", True)
    running = decide(observation(device(), procs=(driver,)), Supervision(), inputs())
    assert "my-ups" in running.owned.drivers
    restarted = running  # (here its plan restarts it: it loaded no section the agent wrote)
    assert report.died(restarted, decide(observation(device()), Supervision(), inputs())) == []
    running = dataclasses.replace(running, plan=dataclasses.replace(running.plan, steps=()))  # in sync
    gone = decide(observation(device()), Supervision(), inputs())
    assert report.died(running, gone) == [events.DriverDied("my-ups", "usbhid-ups", 50)]
    assert report.died(None, gone) == []
    unplugged = decide(observation(), Supervision(), inputs())
    assert report.died(running, unplugged) == []  # its UPS left: the agent stops it
