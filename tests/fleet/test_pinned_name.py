"""A Pi whose [[device]] rule pins its UPS's name, as the example inventory's pi-cabin.lan
does (issue 26, item 1), deployed by `pyinfra <inventory> deploy.py` over real SSH to a
docker-in-docker Pi: its own upsmon watches the pinned name (host_ups), not the
placeholder ups_name, and is logged in to it. The UPS is the SIMULATE demo's, which takes
the name a rule for it pins (reconcile/simulate.py)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest

from reconcile.simulate import PRODUCTID, VENDORID
from testbed import await_true
from testbed.docker import docker
from testbed.images import TARGETS
from testbed.pis import Fleet, Pi, pihost_image, start_pi
from tests.container.conftest import IMAGE, build
from tests.fleet.conftest import _engine_or_skip

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

PI = "cabin"  # a Pi of this module's own: not one of the `fleet` fixture's pi1..pi6
NAS = "cabin-nas"  # a nut_clients host on the Pi's UPS
PINNED = "cabin-ups"


@pytest.fixture(scope="module")
def cabin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One fresh Pi (compose v2, SSH as pi with sudo), a host for group nut_clients (SSH as
    root), and the image built from this tree:
    the agent on the Pi must read the [shutdown] keys this tree's rollout writes."""
    _engine_or_skip()
    build(IMAGE, TARGETS["amd64"], "--build-arg", "NUT_SOURCE=debian")
    root = tmp_path_factory.mktemp("pinned")
    key = root / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    image = pihost_image("v2")
    pis: dict[str, Pi] = {}
    try:
        pis[PI] = start_pi(PI, image, key, "pi")
        pis[NAS] = start_pi(NAS, image, key, "root")
        yield Fleet(root, key, pis)
    finally:
        for pi in pis.values():
            docker("rm", "-f", pi.container, check=False, timeout=120)
            docker("volume", "rm", f"{pi.container}-docker", check=False)


def logins(pi: Pi, ups: str) -> list[str]:
    """upsd's LIST CLIENT for `ups` (upsc -c), asked inside the Pi's container: one address a login."""
    out = pi.sh(f"docker exec ups-nut-smart upsc -c {ups}@127.0.0.1:3493 2>&1", check=False)
    return sorted(line.strip() for line in out.splitlines() if re.fullmatch(r"[0-9a-f.:]+", line.strip()))


def test_a_pinned_name_pi_watches_its_pinned_ups_and_its_upsmon_logs_in_to_it(cabin: Fleet) -> None:
    pi = cabin.pis[PI]
    cabin.data[PI] = {"devices": [{"match": {"vendorid": VENDORID, "productid": PRODUCTID}, "name": PINNED}]}
    result = cabin.pyinfra("-y", hosts=(PI,))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out  # the health gate passed: the Pi's upsmon is logged in
    conf = pi.sh("cat /etc/nut/upsmon.conf")
    assert re.findall(r"^MONITOR (\S+) 1 pi-host ", conf, re.M) == [f"{PINNED}@127.0.0.1:3493"], conf
    assert "my-ups" not in conf  # the placeholder ups_name is watched by no one
    toml = pi.sh("cat /opt/ups-nut-smart/config.toml")
    assert f'host_ups = "{PINNED}"' in toml and "expect_secondaries" not in toml, toml
    # The UPS is served by its pinned name (UPS_NAME stays a placeholder, "Driver not connected").
    served = pi.sh("docker exec ups-nut-smart upsc -l 127.0.0.1:3493 2>&1", check=False)
    assert PINNED in served.split(), served
    # Logged in to it: the container's own upsmon (from its loopback) and the Pi's (through
    # Docker's published port: another address). The Pi's own is the one that goes with it.
    assert await_true(lambda: len(logins(pi, PINNED)) == 2, 60), logins(pi, PINNED)
    ours = [a for a in logins(pi, PINNED) if a != "127.0.0.1"]
    assert len(ours) == 1, logins(pi, PINNED)
    assert ours[0] not in logins(pi, "my-ups"), logins(pi, "my-ups")  # the placeholder: not watched by the Pi
    pi.sh("/etc/init.d/nut-client stop")
    try:
        assert await_true(lambda: logins(pi, PINNED) == ["127.0.0.1"], 60), logins(pi, PINNED)
    finally:
        pi.sh("/etc/init.d/nut-client start")
    assert await_true(lambda: logins(pi, PINNED) == sorted(["127.0.0.1", *ours]), 60), logins(pi, PINNED)
    again = cabin.pyinfra("-y", hosts=(PI,))
    assert again.returncode == 0 and f"[{PI}] Success" not in again.stdout + again.stderr  # nothing to change


def test_nut_listen_on_one_lan_address_points_the_pis_upsmon_there_and_it_logs_in(cabin: Fleet) -> None:
    """docs/security.md's advice, upsd published on the Pi's LAN address only: the Pi's own
    upsmon dials that address (the loopback would not answer), and its agent expects the
    login from there (Docker's DNAT of a local connection keeps the source address)."""
    pi = cabin.pis[PI]
    address = pi.address()  # the Pi's address on its LAN (the outer engine's bridge)
    cabin.data[PI] = {**cabin.data[PI], "nut_listen": address}
    result = cabin.pyinfra("-y", hosts=(PI,))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out  # the gate passed: logged in from where it was expected
    conf = pi.sh("cat /etc/nut/upsmon.conf")
    assert re.findall(r"^MONITOR (\S+) 1 pi-host ", conf, re.M) == [f"{PINNED}@{address}:3493"], conf
    assert pi.sh("docker port ups-nut-smart 3493").split() == [f"{address}:3493"]
    assert f'from = ["{address}"]' in pi.sh("cat /opt/ups-nut-smart/config.toml")
    assert await_true(lambda: address in logins(pi, PINNED), 60), logins(pi, PINNED)


