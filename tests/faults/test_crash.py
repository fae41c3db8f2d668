"""SIGKILL of the agent at every step of an apply, at random instants, and of NUT's own
daemons: whatever instant it happens at, the next pass converges (level-triggered)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading

import pytest

from testbed import await_true
from testbed.nut import CLI_TIMEOUT, Sandbox, nut_processes

pytestmark = pytest.mark.nut

BEFORE = {"my-ups": "OL", "my-ups-2": "OL"}
# B (my-ups-2) is gone: its section leaves and its name stays reserved, so C is my-ups-3.
AFTER = {"my-ups": "OL", "my-ups-3": "OL"}


def three_units(box: Sandbox) -> None:
    for serial, charge in (("A", "11"), ("B", "22"), ("C", "33")):
        box.dummy_rule(box.data_file(f"{serial}.dev", **{"battery.charge": charge}), serial=serial)


def before(box: Sandbox) -> None:
    """A on 1-1 and B on 1-2, both served."""
    for port in ("1-1", "1-2", "1-3", "1-4"):
        if (box.bus.root / port).exists():
            box.bus.unplug(port)
    box.bus.plug("1-1", serial="A")
    box.bus.plug("1-2", serial="B")


def after(box: Sandbox) -> None:
    """B unplugged, C plugged, A replugged on another port: a swap and a replug in one plan."""
    box.bus.unplug("1-1")
    box.bus.unplug("1-2")
    box.bus.plug("1-3", serial="C")
    box.bus.plug("1-4", serial="A")


@pytest.mark.timeout(600)
def test_a_kill_before_any_step_of_an_apply_is_healed_by_the_next_pass(sandbox: Sandbox) -> None:
    three_units(sandbox)
    before(sandbox)
    sandbox.cli("apply", check=True)
    assert sandbox.await_converged(BEFORE) is None
    after(sandbox)
    steps = json.loads(sandbox.cli("plan", "--json").stdout)["steps"]
    kinds = [s.get("action") or f"write {s['file']}" for s in steps]
    assert len(steps) >= 8, kinds  # the monitor-out, stop, write, start, reload, monitor-in chain
    for n in range(1, len(steps) + 1):
        before(sandbox)
        sandbox.cli("apply", check=True)
        assert sandbox.await_converged(BEFORE) is None, f"before step {n}"
        after(sandbox)
        killed = sandbox.cli("apply", crash_before_step=n)
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        assert f"event=crash.hook before_step={n}" in killed.stdout
        healed = sandbox.cli("apply")
        assert healed.returncode == 0, f"killed before step {n} ({kinds[n - 1]}):\n{healed.stdout}{healed.stderr}"
        problem = sandbox.await_converged(AFTER)
        assert problem is None, f"killed before step {n} ({kinds[n - 1]}): {problem}\n{healed.stdout}"
        upsmon = (sandbox.conf / "upsmon.conf").read_text()
        assert "MONITOR my-ups@" in upsmon and "MONITOR my-ups-3@" in upsmon and "my-ups-2@" not in upsmon


def test_kills_at_random_instants_of_a_pass_then_a_restart_converges(sandbox: Sandbox) -> None:
    three_units(sandbox)
    rng = random.Random(7)
    killed = 0
    for round_ in range(6):
        before(sandbox) if round_ % 2 == 0 else after(sandbox)
        child = subprocess.Popen(
            sandbox.command("apply"),  # (as root, or under the container's capabilities, like the rest)
            env=sandbox.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Anywhere in the pass, including inside a step (between a start and its record).
        timer = threading.Timer(
            rng.uniform(0.05, 2.5), lambda c=child: c.poll() is None and c.send_signal(signal.SIGKILL)
        )
        timer.start()
        killed += child.wait(CLI_TIMEOUT) == -signal.SIGKILL
        timer.cancel()
        healed = sandbox.cli("apply")
        assert healed.returncode == 0, healed.stdout + healed.stderr
        expected = BEFORE if round_ % 2 == 0 else AFTER
        assert sandbox.await_converged(expected) is None, f"round {round_}"
    assert killed >= 3  # most passes were cut short somewhere
    # No process was ever started twice for one job, nor left behind.
    assert sandbox.processes() == {"upsd": 1, "upsmon": 1, "dummy-ups": 2}


def test_the_run_loop_killed_mid_apply_converges_when_started_again(sandbox: Sandbox) -> None:
    three_units(sandbox)
    before(sandbox)
    first = sandbox.start_run(crash_before_step=3)
    assert await_true(lambda: first.poll() == -signal.SIGKILL, 30), sandbox.run_output()
    sandbox.start_run()
    assert sandbox.await_converged(BEFORE) is None, sandbox.run_output()


def test_upsd_a_driver_and_upsmon_killed_at_once_are_all_started_again(sandbox: Sandbox) -> None:
    three_units(sandbox)
    before(sandbox)
    sandbox.start_run()
    assert sandbox.await_converged(BEFORE) is None, sandbox.run_output()
    assert sandbox.await_log("event=start.upsmon", timeout=20)
    victims = [pid for pid, comm in nut_processes(sandbox.conf) if comm in ("upsd", "upsmon")]
    victims.append(next(pid for pid, comm in nut_processes(sandbox.conf) if comm == "dummy-ups"))
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    assert sandbox.await_converged(BEFORE, timeout=40) is None, sandbox.run_output()
    assert not {pid for pid, _ in nut_processes(sandbox.conf)} & set(victims)
    died = [line for line in sandbox.run_output().splitlines() if "event=driver.died" in line]
    assert len(died) == 1 and f"pid={victims[-1]}" in died[0], died
