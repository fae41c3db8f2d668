"""A Pi booted by systemd (PID 1 in its container: testbed/pihost/Dockerfile.systemd), reached
by pyinfra's real SSH connector as user pi with sudo, its host upsmon Debian's
nut-monitor.service (nut-client.service is only an alias of it). The rollout enables the real
unit, and what it changes reaches the running upsmon: a new host password (a new process that
logs in with it) and a new host_shutdown_cmd (what a drill then runs, instead of a poweroff).
After the drill's shutdown the host upsmon has exited, as on a real halt; the next run starts
it again, there and on a Pi without systemd beside it (pi-sv: the init script nut-client).
The tests build on each other, in file order."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from functools import partial

import pytest

from testbed import await_true
from testbed.docker import docker
from testbed.images import TARGETS
from testbed.pis import Fleet, Pi, pihost_image, start_pi
from tests.container.conftest import IMAGE, build
from tests.fleet.conftest import _engine_or_skip

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

NAME = "pi-sd"  # booted by systemd
SYSV = "pi-sv"  # no systemd: the image of the other fleet tests' Pis (compose v2), SSH as root
UNIT = "nut-monitor.service"
RECORD = "/var/log/host-shutdowns"
NEW_PASSWORD = "sd-host-pass-2"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    _engine_or_skip()
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        build(IMAGE, TARGETS["amd64"], "--build-arg", "NUT_SOURCE=debian")
    root = tmp_path_factory.mktemp("systemd-fleet")
    key = root / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    pis: dict[str, Pi] = {}
    try:
        pis[NAME] = start_pi(NAME, pihost_image("systemd"), key, "pi")
        pis[SYSV] = start_pi(SYSV, pihost_image("v2"), key, "root")
        yield Fleet(root, key, pis)
    finally:
        for pi in pis.values():
            docker("rm", "-f", pi.container, check=False, timeout=120)
            docker("volume", "rm", f"{pi.container}-docker", check=False)


def deploy(fleet: Fleet) -> str:
    """Both Pis in one run (in parallel, as pyinfra runs hosts)."""
    # A fleet key of this module's own (the derived host password), not the user's.
    result = fleet.pyinfra("-y", hosts=(NAME, SYSV), env={"FLEET_KEY_FILE": str(fleet.root / "fleet-key")})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    return out


def upsmon_pid(pi: Pi) -> int:
    """The host upsmon's main process (0: none): systemd's MainPID of the unit, else
    Debian's PID file (checked against /proc: the container's upsmon is a process here too)."""
    if pi.name == NAME:
        pid = int(pi.sh(f"systemctl show -p MainPID --value {UNIT}").strip())
        assert pid == 0 or pi.sh(f"cat /proc/{pid}/comm").strip() == "upsmon", pid
        return pid
    pid = int(pi.sh("cat /run/nut/upsmon.pid 2>/dev/null || echo 0").strip() or 0)
    return pid if pid and pi.sh(f"cat /proc/{pid}/comm 2>/dev/null", check=False).strip() == "upsmon" else 0


def host_logged_in(pi: Pi) -> bool:
    """upsd's LIST CLIENT for my-ups (upsc -c) holds the Pi's own upsmon: its login comes
    through the published port from the bridge's gateway, the container's own from 127.0.0.1."""
    out = pi.sh("docker exec ups-nut-smart upsc -c my-ups@127.0.0.1:3493 2>/dev/null", check=False)
    return any(line.strip() not in ("", "127.0.0.1") for line in out.splitlines())


def healthy(pi: Pi) -> bool:
    return (pi.nut() or {}).get("health") == "healthy"


def recorded(pi: Pi) -> bool:
    """The rehearsal's shutdown command (RECORD) ran."""
    return pi.sh(f"test -s {RECORD} && echo ran", check=False).strip() == "ran"


def exited(pi: Pi) -> bool:
    return upsmon_pid(pi) == 0


def fsd_cleared(pi: Pi) -> bool:
    return "event=fsd.cleared ups=my-ups" in pi.sh("docker logs ups-nut-smart 2>&1")


