"""`nut-reconcile run` as a subprocess: the long-running agent against real NUT."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reconcile import __version__
from testbed import REPO, await_true
from testbed.nut import Sandbox, nut_processes

pytestmark = pytest.mark.nut

NOT_CONNECTED = "Error: Driver not connected"
AWAIT = 20.0  # a ceiling for correctness, not a speed target (see benchmarks/)


def driver_pid(box: Sandbox) -> int | None:
    pids = [p for p, comm in nut_processes(box.conf) if comm == "dummy-ups"]
    return pids[0] if len(pids) == 1 else None


def nut_health(box: Sandbox) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK (docker/nut-health.sh) on the verdict the sandbox's agent records."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NUT_STATEPATH": str(box.state)}
    script = REPO / "docker" / "nut-health.sh"
    return subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=30, check=False)


def test_run_serves_plug_unplug_and_stops_cleanly_on_sigterm(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    agent = sandbox.start_run()
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()

    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    assert sandbox.upsc("my-ups", "battery.charge") == (0, "91")

    sandbox.bus.unplug("1-1")
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()

    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    assert {comm for _, comm in nut_processes(sandbox.conf)} == {"upsd", "upsmon", "dummy-ups"}

    assert await_true(lambda: nut_health(sandbox).stdout == "healthy: upsd serves my-ups\n", AWAIT)
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=10) == 0  # the contract: within 10 s, exit code 0
    assert nut_processes(sandbox.conf) == []
    stopped = nut_health(sandbox)  # a stopped agent's container is not healthy
    assert (stopped.returncode, stopped.stdout) == (1, "unhealthy: the agent stopped\n")
    log = sandbox.log.read_text()
    assert "event=stopped" in log and "event=bus.settled" in log
    for line in log.splitlines():
        assert line.startswith("ts=") and " level=" in line and " event=" in line


def test_sigint_also_stops_everything(sandbox: Sandbox) -> None:
    agent = sandbox.start_run()
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()
    agent.send_signal(signal.SIGINT)
    assert agent.wait(timeout=10) == 0
    assert nut_processes(sandbox.conf) == []


def test_a_driver_that_dies_is_started_again(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.bus.plug("1-1")
    sandbox.start_run()
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    # Kill only once the agent has confirmed its start; before that, a kill is a start that failed.
    assert sandbox.await_log("event=start.driver ups=my-ups", timeout=AWAIT), sandbox.run_output()
    first = driver_pid(sandbox)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert await_true(lambda: driver_pid(sandbox) not in (None, first), AWAIT), sandbox.run_output()
    assert sandbox.await_upsc("OL", timeout=AWAIT)
    restarted = 'event=start.driver ups=my-ups driver=dummy-ups why="not running"'
    assert sandbox.await_log(restarted, timeout=AWAIT), sandbox.run_output()


@pytest.mark.parametrize("daemon", ["upsd", "upsmon"])
def test_a_daemon_that_dies_is_started_again(sandbox: Sandbox, daemon: str) -> None:
    sandbox.start_run()
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()

    def pids() -> list[int]:
        return [p for p, comm in nut_processes(sandbox.conf) if comm == daemon]

    started = f'event=start.{daemon} why="not running"'
    # Kill only once the agent has confirmed the first start; before that, a kill is a start that failed.
    assert sandbox.await_log(started, count=1, timeout=AWAIT), sandbox.run_output()
    assert await_true(lambda: len(pids()) == 1, AWAIT), sandbox.run_output()
    first = pids()
    os.kill(first[0], signal.SIGKILL)
    assert await_true(lambda: pids() not in ([], first), AWAIT), sandbox.run_output()
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT)
    assert sandbox.await_log(started, count=2, timeout=AWAIT), sandbox.run_output()


def test_stale_data_gets_the_driver_restarted(sandbox: Sandbox) -> None:
    # A frozen driver (SIGSTOP) is what a wedged usbhid-ups looks like to upsd:
    # no updates, so "Data stale" after MAXAGE. The agent must restart it.
    sandbox.write_config()
    sandbox.dummy_rule(sandbox.data_file())
    config = sandbox.root / "config.toml"
    config.write_text(config.read_text().replace("[upsd]\n", "[upsd]\nmaxage = 5\n"))
    sandbox.bus.plug("1-1")
    sandbox.start_run(env={"STALE_RESTART_AFTER": "3"})
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    frozen = driver_pid(sandbox)
    assert frozen is not None
    os.kill(frozen, signal.SIGSTOP)
    assert sandbox.await_upsc("Error: Data stale", timeout=AWAIT), sandbox.run_output()
    assert await_true(lambda: driver_pid(sandbox) not in (None, frozen), AWAIT), sandbox.run_output()
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    assert "event=driver.stale ups=my-ups" in sandbox.run_output()


def test_a_tick_that_raises_is_logged_and_the_loop_goes_on(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    agent = sandbox.start_run()
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()
    # A tick that raises: the lock file is a directory, so the pass cannot take it.
    lock = sandbox.agent / "lock"
    lock.unlink()
    lock.mkdir()
    assert await_true(lambda: "event=tick.failed" in sandbox.run_output(), AWAIT), sandbox.run_output()
    assert agent.poll() is None
    failed = "unhealthy: the agent's last pass failed: "
    assert await_true(lambda: nut_health(sandbox).stdout.startswith(failed), AWAIT), nut_health(sandbox).stdout
    lock.rmdir()
    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()


def test_two_ups_and_status_and_health(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file("a.dev", **{"battery.charge": "10"}), serial="A1")
    sandbox.dummy_rule(sandbox.data_file("b.dev", **{"battery.charge": "20"}), serial="B2")
    sandbox.bus.plug("1-1", serial="A1")
    sandbox.start_run()
    assert sandbox.await_upsc("10", "my-ups", "battery.charge", timeout=AWAIT), sandbox.run_output()
    sandbox.bus.plug("1-2", serial="B2")
    assert sandbox.await_upsc("20", "my-ups-2", "battery.charge", timeout=AWAIT), sandbox.run_output()

    status = json.loads(sandbox.cli("status", "--json", check=True).stdout)
    assert {d["name"] for d in status["devices"]} == {"my-ups", "my-ups-2"}
    assert set(status["drivers"]) == {"my-ups", "my-ups-2"}
    assert await_true(
        lambda: all(
            v["state"] == "ok" and v["status"] == "OL"
            for v in json.loads(sandbox.cli("status", "--json").stdout)["served"].values()
        ),
        AWAIT,
    )
    assert await_true(lambda: sandbox.cli("health").returncode == 0, AWAIT)
    # The image's HEALTHCHECK reads the verdict `run` records: the same line `health` prints.
    assert await_true(lambda: nut_health(sandbox).returncode == 0, AWAIT), nut_health(sandbox).stdout
    assert nut_health(sandbox).stdout == sandbox.cli("health").stdout == "healthy: upsd serves my-ups, my-ups-2\n"
    assert status["last_reconcile"]["outcome"] in ("ok", "in sync")
    # What the fleet's status table shows of a host: its readings, versions, last event, armed.
    status = json.loads(sandbox.cli("status", "--json", env={"HOST_NAME": "pi-7"}, check=True).stdout)
    assert status["upses"]["my-ups"]["charge"] == 10.0 and status["upses"]["my-ups-2"]["charge"] == 20.0
    assert status["upses"]["my-ups"]["status"] == "OL" and status["upses"]["my-ups"]["state"] == "ok"
    assert status["agent"]["host_name"] == "pi-7" and str(status["agent"]["nut_version"]).startswith("2.")
    assert status["recent"]["last_event"]["kind"] == "ups.plugged"
    assert status["recent"]["last_event"]["ups"] == "my-ups-2"
    # No secondary from the host, and SHUTDOWNCMD only logs: served, healthy, but a low
    # battery would halt nothing, so not armed, and status says why.
    assert status["shutdown"]["armed"] is False and status["shutdown"]["broken"] == []
    assert status["shutdown"]["unarmed"].startswith("nothing halts this host"), status["shutdown"]

    # the primary goes away: the other one becomes my-ups (dashboards keep a UPS)
    sandbox.bus.unplug("1-1")
    assert sandbox.await_upsc("20", "my-ups", "battery.charge", timeout=AWAIT), sandbox.run_output()


def test_health_fails_when_upsd_is_down(sandbox: Sandbox) -> None:
    result = sandbox.cli("health")
    assert result.returncode == 1 and "unhealthy" in result.stdout


def test_version(sandbox: Sandbox) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reconcile", "--version"], env=sandbox.env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"nut-reconcile {__version__}"


def test_simulate_demo_plugs_serves_changing_data_and_unplugs(sandbox: Sandbox) -> None:
    sandbox.start_run(env={"SIMULATE": "1", "SIMULATE_CYCLE": "20", "SCAN_INTERVAL": "0.5", "SETTLE_TIME": "0.5"})
    assert sandbox.await_upsc("ups-nut-smart", var="ups.mfr", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_upsc("OB DISCHRG", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_upsc("OL CHRG", timeout=AWAIT), sandbox.run_output()


def _upsd_says(port: int, *lines: str) -> list[str]:
    """What upsd answers to each line, as a network client (Synology DSM, say) sends them."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn, conn.makefile("rw") as io:
        answers = []
        for line in lines:
            io.write(line + "\n")
            io.flush()
            answers.append(io.readline().strip())
        return answers


