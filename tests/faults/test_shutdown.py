"""NUT's shutdown path, end to end against the real upsd, dummy-ups and upsmon.

The point of running NUT at all: when the UPS that powers this host reports low
battery while on battery (OB LB), upsmon, as primary, sets FSD on the UPS (so the
secondaries on the network shut down too) and runs the shutdown command.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconcile import events, store
from reconcile.act import powercycle
from reconcile.decide import forced
from reconcile.logfmt import format_fields
from reconcile.nutsyntax import tokenize
from reconcile.settings import notify_program
from testbed import await_true
from testbed.nut import Sandbox, write_stub
from testbed.webhook import Receiver

pytestmark = pytest.mark.nut

# upsmon's own timing: POLLFREQ 5 s, then FINALDELAY 5 s before SHUTDOWNCMD. A ceiling, not a target.
AWAIT = 60.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def logged_in(box: Sandbox) -> int:
    """How many upsmons are logged in to upsd for my-ups (NUT's LIST CLIENT)."""
    with socket.create_connection(("127.0.0.1", box.port), timeout=5) as conn:
        conn.sendall(b"LIST CLIENT my-ups\nLOGOUT\n")
        reply = b""
        while b"END LIST CLIENT" not in reply and (chunk := conn.recv(4096)):
            reply += chunk
    return sum(line.startswith("CLIENT my-ups ") for line in reply.decode().splitlines())


def shutdown_config(box: Sandbox) -> str:
    flag = box.root / "shutdown-ran"
    return f'\n[upsmon]\nshutdown_cmd = "/bin/touch {flag}"\n'


def serving_on_line(box: Sandbox) -> Path:
    """One UPS on line power, served by `apply`, whose shutdown command touches a file."""
    box.dummy_rule(box.data_file())
    box.write_config(shutdown_config(box))
    box.bus.plug("1-1")
    box.cli("apply", check=True)
    assert box.await_upsc("OL")
    return box.root / "shutdown-ran"


def low_battery(box: Sandbox) -> None:
    box.data_file(**{"ups.status": "OB LB", "battery.charge": "4"})


def test_low_battery_on_an_attached_ups_runs_the_shutdown_command_and_sets_fsd(sandbox: Sandbox) -> None:
    flag = serving_on_line(sandbox)
    low_battery(sandbox)
    assert await_true(flag.exists, AWAIT), (sandbox.agent / "upsmon.log").read_text()
    code, status = sandbox.upsc("my-ups", "ups.status")
    assert code == 0 and status.split() == ["FSD", "OB", "LB"]


def test_fsd_is_never_cleared_by_the_agent(sandbox: Sandbox) -> None:
    serving_on_line(sandbox)
    low_battery(sandbox)
    assert await_true(lambda: "FSD" in sandbox.upsc("my-ups", "ups.status")[1], AWAIT)
    upsd = sandbox.pid_of("upsd.pid")
    # upsd.conf changes (a new MAXAGE): a restart would drop the flag the secondaries
    # are shutting down on, so upsd is not restarted while it is set.
    text = (sandbox.root / "config.toml").read_text()
    (sandbox.root / "config.toml").write_text(text.replace("[upsd]\nlisten", "[upsd]\nmaxage = 20\nlisten"))
    result = sandbox.cli("apply")
    assert "a UPS is in FSD: upsd is not restarted" in result.stdout, result.stdout + result.stderr
    assert sandbox.pid_of("upsd.pid") == upsd
    assert sandbox.upsc("my-ups", "ups.status")[1].split()[0] == "FSD"


UPSMON_FAST = "\n[upsmon]\npollfreq = 1\ndeadtime = 3\n"


def unplug_run(box: Sandbox, status: str) -> None:
    """A UPS with `status`, served by the running agent, then unplugged."""
    box.dummy_rule(box.data_file(**{"ups.status": status}))
    box.write_config(shutdown_config(box).replace("[upsmon]\n", UPSMON_FAST.lstrip("\n")))
    box.bus.plug("1-1")
    box.start_run()
    assert box.await_upsc(status, timeout=AWAIT), box.run_output()
    assert box.await_log("event=start.upsmon", timeout=AWAIT), box.run_output()
    assert "MONITOR my-ups@" in (box.conf / "upsmon.conf").read_text()
    if status.startswith("OB"):
        # Both have seen it on battery: upsmon (its own log) and the agent.
        upsmon_log = box.agent / "upsmon.log"
        assert await_true(lambda: "on battery" in upsmon_log.read_text(), AWAIT), upsmon_log.read_text()
        assert box.await_log('event=ups.power ups=my-ups status="on battery', timeout=AWAIT), box.run_output()
    box.bus.unplug("1-1")


def test_a_ups_unplugged_on_battery_stays_watched_and_deadtime_shuts_the_host_down(sandbox: Sandbox) -> None:
    unplug_run(sandbox, "OB DISCHRG")
    assert sandbox.await_log("event=ups.held ups=my-ups", timeout=AWAIT), sandbox.run_output()
    assert "MONITOR my-ups@" in (sandbox.conf / "upsmon.conf").read_text()
    assert sandbox.await_upsc("Error: Driver not connected", timeout=AWAIT)  # its driver is gone
    flag = sandbox.root / "shutdown-ran"
    assert await_true(flag.exists, AWAIT), (sandbox.agent / "upsmon.log").read_text() + sandbox.run_output()


def test_a_ups_unplugged_on_line_power_never_shuts_the_host_down(sandbox: Sandbox) -> None:
    unplug_run(sandbox, "OL")
    stop_watching = 'event=reload.upsmon why="stop watching my-ups"'
    assert sandbox.await_log(stop_watching, timeout=AWAIT), sandbox.run_output()
    assert "MONITOR" not in (sandbox.conf / "upsmon.conf").read_text()
    # No event to await for "never": the window is the one the on-battery case fires in
    # (DEADTIME 3 s + POLLFREQ 1 s + FINALDELAY 5 s), with margin.
    flag = sandbox.root / "shutdown-ran"
    assert not await_true(flag.exists, 3 + 1 + 5 + 6)
    assert "event=ups.held" not in sandbox.run_output()


def test_the_hosts_own_upsmon_as_secondary_shuts_the_host_down_on_the_primarys_fsd(sandbox: Sandbox) -> None:
    """The README's way to power off the Pi itself: the host's NUT client, a secondary of
    the container's primary. Run here in a mount namespace of its own, so that its PID file
    (compiled into Debian's upsmon as /run/nut/upsmon.pid) is not the primary's."""
    primary_flag = serving_on_line(sandbox)
    with host_secondary(sandbox) as host_flag:
        log_text = sandbox.root / "host-upsmon.log"
        # Both upsmons logged in to upsd for my-ups: the primary and the host's secondary.
        assert await_true(lambda: logged_in(sandbox) == 2, AWAIT), log_text.read_text()
        low_battery(sandbox)
        assert await_true(host_flag.exists, AWAIT), log_text.read_text()
        # The primary waited for the secondary to log out, then shut down too.
        assert await_true(primary_flag.exists, AWAIT), (sandbox.agent / "upsmon.log").read_text()


@pytest.mark.parametrize(
    ("status", "powers_host"),
    [("OL LB CHRG", True), ("OB DISCHRG", False)],
    ids=["low-battery-on-line", "ups-not-powering-this-host"],
)
def test_a_ups_whose_loss_cannot_shut_this_host_down_is_not_held_and_health_recovers(
    sandbox: Sandbox, status: str, powers_host: bool
) -> None:
    """A hold is only for what upsmon's DEADTIME rule can act on: a UPS that powers this
    host, last seen OB (or FSD). `OL LB` (charging after an outage) and a UPS with
    `powers_host = false` are let go at once: before, they were held, and `health` said
    unhealthy until upsmon restarted."""
    sandbox.dummy_rule(sandbox.data_file(**{"ups.status": status}))
    if not powers_host:
        sandbox.rules[-1] += "powers_host = false\n"
    sandbox.write_config(shutdown_config(sandbox).replace("[upsmon]\n", UPSMON_FAST.lstrip("\n")))
    sandbox.bus.plug("1-1")
    sandbox.start_run()
    assert sandbox.await_upsc(status, timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log("event=start.upsmon", timeout=AWAIT), sandbox.run_output()
    # One whole pass that has read this status from upsd (apply waits for the loop's lock):
    # whatever the agent remembers of it is on disk now.
    assert sandbox.cli("apply").returncode == 0
    seen = sandbox.agent / "seen.json"
    assert not seen.exists() or "my-ups" not in json.loads(seen.read_text())["ups"]
    sandbox.bus.unplug("1-1")
    stop_watching = 'event=reload.upsmon why="stop watching my-ups"'
    assert sandbox.await_log(stop_watching, timeout=AWAIT), sandbox.run_output()
    assert "MONITOR" not in (sandbox.conf / "upsmon.conf").read_text()
    assert "event=ups.held" not in sandbox.run_output()
    health = sandbox.cli("health")
    assert health.returncode == 0, health.stdout + health.stderr
    assert not (sandbox.root / "shutdown-ran").exists()


def test_a_forced_shutdown_is_called_off_once_mains_are_back_and_a_ups_without_power_cycle_is_skipped(
    sandbox: Sandbox,
) -> None:
    """The chain inside the container, with the long-running agent: OB LB, upsmon as
    primary sets FSD and runs its (recording) shutdown command once; upsmon is not started
    into a second shutdown while FSD is set; mains back, and after the hold time (60 s, the
    least the config takes) FSD is called off (upsd restarted), upsmon runs again, and
    nothing shuts down again.

    dummy-ups offers no shutdown.return (only load.off): the agent reports that at start,
    and at the forced shutdown skips the power cycle, saying why, and sends upsd nothing."""
    record = sandbox.root / "shutdowns"
    data = sandbox.data_file(**{"ups.delay.shutdown": "20"})
    sandbox.dummy_rule(data)
    sandbox.write_config(
        f"\n[upsmon]\npollfreq = 1\ndeadtime = 3\nshutdown_cmd = \"/bin/sh -c 'echo ran >> {record}'\"\n"
        "\n[shutdown]\nups_off_delay = 120\nfsd_clear_after = 60\n"
    )
    sandbox.bus.plug("1-1")
    sandbox.start_run()
    assert sandbox.await_log("event=start.upsmon", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log("event=ups.no_power_cycle ups=my-ups commands=load.off", timeout=AWAIT), (
        sandbox.run_output()
    )
    status = json.loads(sandbox.cli("status", "--json", check=True).stdout)
    assert status["shutdown"]["power_cycle"] == {"my-ups": False} and status["shutdown"]["fsd"] == []
    upsd = sandbox.pid_of("upsd.pid")

    sandbox.data_file(**{"ups.status": "OB LB", "battery.charge": "4", "ups.delay.shutdown": "20"})
    assert await_true(record.exists, AWAIT), (sandbox.agent / "upsmon.log").read_text()
    assert sandbox.upsc("my-ups", "ups.status")[1].split()[0] == "FSD"
    skipped = 'event=power_cycle.skipped ups=my-ups why="its driver offers no shutdown.return"'
    assert sandbox.await_log(skipped, timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log("upsmon not started: a UPS is in FSD", timeout=AWAIT), sandbox.run_output()
    assert "event=ups.power_cycle" not in sandbox.run_output()
    assert sandbox.upsc("my-ups", "ups.delay.shutdown")[1] == "20"  # nothing was set
    status = json.loads(sandbox.cli("status", "--json", check=True).stdout)
    assert status["shutdown"]["fsd"] == ["my-ups"] and status["shutdown"]["shutdown_ran"] is True
    assert sandbox.cli("health").returncode != 0  # no upsmon: the shutdown path is not whole

    sandbox.data_file(**{"ups.status": "OL CHRG", "battery.charge": "40", "ups.delay.shutdown": "20"})
    assert sandbox.await_log("event=fsd.cleared ups=my-ups", timeout=AWAIT + 60), sandbox.run_output()
    assert sandbox.await_upsc("OL CHRG", timeout=AWAIT), sandbox.upsc()
    assert sandbox.pid_of("upsd.pid") != upsd
    assert sandbox.await_log("event=start.upsmon", count=2, timeout=AWAIT), sandbox.run_output()
    assert await_true(lambda: logged_in(sandbox) == 1, AWAIT)
    assert not (sandbox.state / "killpower").exists()  # upsmon removes its own flag at start
    health = sandbox.cli("health")
    assert health.returncode == 0, health.stdout + health.stderr
    # No event to await for "never": a new upsmon that saw FSD would shut down within
    # POLLFREQ 1 s + FINALDELAY 5 s; the window has margin.
    assert not await_true(lambda: len(record.read_text().splitlines()) > 1, 1 + 5 + 4)
    assert record.read_text().splitlines() == ["ran"]
    assert sandbox.run_output().count(skipped) == 1 and "event=fsd.kept" not in sandbox.run_output()


def test_an_agent_stopped_while_fsd_is_set_power_cycles_the_ups_on_its_way_down(sandbox: Sandbox) -> None:
    """The host is halting (its own upsmon saw FSD) and Docker stops the container before
    our upsmon ran its shutdown: the agent sends the power cycle as it stops, before upsd
    goes, and the driver takes it. upsmon polls slowly here (POLLFREQ 60), so that only the
    stop can send it."""
    record = sandbox.root / "received.log"
    sandbox.use_stub_driver()
    sandbox.stub_rule(stub_device(record))
    sandbox.write_config("\n[upsmon]\npollfreq = 60\ndeadtime = 180\n\n[shutdown]\nups_off_delay = 90\n")
    sandbox.bus.plug("1-1")
    agent = sandbox.start_run()
    assert sandbox.await_log("event=start.upsmon", timeout=AWAIT), sandbox.run_output()
    # Why both: FSD set before the data is fresh reads as "FSD WAIT", and before upsmon's
    # first poll (its login) it is seen at that poll, not POLLFREQ (60 s) later.
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.upsc()
    assert await_true(lambda: logged_in(sandbox) == 1, AWAIT), sandbox.run_output()
    password = json.loads((sandbox.agent / "secrets.json").read_text())["upsmon"]
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as conn:
        # What a primary upsmon does on low battery (NUT's protocol): FSD on the UPS.
        conn.sendall(f"USERNAME upsmon\nPASSWORD {password}\nLOGIN my-ups\nFSD my-ups\n".encode())
        replies = b""
        while replies.count(b"\n") < 4 and (chunk := conn.recv(4096)):
            replies += chunk
    assert replies.decode().splitlines()[-1].startswith("OK FSD-SET"), replies
    assert sandbox.await_log('event=ups.power ups=my-ups status="on battery (FSD OL)"', timeout=AWAIT), (
        sandbox.run_output()
    )
    assert "event=ups.power_cycle" not in sandbox.run_output()  # upsmon has not run its shutdown
    assert "event=power_cycle.skipped" not in sandbox.run_output()  # nor is it skipped: it is not decided yet
    agent.terminate()
    assert agent.wait(30) == 0
    out = sandbox.run_output()
    sent = (
        'event=ups.power_cycle ups=my-ups off_delay=90 command="INSTCMD my-ups shutdown.return" answer=SUCCESS ok=true'
    )
    assert sent in out and out.index(sent) < out.index("event=stopped"), out
    assert out.count("event=ups.power_cycle") == 1
    assert received(record) == [
        ["SET", "ups.delay.start", "120"],
        ["SET", "ups.delay.shutdown", "90"],
        ["INSTCMD", "shutdown.return"],
    ]


def test_a_real_low_battery_shutdown_sends_upsmons_notices_with_charge_runtime_and_what_next(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    record = sandbox.root / "shutdowns"
    sandbox.dummy_rule(sandbox.data_file(**{"battery.runtime": "1500"}))
    sandbox.write_config(
        f"\n[upsmon]\npollfreq = 1\ndeadtime = 3\nshutdown_cmd = \"/bin/sh -c 'echo ran >> {record}'\"\n"
    )
    sandbox.start_run(env={"NOTIFY_URLS": receiver.url, "HOST_NAME": "pi-test"})
    assert sandbox.await_log("event=notify.ready", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log("event=start.upsmon", timeout=AWAIT), sandbox.run_output()
    lines = tokenize((sandbox.conf / "upsmon.conf").read_text())
    assert ["NOTIFYFLAG", "ONBATT", "SYSLOG+EXEC"] in lines and ["NOTIFYFLAG", "ALARM", "SYSLOG"] in lines
    # NOTIFYCMD is one token, the relay's program (NUT 2.8.4 and 2.8.6 alike): what this real
    # upsmon runs below for every notice, with NUT_STATEPATH telling it the agent's socket.
    commands = [words[1:] for words in lines if words[0] == "NOTIFYCMD"]
    assert len(commands) == 1 and len(commands[0]) == 1, commands
    program = commands[0][0]
    assert program == str(notify_program()) and program.endswith("/nut-reconcile-notify"), program
    assert os.path.isabs(program) and os.access(program, os.X_OK), program
    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log("event=ups.no_power_cycle", timeout=AWAIT), sandbox.run_output()

    sandbox.data_file(**{"ups.status": "OB DISCHRG", "battery.charge": "60", "battery.runtime": "1500"})
    assert await_true(lambda: receiver.has("my-ups: on battery"), AWAIT), receiver.titles()
    onbatt = receiver.find("my-ups: on battery")[0]
    assert onbatt["title"] == "[pi-test] my-ups: on battery" and onbatt["type"] == "warning"
    body = onbatt["message"]
    assert "UPS my-ups" in body and "pi-test" in body
    assert "charge 60 %" in body and "runtime 25 min" in body
    assert "Next: This host shuts down when the battery runs low (LB)" in body

    sandbox.data_file(**{"ups.status": "OB LB", "battery.charge": "4", "battery.runtime": "60"})
    assert await_true(record.exists, AWAIT), (sandbox.agent / "upsmon.log").read_text()
    assert await_true(lambda: receiver.has("my-ups: battery low"), AWAIT), receiver.titles()
    assert await_true(lambda: receiver.has("[pi-test] shutting down"), AWAIT), receiver.titles()
    lowbatt = receiver.find("my-ups: battery low")[0]
    assert lowbatt["type"] == "failure" and "charge 4 %" in lowbatt["message"]
    # dummy-ups offers no shutdown.return: the message says the UPS is not power-cycled.
    assert "not power-cycled" in lowbatt["message"], lowbatt["message"]
    assert "event=upsmon.notice type=SHUTDOWN" in sandbox.run_output()
    status = json.loads(sandbox.cli("status", "--json", check=True).stdout)
    # The chain's last events: upsmon's SHUTDOWN, then the agent's power cycle (refused here).
    # (dummy-ups offers no shutdown.return: the power cycle is skipped, and says so)
    kinds = ("upsmon.SHUTDOWN", "power_cycle.skipped")
    assert status["recent"]["last_event"]["kind"] in kinds, receiver.titles()


# --- the power cycle, against a driver that takes commands (testbed/stub_driver.py) -----

DELAYS = ["ups.delay.start", "ups.delay.shutdown"]


def stub_device(record: Path, **more: Any) -> dict[str, Any]:
    """What the stub driver serves: a usbhid-ups-like UPS on line, whose delays are
    NUT's defaults (start 30 s, off 20 s) and writable, offering shutdown.return."""
    device: dict[str, Any] = {
        "vars": {
            "ups.status": "OL",
            "battery.charge": "91",
            "ups.mfr": "American Power Conversion",
            "driver.version.data": "APC HID 0.100",
            "ups.delay.start": "30",
            "ups.delay.shutdown": "20",
        },
        "rw": DELAYS,
        "commands": ["shutdown.return", "load.off"],
        "record": str(record),
    }
    return device | more


def set_status(path: Path, status: str, charge: str) -> None:
    device = json.loads(path.read_text())
    device["vars"] |= {"ups.status": status, "battery.charge": charge}
    write_stub(path, device)


def received(record: Path) -> list[list[str]]:
    """What the stub driver got from upsd (INSTCMD, SET), the tracking ids left out."""
    lines = record.read_text().splitlines() if record.exists() else []
    return [w[: w.index("TRACKING")] if "TRACKING" in w else w for w in (line.split() for line in lines)]


@contextlib.contextmanager
def host_secondary(box: Sandbox, name: str = "host") -> Iterator[Path]:
    """The host's own upsmon, a secondary of the container's primary, as the README sets it
    up; in a mount namespace of its own, so that its PID file (compiled into Debian's upsmon
    as /run/nut/upsmon.pid) is not the primary's. Yields the file its shutdown command touches."""
    monuser = json.loads((box.agent / "secrets.json").read_text())["monuser"]
    host = box.root / f"{name}-nut"
    host.mkdir()
    flag = box.root / f"{name}-shutdown-ran"
    (host / "upsmon.conf").write_text(
        f"MONITOR my-ups@127.0.0.1:{box.port} 1 monuser {monuser} secondary\n"
        f'SHUTDOWNCMD "/bin/touch {flag}"\nPOLLFREQ 1\nPOLLFREQALERT 1\n'
    )
    os.chmod(host / "upsmon.conf", 0o600)
    env = {**os.environ, "NUT_CONFPATH": str(host), "NUT_STATEPATH": str(host)}
    with open(box.root / f"{name}-upsmon.log", "w") as log:
        secondary = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /run/nut && exec /lib/nut/upsmon -p -F"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield flag
    finally:
        if secondary.poll() is None:
            secondary.kill()
        secondary.wait(5)


def stub_running(box: Sandbox, record: Path, extra: str = "", **device: Any) -> Path:
    """The running agent serving the stub driver's UPS on line (upsmon polling fast, a
    recording shutdown command); the device's JSON file, to change its status."""
    box.use_stub_driver()
    path = box.stub_rule(stub_device(record, **device))
    shutdowns = box.root / "shutdowns"
    box.write_config(
        f"\n[upsmon]\npollfreq = 1\ndeadtime = 3\nshutdown_cmd = \"/bin/sh -c 'echo ran >> {shutdowns}'\"\n"
        "\n[shutdown]\nups_off_delay = 120\nfsd_clear_after = 60\n" + extra
    )
    box.bus.plug("1-1")
    box.start_run(env={"DEBUG": "1"})
    assert box.await_upsc("OL", timeout=AWAIT), box.run_output()
    assert box.await_log("event=start.upsmon", timeout=AWAIT), box.run_output()
    return path


def test_no_power_cycle_when_no_host_is_halting_even_after_our_upsmons_shutdown(sandbox: Sandbox) -> None:
    """The README's quick start without the host's secondary: our upsmon sets FSD, runs its
    shutdown and writes POWERDOWNFLAG, but no host is going down, so the UPS's load is not
    cut (it was, 120 s later, even with mains back). `apply` meanwhile sends nothing either."""
    record = sandbox.root / "received.log"
    path = stub_running(sandbox, record)
    assert await_true(lambda: logged_in(sandbox) == 1, AWAIT), sandbox.run_output()
    set_status(path, "OB LB", "4")
    assert await_true((sandbox.state / "killpower").exists, AWAIT), (sandbox.agent / "upsmon.log").read_text()
    skipped = (
        'event=power_cycle.skipped ups=my-ups why="no host is halting: no secondary was logged in when FSD was set"'
    )
    assert sandbox.await_log(skipped, timeout=AWAIT), sandbox.run_output()
    assert sandbox.upsc("my-ups", "ups.status")[1].split()[0] == "FSD"
    assert sandbox.cli("apply").returncode == 0
    out = sandbox.run_output()
    assert "event=ups.power_cycle" not in out and out.count(skipped) == 1, out
    assert received(record) == []  # the driver was sent nothing: not a SET, not shutdown.return
    status = json.loads(sandbox.cli("status", "--json", check=True).stdout)
    assert status["recent"]["last_event"]["kind"] == "power_cycle.skipped"


REQUEST = re.compile(r'request=("(?:[^"\\]|\\.)*"|\S+)')


def said(out: str) -> list[str]:
    """The agent's side of its power-cycle conversation with upsd (debug log), in order,
    each as the log writes it (`request=...`)."""
    return [
        m.group(0) for line in out.splitlines() if "event=power_cycle.said" in line for m in [REQUEST.search(line)] if m
    ]


def test_a_halting_host_gets_the_power_cycle_start_delay_first_both_read_back_then_tracked(sandbox: Sandbox) -> None:
    """The host's own upsmon logs in (from loopback, as our upsmon does: the two are told
    apart by count), sees FSD and halts. Then, and only then, the UPS gets the power cycle:
    its start delay set above the off-delay (usbhid-ups's default start delay of 30 s would
    be below 120 s: the UPS might stay off), both read back, then shutdown.return, each
    followed through upsd's TRACKING to the driver's own answer. `apply` during that FSD
    does not send it again."""
    record = sandbox.root / "received.log"
    path = stub_running(sandbox, record)
    with host_secondary(sandbox) as host_flag:
        assert await_true(lambda: logged_in(sandbox) == 2, AWAIT), sandbox.run_output()
        set_status(path, "OB LB", "4")
        assert await_true(host_flag.exists, AWAIT), (sandbox.root / "host-upsmon.log").read_text()
        sent = (
            'event=ups.power_cycle ups=my-ups off_delay=120 command="INSTCMD my-ups shutdown.return" '
            "answer=SUCCESS ok=true start_delay=150"
        )
        assert sandbox.await_log(sent, timeout=AWAIT), sandbox.run_output()
    # What the driver received, in order: both delays, then the command (each with a tracking id).
    assert received(record) == [
        ["SET", "ups.delay.start", "150"],
        ["SET", "ups.delay.shutdown", "120"],
        ["INSTCMD", "shutdown.return"],
    ], record.read_text()
    assert all("TRACKING" in line for line in record.read_text().splitlines())
    # And the agent's side: each SET and the command awaited to the driver's answer, the
    # delays read back in between.
    steps = [s for s in said(sandbox.run_output()) if "GET TRACKING" not in s]
    assert steps == [
        format_fields({"request": line})
        for line in (
            "USERNAME",
            "PASSWORD",
            "SET TRACKING ON",
            'SET VAR my-ups ups.delay.start "150"',
            'SET VAR my-ups ups.delay.shutdown "120"',
            "GET VAR my-ups ups.delay.start",
            "GET VAR my-ups ups.delay.shutdown",
            "INSTCMD my-ups shutdown.return",
        )
    ], steps
    # The last word is the driver's, asked for by the command's tracking id.
    last = [line for line in sandbox.run_output().splitlines() if "event=power_cycle.said" in line][-1]
    assert 'request="GET TRACKING ' in last and last.endswith("reply=SUCCESS"), last
    assert sandbox.upsc("my-ups", "ups.delay.start")[1] == "150"
    assert sandbox.upsc("my-ups", "ups.delay.shutdown")[1] == "120"
    result = sandbox.cli("apply")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "event=ups.power_cycle" not in result.stdout + result.stderr
    assert sandbox.run_output().count("event=ups.power_cycle ") == 1
    assert [w[0] for w in received(record)].count("INSTCMD") == 1


def test_a_halting_host_gone_before_the_agents_first_pass_in_fsd_still_gets_the_power_cycle(sandbox: Sandbox) -> None:
    """The UPS goes from OL straight to OB LB, and the host's own upsmon (an expected
    secondary) sees FSD and logs out to halt before the agent's first pass in FSD: no pass
    saw the UPS on battery (the agent's passes are held here by its lock, as a slow pass
    would be). The last pass on line read the host's login, so the host counts as halting
    and the UPS gets the power cycle (it was skipped: "no secondary was logged in")."""
    record = sandbox.root / "received.log"
    expected = '\n[[shutdown.secondary]]\nname = "pi-test"\nups = "my-ups"\nfrom = "host"\n'
    path = stub_running(sandbox, record, expected)
    with host_secondary(sandbox) as host_flag:
        assert await_true(lambda: logged_in(sandbox) == 2, AWAIT), sandbox.run_output()
        # Two more passes, so that a whole one read the logins after the host's login.
        ticks = sandbox.run_output().count("event=tick ")
        assert sandbox.await_log("event=tick ", count=ticks + 2, timeout=AWAIT), sandbox.run_output()
        with store.locked(sandbox.agent):
            set_status(path, "OB LB", "4")
            assert await_true(host_flag.exists, AWAIT), (sandbox.root / "host-upsmon.log").read_text()
            assert await_true(lambda: logged_in(sandbox) <= 1, AWAIT), sandbox.run_output()  # the host's gone
        assert "on battery (OB" not in sandbox.run_output()  # no pass saw it on battery before FSD
        sent = 'event=ups.power_cycle ups=my-ups off_delay=120 command="INSTCMD my-ups shutdown.return" answer=SUCCESS'
        assert sandbox.await_log(sent, timeout=AWAIT), sandbox.run_output()
    assert "event=power_cycle.skipped" not in sandbox.run_output()
    assert received(record)[-1] == ["INSTCMD", "shutdown.return"], record.read_text()


def test_a_power_cycle_upsd_keeps_from_the_ups_is_not_taken_as_sent_and_is_reported(sandbox: Sandbox) -> None:
    """act/powercycle.send_all against the real upsd: a login upsd does not allow the
    SET and INSTCMD (it takes any PASSWORD and answers ERR ACCESS-DENIED at SET) reaches
    nothing: not returned (so the run loop tries it again), a failed ups.power_cycle
    event, the driver sent nothing. The primary's own login reaches the UPS."""
    record = sandbox.root / "received.log"
    stub_running(sandbox, record)
    password = json.loads((sandbox.agent / "secrets.json").read_text())["upsmon"]
    plan = functools.partial(forced.delays, 120)
    at = ("127.0.0.1", sandbox.port)
    seen: list[events.Event] = []
    unsubscribe = events.subscribe(seen.append)
    try:
        kept = powercycle.send_all(at, ("upsmon", password + "-wrong"), ("my-ups",), plan, {})
        nothing = received(record)
        reached = powercycle.send_all(at, ("upsmon", password), ("my-ups",), plan, {})
    finally:
        unsubscribe()
    assert kept == () and nothing == [] and reached == ("my-ups",)
    cycled = [e for e in seen if isinstance(e, events.PowerCycled)]
    assert [e.ok for e in cycled] == [False, True], cycled
    assert cycled[0].answer.startswith("not sent: ") and "ACCESS-DENIED" in cycled[0].answer, cycled[0]
    assert received(record)[-1] == ["INSTCMD", "shutdown.return"], record.read_text()


@pytest.mark.parametrize(
    "refusal",
    [{"set_answer": {"ups.delay.start": 3}}, {"set_ignored": ["ups.delay.start"]}],
    ids=["driver-fails-the-set", "driver-says-done-but-keeps-30"],
)
def test_a_ups_that_will_not_take_the_start_delay_is_sent_no_power_cycle_and_it_is_reported(
    sandbox: Sandbox, receiver: Receiver, refusal: dict[str, Any]
) -> None:
    """A start delay the UPS does not take (the driver answers FAILED, or says done and
    keeps its 30 s) would let it switch off and stay off: shutdown.return is not sent, and
    the owner hears why (the event, `status`, a notification)."""
    record = sandbox.root / "received.log"
    sandbox.use_stub_driver()
    path = sandbox.stub_rule(stub_device(record, **refusal))
    sandbox.write_config("\n[upsmon]\npollfreq = 1\ndeadtime = 3\n\n[shutdown]\nups_off_delay = 120\n")
    sandbox.bus.plug("1-1")
    sandbox.start_run(env={"NOTIFY_URLS": receiver.url, "HOST_NAME": "pi-test"})
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log("event=start.upsmon", timeout=AWAIT), sandbox.run_output()
    with host_secondary(sandbox) as host_flag:
        assert await_true(lambda: logged_in(sandbox) == 2, AWAIT), sandbox.run_output()
        set_status(path, "OB LB", "4")
        assert await_true(host_flag.exists, AWAIT), (sandbox.root / "host-upsmon.log").read_text()
        refused = 'event=ups.no_power_cycle ups=my-ups commands="load.off shutdown.return" why="not sent: '
        refused += "ups.delay.start is 30 s"
        assert sandbox.await_log(refused, timeout=AWAIT), sandbox.run_output()
    assert [w[:2] for w in received(record)] == [["SET", "ups.delay.start"], ["SET", "ups.delay.shutdown"]]
    assert "event=ups.power_cycle " not in sandbox.run_output()
    assert await_true(lambda: receiver.has("my-ups: no power cycle"), AWAIT), receiver.titles()
    message = receiver.find("my-ups: no power cycle")[0]
    assert message["type"] == "failure" and "ups.delay.start is 30 s" in message["message"], message
    status = sandbox.cli("status")
    assert "power cycle: ups.no_power_cycle my-ups" in status.stdout, status.stdout


def test_a_driver_that_keeps_fsd_gets_exactly_one_upsd_restart_and_is_reported_once(sandbox: Sandbox) -> None:
    """A driver that reports FSD itself (nutdrv_qx, blazer do) keeps it through upsd's
    restart: after calling FSD off once, the agent says so once and leaves upsd alone (it
    restarted upsd at every pass)."""
    record = sandbox.root / "received.log"
    path = stub_running(sandbox, record)
    set_status(path, "FSD OL", "100")
    shutdowns = sandbox.root / "shutdowns"
    assert await_true(shutdowns.exists, AWAIT), (sandbox.agent / "upsmon.log").read_text()  # upsmon saw FSD
    skipped = (
        'event=power_cycle.skipped ups=my-ups why="no host is halting: no secondary was logged in when FSD was set"'
    )
    assert sandbox.await_log(skipped, timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log("event=fsd.cleared ups=my-ups", timeout=60 + AWAIT), sandbox.run_output()
    assert sandbox.await_log("event=fsd.kept ups=my-ups", timeout=AWAIT), sandbox.run_output()
    upsd = sandbox.pid_of("upsd.pid")
    # No event to await for "never": the agent passes every second here (SCAN_INTERVAL 1);
    # it restarted upsd at each of them.
    assert not await_true(lambda: sandbox.pid_of("upsd.pid") != upsd, 8)
    out = sandbox.run_output()
    assert out.count("event=start.upsd ") == 2, out  # the first start, and the one restart
    assert out.count("event=fsd.cleared") == 1 and out.count("event=fsd.kept") == 1, out
    assert sandbox.upsc("my-ups", "ups.status")[1] == "FSD OL"  # the driver's own: upsd set none again
    # upsmon is not started into that FSD: it would shut down again, and again.
    assert out.count("event=start.upsmon ") == 1 and shutdowns.read_text().splitlines() == ["ran"], out
    assert received(record) == []  # and no power cycle: no host halted
