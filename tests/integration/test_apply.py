"""`nut-reconcile apply` and `plan` against Debian's real NUT daemons, on a simulated bus."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from reconcile.nutsyntax import parse_sections
from testbed.nut import Sandbox, make_sandbox, nut_processes, nut_readable_dir

pytestmark = pytest.mark.nut

NOT_CONNECTED = "Error: Driver not connected"


def served(box: Sandbox) -> set[str]:
    """The UPS names upsd lists (upsc -l)."""
    r = subprocess.run(["upsc", "-l", f"127.0.0.1:{box.port}"], capture_output=True, text=True, timeout=10, check=True)
    return set(r.stdout.split())


def sections(box: Sandbox) -> dict[str, dict[str, str | None]]:
    _, secs = parse_sections((box.conf / "ups.conf").read_text())
    return {s.name: dict(s.options) for s in secs}


def test_cold_start_without_ups_serves_my_ups_as_not_connected(sandbox: Sandbox) -> None:
    sandbox.cli("apply", check=True)
    assert served(sandbox) == {"my-ups"}
    assert sandbox.upsc("my-ups", "ups.status") == (1, NOT_CONNECTED)
    # No MONITOR for a UPS that is not there: upsmon must not count it.
    assert "MONITOR" not in (sandbox.conf / "upsmon.conf").read_text()
    names = {comm for _, comm in nut_processes(sandbox.conf)}
    assert names == {"upsd", "upsmon"}


def test_plug_unplug_replug_and_swap(sandbox: Sandbox) -> None:
    apc = sandbox.data_file("apc.dev", **{"ups.mfr": "APC", "battery.charge": "91"})
    cps = sandbox.data_file("cps.dev", **{"ups.mfr": "CPS", "battery.charge": "57"})
    sandbox.dummy_rule(apc, "051d", "0002")
    sandbox.dummy_rule(cps, "0764", "0501")
    sandbox.cli("apply", check=True)

    # plug
    sandbox.bus.plug("1-1", "051d", "0002", serial="AAA111")
    sandbox.cli("apply", check=True)
    assert sandbox.await_upsc("91", var="battery.charge")
    assert sandbox.upsc("my-ups", "ups.mfr") == (0, "APC")
    assert "MONITOR my-ups@" in (sandbox.conf / "upsmon.conf").read_text()

    # unplug: the name stays listed, honestly not connected
    sandbox.bus.unplug("1-1")
    sandbox.cli("apply", check=True)
    assert sandbox.upsc("my-ups", "ups.status") == (1, NOT_CONNECTED)
    assert "MONITOR" not in (sandbox.conf / "upsmon.conf").read_text()
    assert not [c for _, c in nut_processes(sandbox.conf) if c == "dummy-ups"]

    # replug on another port: same name, same data
    sandbox.bus.plug("1-2", "051d", "0002", serial="AAA111")
    sandbox.cli("apply", check=True)
    assert sandbox.await_upsc("91", var="battery.charge")
    assert served(sandbox) == {"my-ups"}

    # swap for a different model: still my-ups, now the other unit's data
    sandbox.bus.unplug("1-2")
    sandbox.bus.plug("1-1", "0764", "0501", serial="CPS999", manufacturer="CPS", product="CP1500")
    sandbox.cli("apply", check=True)
    assert sandbox.await_upsc("CPS", var="ups.mfr")
    assert sandbox.upsc("my-ups", "battery.charge") == (0, "57")
    assert served(sandbox) == {"my-ups"}


def test_two_identical_models_told_apart_by_serial_with_stable_names(sandbox: Sandbox) -> None:
    one = sandbox.data_file("one.dev", **{"battery.charge": "11"})
    two = sandbox.data_file("two.dev", **{"battery.charge": "22"})
    sandbox.dummy_rule(one, serial="SER-ONE")
    sandbox.dummy_rule(two, serial="SER-TWO")
    sandbox.bus.plug("1-1", serial="SER-ONE")
    sandbox.bus.plug("1-2", serial="SER-TWO")
    sandbox.cli("apply", check=True)
    assert served(sandbox) == {"my-ups", "my-ups-2"}
    assert sandbox.await_upsc("11", "my-ups", "battery.charge")
    assert sandbox.await_upsc("22", "my-ups-2", "battery.charge")

    # Replug both, the other way round on the ports, with the state dir kept:
    # each keeps its name (identity is the serial, not the port).
    sandbox.bus.unplug("1-1")
    sandbox.bus.unplug("1-2")
    sandbox.cli("apply", check=True)
    sandbox.bus.plug("1-3", serial="SER-TWO")
    sandbox.bus.plug("1-4", serial="SER-ONE")
    sandbox.cli("apply", check=True)
    assert sandbox.await_upsc("11", "my-ups", "battery.charge")
    assert sandbox.await_upsc("22", "my-ups-2", "battery.charge")


def test_second_apply_is_a_no_op(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.bus.plug("1-1")
    sandbox.cli("apply", check=True)
    assert sandbox.await_upsc("OL")

    def written() -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for d in (sandbox.conf, sandbox.agent) for p in d.iterdir()}

    mtimes = written()
    pids = {p.name: p.read_text() for p in sandbox.state.glob("*.pid")}
    procs = json.loads((sandbox.agent / "procs.json").read_text())
    assert set(procs) == {"upsd", "upsmon", "driver:my-ups"}

    second = sandbox.cli("apply", check=True)
    assert "reconcile.in-sync" in second.stdout
    assert written() == mtimes  # nothing written: not a config file, not a state file
    assert {p.name: p.read_text() for p in sandbox.state.glob("*.pid")} == pids
    assert json.loads((sandbox.agent / "procs.json").read_text()) == procs
    assert sandbox.cli("plan").returncode == 0


def test_plan_changes_nothing_masks_passwords_and_signals_pending(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.cli("apply", check=True)
    secrets = json.loads((sandbox.agent / "secrets.json").read_text())
    assert oct((sandbox.agent / "secrets.json").stat().st_mode & 0o777) == "0o600"
    sandbox.bus.plug("1-1")
    before = {p.name: p.read_text() for p in sandbox.conf.iterdir()}

    text = sandbox.cli("plan")
    assert text.returncode == 2
    assert "+[my-ups]" not in text.stdout  # my-ups existed as a placeholder: its section changes
    assert '+  driver = "dummy-ups"' in text.stdout
    assert "MONITOR my-ups@" in text.stdout and '"********"' in text.stdout
    assert "start driver my-ups (dummy-ups)" in text.stdout
    as_json = sandbox.cli("plan", "--json")
    assert as_json.returncode == 2
    plan = json.loads(as_json.stdout)
    assert plan["in_sync"] is False
    assert [s["action"] for s in plan["steps"] if s["type"] == "action"] == [
        "start_driver",
        "reload_upsd",
        "reload_upsmon",
    ]
    for secret in secrets.values():
        assert secret not in text.stdout + text.stderr + as_json.stdout
    assert {p.name: p.read_text() for p in sandbox.conf.iterdir()} == before
    assert sandbox.upsc("my-ups", "ups.status") == (1, NOT_CONNECTED)

    sandbox.cli("apply", check=True)
    assert sandbox.cli("plan").returncode == 0
    log = sandbox.log.read_text()
    for secret in secrets.values():
        assert secret not in log


def test_injection_serial_creates_no_line_section_or_directive(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.bus.plug("1-1", serial=b'A"B#\\\n[evil]\n  driver = evil')
    sandbox.cli("apply", check=True)
    assert sandbox.await_upsc("OL")
    secs = sections(sandbox)
    assert list(secs) == ["my-ups"]
    assert secs["my-ups"]["driver"] == "dummy-ups"
    desc = secs["my-ups"]["desc"]
    assert desc is not None and 'A"B#\\[evil]  driver = evil' in desc
    assert served(sandbox) == {"my-ups"}

    # A real USB driver section: the serial is also a match regex there.
    sandbox.rules.clear()
    sandbox.write_config()
    sandbox.bus.unplug("1-1")
    sandbox.bus.plug("1-1", serial='A"B#\\[evil]')
    sandbox.cli("apply")  # usbhid-ups finds no real device here: that step fails
    secs = sections(sandbox)
    assert list(secs) == ["my-ups"]
    assert secs["my-ups"]["driver"] == "usbhid-ups"
    assert secs["my-ups"]["serial"] == 'A"B#\\\\\\[evil\\]'
    assert "bus" not in secs["my-ups"] and "device" not in secs["my-ups"]
    assert served(sandbox) == {"my-ups"}  # upsd parsed the file as we did


def test_file_without_our_header_is_left_alone_and_the_rest_converges(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    users = "[someone]\n  password = hunter2hunter2\n  upsmon secondary\n"
    (sandbox.conf / "upsd.users").write_text(users)
    sandbox.bus.plug("1-1")
    result = sandbox.cli("apply")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "event=file.skip file=upsd.users" in result.stdout
    assert (sandbox.conf / "upsd.users").read_text() == users
    assert sandbox.await_upsc("OL")
    plan = sandbox.cli("plan")
    assert plan.returncode == 0 and "skipped: upsd.users" in plan.stdout


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SCAN_INTERVAL", "abc"),
        ("UPS_NAME", "my ups"),
        ("UPS_NAME", "ups@home"),
        ("SETTLE_TIME", "-1"),
        ("USB_SYSFS_ROOT", "relative/path"),
    ],
)
def test_bad_env_value_names_the_variable_exits_2_and_writes_nothing(
    sandbox: Sandbox, variable: str, value: str
) -> None:
    for command in ("apply", "run", "plan"):
        result = sandbox.cli(command, env={variable: value})
        assert result.returncode == 2
        assert variable in result.stderr
        assert os.listdir(sandbox.conf) == [] and os.listdir(sandbox.state) == []
        assert not sandbox.agent.exists()
        assert nut_processes(sandbox.conf) == []


def test_bad_toml_names_the_file_and_key(sandbox: Sandbox) -> None:
    sandbox.write_config('[[device]]\nmatch = {vendorid = "zz"}\n')
    result = sandbox.cli("apply")
    assert result.returncode == 2
    assert "config.toml" in result.stderr and "device[0].match.vendorid" in result.stderr
    assert os.listdir(sandbox.conf) == []


def test_read_only_mounted_file_is_reported_and_the_rest_converges(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.cli("apply", check=True)
    users = sandbox.conf / "upsd.users"
    before = users.read_text()
    # What a user's `-v ./upsd.users:/etc/nut/upsd.users:ro` looks like from inside.
    mounted = subprocess.run(
        ["mount", "--bind", str(users), str(users)], capture_output=True, text=True, timeout=10, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(users)], check=True, timeout=10)
        sandbox.write_config('[users.monuser]\npassword = "another-pass-1"\n')  # upsd.users must change
        sandbox.bus.plug("1-1")
        result = sandbox.cli("apply")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "event=file.skip file=upsd.users" in result.stdout and "read-only" in result.stdout
        assert users.read_text() == before
        assert sandbox.await_upsc("OL")
    finally:
        subprocess.run(["umount", str(users)], check=False, timeout=10)


def test_debug_logs_each_nut_command_without_secrets(sandbox: Sandbox) -> None:
    quiet = sandbox.cli("apply", check=True)
    assert "event=exec " not in quiet.stdout
    sandbox.bus.plug("1-1")
    sandbox.dummy_rule(sandbox.data_file())
    loud = sandbox.cli("apply", env={"DEBUG": "1"}, check=True)
    assert "level=debug event=exec argv=" in loud.stdout and "upsdrvctl -u root start my-ups" in loud.stdout
    secrets = json.loads((sandbox.agent / "secrets.json").read_text())
    for secret in secrets.values():
        assert secret not in loud.stdout and secret not in sandbox.log.read_text()


def test_a_foreign_upsmon_is_reported_not_killed(sandbox: Sandbox) -> None:
    sandbox.cli("apply", check=True)
    theirs = [p for p, comm in nut_processes(sandbox.conf) if comm == "upsmon"]
    assert len(theirs) == 1
    with nut_readable_dir() as root:
        second = next(make_sandbox(root))
        try:
            result = second.cli("apply")
            assert result.returncode == 1
            assert "another upsmon" in result.stdout and "enabled = false" in result.stdout
            assert [p for p, comm in nut_processes(sandbox.conf) if comm == "upsmon"] == theirs
            assert second.upsc("my-ups", "ups.status") == (1, NOT_CONNECTED)  # the rest converged
        finally:
            second.cleanup()


def test_read_only_commands_create_no_file(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.bus.plug("1-1")
    for command in (["plan"], ["plan", "--json"], ["scan", "--all"], ["status", "--json"], ["health"]):
        result = sandbox.cli(*command)
        assert result.returncode in (0, 1, 2), result.stderr
        assert os.listdir(sandbox.conf) == [] and os.listdir(sandbox.state) == [], command
        assert not sandbox.agent.exists(), command
        assert nut_processes(sandbox.conf) == []


@pytest.mark.parametrize(
    ("config", "culprit"),
    [
        (
            "[[device]]\nmatch = {vendorid = 0x051d}\n",
            'device[0].match.vendorid: 1309 is a number; write the ID as a string: "051d"',
        ),
        ('[users.monuser]\npassword = "has=an-equals"\n', "users.monuser"),
        ('[upsd]\nlisten = ["999.999.999.999:3493"]\n', "upsd.listen"),
        ('[[device]]\nmatch = {vendorid = "051d"}\ndesc = "a"\noptions = {desc = "b"}\n', "device[0].options.desc"),
    ],
)
def test_strict_input_exits_2_names_the_key_and_writes_nothing(sandbox: Sandbox, config: str, culprit: str) -> None:
    (sandbox.root / "config.toml").write_text(config)
    for command in ("apply", "plan"):
        result = sandbox.cli(command)
        assert result.returncode == 2 and culprit in result.stderr, result.stderr
        assert "has=an-equals" not in result.stderr
        assert os.listdir(sandbox.conf) == [] and not sandbox.agent.exists()


def test_non_ascii_digits_in_env_are_refused(sandbox: Sandbox) -> None:
    result = sandbox.cli("apply", env={"SCAN_INTERVAL": "\u0661\u0660"})
    assert result.returncode == 2 and "SCAN_INTERVAL" in result.stderr and "ASCII" in result.stderr
    assert not sandbox.agent.exists()


def test_a_ups_that_cannot_be_served_is_skipped_and_the_others_converge(sandbox: Sandbox) -> None:
    # A state dir, name and driver so long that the driver's socket path cannot fit in 108 bytes.
    statepath = sandbox.root / "a-longer-state-dir-name"
    statepath.mkdir()
    sandbox.env["NUT_STATEPATH"] = str(statepath)
    sandbox.dummy_rule(sandbox.data_file(), serial="GOOD")
    long_name = "a" * 41
    sandbox.rules.append(f'[[device]]\nmatch = {{serial = "LONG"}}\nname = "{long_name}"\ndriver = "{"d" * 41}"\n')
    sandbox.write_config()
    sandbox.bus.plug("1-1", serial="GOOD")
    sandbox.bus.plug("1-2", serial="LONG")
    result = sandbox.cli("apply")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"event=ups.unservable ups={long_name}" in result.stdout and "longer than 107 bytes" in result.stdout
    assert sandbox.await_converged({"my-ups": "OL"}) is None


def test_apply_waits_for_a_pass_of_the_running_loop(sandbox: Sandbox) -> None:
    import fcntl
    import subprocess
    import sys

    sandbox.agent.mkdir(mode=0o700)
    with open(sandbox.agent / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what `run` holds during a pass
        child = subprocess.Popen(
            [sys.executable, "-m", "reconcile", "apply"], env=sandbox.env, stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        first = child.stdout.readline()
        assert "event=lock.wait" in first, first
        assert os.listdir(sandbox.conf) == []  # nothing done while it waits
    rest = child.communicate(timeout=60)[0]
    assert child.returncode == 0 and "event=start.upsd" in rest


def test_apply_leaves_the_running_loops_in_flight_writes_alone_until_it_holds_the_lock(sandbox: Sandbox) -> None:
    """The leftover cleanup runs under the lock: a temp file the running loop is writing
    (it holds the lock during its pass) is not a crash's leftover, and is not removed."""
    import fcntl
    import subprocess
    import sys

    sandbox.cli("apply", check=True)
    in_flight = [sandbox.conf / ".ups.conf.a1b2c3d4.tmp", sandbox.agent / ".seen.json.e5f6g7h8.tmp"]
    with open(sandbox.agent / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what `run` holds during a pass
        for path in in_flight:
            path.write_text("being written by the loop\n")
        child = subprocess.Popen(
            [sys.executable, "-m", "reconcile", "apply"], env=sandbox.env, stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        first = child.stdout.readline()
        assert "event=lock.wait" in first, first
        assert all(p.exists() for p in in_flight)  # untouched while the loop's pass runs
        for path in in_flight:
            path.unlink()  # the loop's write completes (renamed into place)
    rest = child.communicate(timeout=60)[0]
    assert child.returncode == 0, rest
    assert "event=state.leftover" not in first + rest


def test_no_environment_variable_makes_the_agent_kill_itself(sandbox: Sandbox) -> None:
    """The fault tests' crash hook exists only in their own entry point (testbed/crashing.py):
    the variable that once switched it on in the product is nothing to the agent now."""
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.bus.plug("1-1")
    result = sandbox.cli("apply", env={"RECONCILE_CRASH_BEFORE_STEP": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "crash.hook" not in result.stdout
    assert sandbox.await_converged({"my-ups": "OL"}) is None


def test_temp_files_a_crash_left_are_removed_at_start(sandbox: Sandbox) -> None:
    sandbox.cli("apply", check=True)
    # What a kill inside write_atomic leaves: a temp file that may hold a password.
    left = [sandbox.conf / ".upsd.users.k2j4h6a1.tmp", sandbox.agent / ".secrets.json.x9y8z7w6.tmp"]
    for path in left:
        path.write_text('[monuser]\n  password = "secret-in-a-temp-file"\n')
    result = sandbox.cli("apply", check=True)
    assert result.stdout.count("event=state.leftover") == 2
    assert not any(p.exists() for p in left)
    assert sandbox.cli("apply", check=True).stdout.count("event=state.leftover") == 0