def test_synology_compat_lets_dsms_fixed_client_log_in_to_ups(sandbox: Sandbox) -> None:
    """DSM's "Network UPS server" client insists on UPS `ups`, user monuser, password
    secret: with upsd.synology_compat (and UPS_NAME=ups) real upsd takes exactly that
    login, as a secondary; without UPS_NAME=ups the agent refuses to start, naming both."""
    sandbox.dummy_rule(sandbox.data_file())
    config = Path(sandbox.env["RECONCILE_CONFIG"])
    config.write_text(
        f'[upsd]\nlisten = ["127.0.0.1:{sandbox.port}"]\nsynology_compat = true\n\n' + "\n".join(sandbox.rules)
    )
    refused = sandbox.cli("apply")
    assert refused.returncode == 2 and "upsd.synology_compat" in refused.stderr and "UPS_NAME=ups" in refused.stderr
    assert nut_processes(sandbox.conf) == []  # nothing started

    sandbox.bus.plug("1-1")
    sandbox.start_run(env={"UPS_NAME": "ups"})
    assert sandbox.await_upsc("OL", target="ups", timeout=AWAIT), sandbox.run_output()
    dsm = _upsd_says(sandbox.port, "USERNAME monuser", "PASSWORD secret", "LOGIN ups", "FSD ups")
    assert dsm[:3] == ["OK", "OK", "OK"], dsm
    assert dsm[3].startswith("ERR ACCESS-DENIED"), dsm  # a secondary: it cannot force a shutdown
    wrong = _upsd_says(sandbox.port, "USERNAME monuser", "PASSWORD secret2", "LOGIN ups")
    assert wrong[2].startswith("ERR"), wrong
    assert "secret" not in sandbox.run_output().replace("nut_monuser", "")  # never logged