def test_a_client_watches_the_pinned_name_and_a_typo_in_its_ups_server_stops_its_pi_unchanged(cabin: Fleet) -> None:
    """A nut_clients host watches its Pi's host_ups by default. Then its ups_server is
    mistyped: it fails with a clear line, and so does its Pi, before anything is written
    there (the Pi would have been redeployed without that host's user, and the host that
    was protected a minute ago could no longer log in)."""
    pi, nas = cabin.pis[PI], cabin.pis[NAS]
    cabin.clients = {NAS}
    cabin.data[NAS] = {"ups_server": PI, "ups_server_address": pi.address(), "nut_address": nas.address()}
    first = cabin.pyinfra("-y", hosts=(PI, NAS))
    assert first.returncode == 0, first.stdout + first.stderr
    conf = nas.sh("cat /etc/nut/upsmon.conf")
    assert re.findall(r"^MONITOR (\S+) 1 ", conf, re.M) == [f"{PINNED}@{pi.address()}:3493"], conf
    assert await_true(lambda: nas.address() in logins(pi, PINNED), 60), logins(pi, PINNED)
    here = "/opt/ups-nut-smart"
    before = (pi.sh(f"cat {here}/config.toml"), pi.sh(f"ls -A {here}/secrets"), (pi.nut() or {}).get("id"))
    assert f"client-{NAS}" in before[0]

    cabin.data[NAS] = {**cabin.data[NAS], "ups_server": "cabin-typo"}
    typo = cabin.pyinfra("-y", hosts=(PI, NAS))
    out = typo.stdout + typo.stderr
    assert typo.returncode != 0, out
    said = f"host {NAS}: data ups_server: 'cabin-typo' is not a host of this inventory"
    assert said in out, out
    assert f"host {PI}: data nut_clients: {said}" in out and f"{PI} serves it now" in out, out
    after = (pi.sh(f"cat {here}/config.toml"), pi.sh(f"ls -A {here}/secrets"), (pi.nut() or {}).get("id"))
    assert after == before  # nothing written, nothing recreated
    assert pi.sh(f"cat {here}/.next/config.toml") == before[0]  # not even staged
    assert nas.address() in logins(pi, PINNED)  # still protected


RECORD = "/var/log/host-shutdowns"


def status(pi: Pi) -> str:
    """upsc's ups.status of the pinned name, asked inside the Pi's container (not its SSL notice)."""
    out = pi.sh(f"docker exec ups-nut-smart upsc {PINNED}@127.0.0.1:3493 ups.status 2>&1", check=False)
    return "\n".join(line for line in out.splitlines() if "Init SSL" not in line).strip()


def test_a_low_battery_drill_on_the_pinned_name_halts_the_client_and_the_pi_and_mains_back_call_fsd_off(
    cabin: Fleet,
) -> None:
    """pi-cabin.lan end to end: the drill puts cabin-ups (the pinned name) on low battery,
    the container's upsmon sets FSD on it, and both its secondaries, the Pi's own upsmon and
    the nut_clients host's, run their (recording) SHUTDOWNCMD. Mains back: the agent calls
    FSD off on cabin-ups after fsd_clear_after."""
    pi, nas = cabin.pis[PI], cabin.pis[NAS]
    stamp = f"/bin/sh -c 'date +%s.%N >> {RECORD}'"
    cabin.clients = {NAS}
    # fsd_clear_after 60: the least the fleet takes (the hosts have halted by then).
    cabin.data[PI] = {**cabin.data[PI], "host_shutdown_cmd": stamp, "fsd_clear_after": 60}
    cabin.data[NAS] = {  # the previous test left a mistyped ups_server
        "ups_server": PI,
        "ups_server_address": pi.address(),
        "nut_address": nas.address(),
        "host_shutdown_cmd": stamp,
    }
    result = cabin.pyinfra("-y", hosts=(PI, NAS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert await_true(lambda: nas.address() in logins(pi, PINNED), 60), logins(pi, PINNED)
    for host in (pi, nas):
        host.sh(f"rm -f {RECORD}")
    logs = "docker logs ups-nut-smart 2>&1"
    ran = f"test -s {RECORD} && echo ran"
    drill = "docker exec ups-nut-smart nut-reconcile drill"
    pi.sh(f"{drill} low-battery")
    try:
        assert await_true(lambda: pi.sh(ran, check=False).strip() == "ran", 120), pi.sh(logs)
        assert await_true(lambda: nas.sh(ran, check=False).strip() == "ran", 60), nas.sh(
            "tail -30 /var/log/syslog /var/log/messages 2>/dev/null", check=False
        )
        assert status(pi).split()[0] == "FSD", status(pi)
        pi.sh(f"{drill} on-line")
        assert await_true(lambda: f"event=fsd.cleared ups={PINNED}" in pi.sh(logs), 120), pi.sh(logs)
        assert await_true(lambda: status(pi) == "OL CHRG", 60), status(pi)
        for host in (pi, nas):  # one shutdown each, none after FSD was called off
            assert len(host.sh(f"cat {RECORD}").splitlines()) == 1, host.name
    finally:
        pi.sh(f"{drill} auto", check=False)
        # Their upsmon exited after the shutdown command, as on a real halt: run it again.
        for host in (pi, nas):
            host.sh("/etc/init.d/nut-client start", check=False)
    assert await_true(lambda: (pi.nut() or {}).get("health") == "healthy", 90), pi.sh(logs)
    assert await_true(lambda: nas.address() in logins(pi, PINNED), 60), logins(pi, PINNED)