def test_the_rollout_runs_and_enables_the_real_unit_on_a_systemd_pi(fleet: Fleet) -> None:
    pi = fleet.pis[NAME]
    assert pi.sh("readlink /proc/1/exe").strip() == "/usr/lib/systemd/systemd"
    out = deploy(fleet)
    assert pi.sh(f"systemctl is-enabled {UNIT} nut.target").split() == ["enabled", "enabled"]
    assert pi.sh(f"systemctl is-active {UNIT}").strip() == "active"
    assert upsmon_pid(pi) > 0
    assert await_true(partial(host_logged_in, pi), 60)
    assert healthy(pi)
    before = upsmon_pid(pi)
    assert upsmon_pid(fleet.pis[SYSV]) > 0
    again = deploy(fleet)
    assert "] Success" not in again, again  # idempotent on both, the host upsmon too
    assert upsmon_pid(pi) == before
    assert f"Host upsmon ({UNIT}) running and enabled" in out, out


def test_a_changed_host_password_reaches_the_running_upsmon(fleet: Fleet) -> None:
    """The container's upsd takes the new password, and so must the upsmon already running:
    without its restart it logs in again with the old one and is refused."""
    pi = fleet.pis[NAME]
    before, container = upsmon_pid(pi), (pi.nut() or {}).get("id")
    fleet.data[NAME] = {"host_password": NEW_PASSWORD}  # (and pi-sv unchanged)
    out = deploy(fleet)
    assert NEW_PASSWORD not in out
    assert f'pi-host "{NEW_PASSWORD}" secondary' in pi.sh("cat /etc/nut/upsmon.conf")
    assert (pi.nut() or {}).get("id") != container  # a new upsd: every old login is gone
    assert upsmon_pid(pi) not in (0, before)
    # Logged in again, so with the new password (the new upsd refuses the old one).
    assert await_true(partial(host_logged_in, pi), 60), pi.sh(f"journalctl -u {UNIT} --no-pager | tail -20")
    assert healthy(pi)
    assert f"Host upsmon ({UNIT}) restarted: its files changed" in out, out


def test_a_changed_shutdown_command_is_what_the_drill_runs_and_the_next_run_restarts_upsmon(fleet: Fleet) -> None:
    """Set to a harmless recorder, as docs/reliability.md advises for a rehearsal: the running
    upsmon runs it at FSD (the Pi stays up: the stock /sbin/shutdown would power it off), then
    exits, as upsmon does after SHUTDOWNCMD. The next run starts it again, on both Pis."""
    pis = (fleet.pis[NAME], fleet.pis[SYSV])
    before = {pi.name: upsmon_pid(pi) for pi in pis}
    rehearse = {"host_shutdown_cmd": f"/bin/sh -c 'date >> {RECORD}'", "fsd_clear_after": 60}
    for pi in pis:
        fleet.data[pi.name] = {**fleet.data.get(pi.name, {}), **rehearse}
    out = deploy(fleet)
    for pi in pis:
        assert upsmon_pid(pi) not in (0, before[pi.name]), out
        assert await_true(partial(host_logged_in, pi), 60)
        assert await_true(partial(healthy, pi), 120)
        pi.sh(f"rm -f {RECORD}")
    assert f"Host upsmon ({UNIT}) restarted: its files changed" in out, out
    logs = "docker logs ups-nut-smart 2>&1"
    drill = "docker exec ups-nut-smart nut-reconcile drill"
    try:
        for pi in pis:
            pi.sh(f"{drill} low-battery")
        for pi in pis:
            ran = await_true(partial(recorded, pi), 120)
            assert ran, pi.sh(f"journalctl -u {UNIT} --no-pager | tail -20; {logs} | tail -20", check=False)
            assert await_true(partial(exited, pi), 60), pi.name  # exited after its SHUTDOWNCMD
        # Still up: the drill's shutdown was the recorder, not a poweroff of the Pi.
        assert pis[0].sh("systemctl is-system-running", check=False).strip() in ("running", "degraded")
    finally:
        for pi in pis:
            pi.sh(f"{drill} on-line")
    for pi in pis:
        assert await_true(partial(fsd_cleared, pi), 180), pi.sh(logs)
        pi.sh(f"{drill} auto")
        assert not host_logged_in(pi)  # the shutdown path is broken until upsmon runs again

    out = deploy(fleet)
    for pi in pis:
        assert upsmon_pid(pi) > 0, out
        assert await_true(partial(host_logged_in, pi), 60)
        assert await_true(partial(healthy, pi), 120)
        assert len(pi.sh(f"cat {RECORD}").splitlines()) == 1  # one shutdown, none since
    assert f"Host upsmon ({UNIT}) restarted: upsmon was not running" in out, out
    assert "Host upsmon (nut-client) running: restarted (upsmon was not running;" in out, out
    again = deploy(fleet)
    assert "] Success" not in again, again
