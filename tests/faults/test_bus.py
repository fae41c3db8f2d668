"""What the USB bus does to a running agent: a flapping device, a whole-bus reset, and
units that report the same VID:PID:serial."""

from __future__ import annotations

import itertools
import random
import time

import pytest

from reconcile.nutsyntax import parse_sections
from testbed import await_true
from testbed.nut import Sandbox, nut_processes

pytestmark = pytest.mark.nut

AWAIT = 30.0


def three_units(box: Sandbox) -> dict[str, str]:
    for serial, charge in (("A", "11"), ("B", "22"), ("C", "33")):
        box.dummy_rule(box.data_file(f"{serial}.dev", **{"battery.charge": charge}), serial=serial)
    return {"my-ups": "11", "my-ups-2": "22", "my-ups-3": "33"}


def test_a_flapping_device_changes_the_config_at_most_once_per_settle_window(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    settle, duration = 2.0, 16.0
    sandbox.start_run(env={"SCAN_INTERVAL": "0.2", "SETTLE_TIME": str(settle)})
    assert sandbox.await_converged({"my-ups": "Driver not connected"}) is None, sandbox.run_output()
    writes_before = sandbox.run_output().count("event=file.write file=ups.conf")
    starts_before = sandbox.run_output().count("event=start.driver")

    rng = random.Random(1)
    plugged, toggles = False, 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        sandbox.bus.unplug("1-1") if plugged else sandbox.bus.plug("1-1")
        plugged, toggles = not plugged, toggles + 1
        time.sleep(rng.uniform(0.1, 2.0))  # the fault itself: a device gone and back at random
    if not plugged:
        sandbox.bus.plug("1-1")
    assert sandbox.await_converged({"my-ups": "OL"}) is None, sandbox.run_output()

    out = sandbox.run_output()
    writes = out.count("event=file.write file=ups.conf") - writes_before
    starts = out.count("event=start.driver") - starts_before
    bound = int(duration / settle) + 2  # one settled change per window, plus the final plug
    assert toggles > bound  # the bus changed more often than the config may
    print(f"flapping: {toggles} bus changes, {writes} ups.conf writes, {starts} driver starts")
    assert 1 <= writes <= bound, (toggles, writes)
    assert 1 <= starts <= bound, (toggles, starts)
    assert "event=tick.failed" not in out


def test_a_ups_plugged_back_again_and_again_is_never_held_back_by_backoff(sandbox: Sandbox) -> None:
    """Backoff is for a driver that dies on its own; one the agent stopped because its UPS
    left the bus starts at once when the UPS is back, however often that happens (the
    hotplug benchmark once saw the 7th replug within a minute wait 8 s, then 16, 32)."""
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.start_run(env={"SCAN_INTERVAL": "0.5", "SETTLE_TIME": "0.5", "DEBUG": "1"})
    assert sandbox.await_converged({"my-ups": "Driver not connected"}) is None, sandbox.run_output()
    for _ in range(8):  # more plugs within a minute than backoff lets through (1, 2, 4, 8 s...)
        sandbox.bus.plug("1-1")
        assert sandbox.await_converged({"my-ups": "OL"}) is None, sandbox.run_output()
        sandbox.bus.unplug("1-1")
        assert sandbox.await_converged({"my-ups": "Driver not connected"}) is None, sandbox.run_output()
    out = sandbox.run_output()
    assert out.count("event=start.driver") >= 8
    assert "event=backoff.hold" not in out and "retry in" not in out, out[-3000:]


def test_a_whole_bus_reset_restarts_every_driver_and_keeps_every_name(sandbox: Sandbox) -> None:
    expected = three_units(sandbox)
    for port, serial in (("1-1", "A"), ("1-2", "B"), ("1-3", "C")):
        sandbox.bus.plug(port, serial=serial)
    sandbox.start_run()
    for name, charge in expected.items():
        assert sandbox.await_upsc(charge, name, "battery.charge", timeout=AWAIT), sandbox.run_output()
    drivers = {pid for pid, comm in nut_processes(sandbox.conf) if comm == "dummy-ups"}
    assert len(drivers) == 3

    # Every device leaves and comes back with a new address, as after a hub or host-controller reset.
    for port in ("1-1", "1-2", "1-3"):
        sandbox.bus.unplug(port)
    time.sleep(0.3)  # the reset itself: the bus is empty for a moment
    for port, serial in (("1-3", "C"), ("1-1", "A"), ("1-2", "B")):
        sandbox.bus.plug(port, serial=serial)

    def restarted() -> bool:
        now = {pid for pid, comm in nut_processes(sandbox.conf) if comm == "dummy-ups"}
        return len(now) == 3 and not now & drivers

    assert await_true(restarted, AWAIT), sandbox.run_output()
    for name, charge in expected.items():
        assert sandbox.await_upsc(charge, name, "battery.charge", timeout=AWAIT), sandbox.run_output()
    assert sandbox.served() == set(expected)
    assert sandbox.processes() == {"upsd": 1, "upsmon": 1, "dummy-ups": 3}
    assert sandbox.cli("plan").returncode == 0


def test_units_with_the_same_serial_get_a_name_a_section_and_a_driver_each(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    for port in ("1-1", "1-2"):
        sandbox.bus.plug(port, serial="000000000000")
    result = sandbox.cli("apply")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "event=ups.twins" in result.stdout and "names may move" in result.stdout
    assert sandbox.await_converged({"my-ups": "OL", "my-ups-2": "OL"}) is None
    _, sections = parse_sections((sandbox.conf / "ups.conf").read_text())
    assert [s.name for s in sections] == ["my-ups", "my-ups-2"]
    monitors = [line for line in (sandbox.conf / "upsmon.conf").read_text().splitlines() if line.startswith("MONITOR")]
    assert len(monitors) == 2 and len(set(monitors)) == 2
    assert "MINSUPPLIES 2" in (sandbox.conf / "upsmon.conf").read_text()
    # unplug one: the other keeps its name and driver
    sandbox.bus.unplug("1-2")
    assert sandbox.cli("apply").returncode == 0
    assert sandbox.await_converged({"my-ups": "OL"}) is None


def _seconds(line: str) -> float:
    """The time of a log line (its ts=, whole seconds)."""
    stamp = line.split("ts=", 1)[1].split(" ", 1)[0]
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))


def test_a_driver_that_never_starts_is_retried_ever_more_slowly_and_the_other_ups_is_served(
    sandbox: Sandbox,
) -> None:
    """A device whose driver cannot open it (here: dummy-ups with no data file) fails every
    start. Each failed start counts toward backoff, so the tries are spaced 1, 2, 4 ... s
    (at SCAN_INTERVAL 0.5 s without backoff they came at every tick), and the other UPS
    is served and followed all along."""
    sandbox.dummy_rule(sandbox.data_file("A.dev"), serial="A")
    sandbox.dummy_rule(sandbox.root / "never-there.dev", serial="B")
    sandbox.bus.plug("1-1", serial="A")
    sandbox.bus.plug("1-2", serial="B")
    sandbox.start_run(env={"SCAN_INTERVAL": "0.5", "SETTLE_TIME": "0.5", "DEBUG": "1"})
    failed = 'event=step.failed step="start driver my-ups-2 (dummy-ups)"'
    assert sandbox.await_log(failed, count=4, timeout=AWAIT), sandbox.run_output()
    # (Never "converged": the plan keeps its start of my-ups-2, held back.)
    assert sandbox.upsc("my-ups", "ups.status") == (0, "OL")
    assert sandbox.upsc("my-ups-2", "ups.status") == (1, "Error: Driver not connected")
    tries = [_seconds(line) for line in sandbox.run_output().splitlines() if failed in line][:4]
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    # 1, 2 and 4 s at least (the stamps are whole seconds: each may read up to 1 s short).
    assert gaps[0] >= 0 and gaps[1] >= 1 and gaps[2] >= 3 and tries[3] - tries[0] >= 6, gaps
    assert 'event=backoff.hold target="driver:my-ups-2 (retry in' in sandbox.run_output()
    # The working UPS is followed meanwhile: a change on it reaches upsd.
    sandbox.data_file("A.dev", **{"ups.status": "OB DISCHRG"})
    assert sandbox.await_upsc("OB DISCHRG", "my-ups", "ups.status", timeout=AWAIT), sandbox.run_output()
    assert sandbox.processes() == {"upsd": 1, "upsmon": 1, "dummy-ups": 1}
