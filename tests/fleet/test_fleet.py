"""`pyinfra <inventory> deploy.py` against three docker-in-docker Pis over real SSH: the
image shipped by `load`, a clean second run, a one-host dry-run diff then apply, secrets
never shown, a broken image rolled back, bad data failing one host only, a Pi without
Docker, and the canary procedure. The tests build on each other, in file order."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from testbed import await_true
from testbed.docker import docker
from testbed.pis import Fleet, Pi

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

PIS = ("pi1", "pi2", "pi3")
SECRET = "fleet-secret-77"


def changed_hosts(output: str) -> set[str]:
    """Hosts on which an operation reported a change (pyinfra: `[host] Success`)."""
    return set(re.findall(r"\[(pi\d)\] Success", output))


def containers(fleet: Fleet) -> dict[str, dict[str, object] | None]:
    return {name: fleet.pis[name].nut() for name in PIS}


def test_first_deploy_ships_the_image_and_every_pi_serves_the_demo(fleet: Fleet) -> None:
    result = fleet.pyinfra("-y", env={"NUT_MONUSER_PASSWORD": SECRET})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for name in PIS:
        assert f"[{name}] Will ship image ups-nut-smart:latest" in out
        pi = fleet.pis[name]
        assert pi.upsc("ups.mfr") == "ups-nut-smart", name  # the SIMULATE demo's data
        nut = pi.nut()
        assert nut is not None and nut["health"] == "healthy"
        assert pi.sh("stat -c '%a %U' /opt/ups-nut-smart/secrets/nut_monuser_password").strip() == "600 root"
        assert pi.sh("stat -c %a /opt/ups-nut-smart/secrets").strip() == "700"
        assert pi.sh("stat -c %a /opt/ups-nut-smart/compose.yaml /opt/ups-nut-smart/.env").split() == ["644", "644"]
        # Docker's log capped (the fleet's compose.yaml), as the Pi's engine took it.
        logging = json.loads(pi.sh("docker inspect -f '{{json .HostConfig.LogConfig}}' ups-nut-smart"))
        assert logging == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}, name
    # compose v1 on pi3, v2 on pi1 and pi2: both served
    assert "docker-compose version 1." in fleet.pis["pi3"].sh("docker-compose version")


def test_secrets_are_never_in_output_env_files_or_inspect(fleet: Fleet) -> None:
    dry = fleet.pyinfra("--dry", "--diff", env={"NUT_MONUSER_PASSWORD": SECRET + "-new"})
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out
    assert SECRET not in out and "(a secret: its content is not shown)" in out
    for name in PIS:
        pi = fleet.pis[name]
        assert SECRET not in pi.sh("cat /opt/ups-nut-smart/.env /opt/ups-nut-smart/compose.yaml")
        assert SECRET not in pi.sh("docker inspect ups-nut-smart")
        assert SECRET in pi.sh("docker exec ups-nut-smart cat /opt/nut/etc/upsd.users")  # it did reach NUT


def test_a_second_run_changes_nothing_and_recreates_no_container(fleet: Fleet) -> None:
    before = containers(fleet)
    result = fleet.pyinfra("-y", env={"NUT_MONUSER_PASSWORD": SECRET})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert changed_hosts(out) == set(), out
    assert "Health gate" in out and "Will ship image" not in out  # (the image op is a noop: see -v)
    assert containers(fleet) == before  # same container IDs and start times


def test_a_one_host_change_is_previewed_then_applied_to_that_host_alone(fleet: Fleet) -> None:
    before = containers(fleet)
    fleet.data["pi2"] = {"scan_interval": 3}
    dry = fleet.pyinfra("--dry", "--diff", env={"NUT_MONUSER_PASSWORD": SECRET})
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out
    assert "[pi2] Will modify /opt/ups-nut-smart/.next/.env" in out  # staged: live with the recreate
    assert re.search(r"- SCAN_INTERVAL=2\n.*\+ SCAN_INTERVAL=3", out), out
    assert "[pi1] Will modify" not in out and "[pi3] Will modify" not in out
    assert "SCAN_INTERVAL=2" in fleet.pis["pi2"].sh("cat /opt/ups-nut-smart/.env")  # the dry run changed nothing
    assert containers(fleet) == before

    result = fleet.pyinfra("-y", env={"NUT_MONUSER_PASSWORD": SECRET})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert changed_hosts(out) == {"pi2"}
    after = containers(fleet)
    assert after["pi1"] == before["pi1"] and after["pi3"] == before["pi3"]
    assert after["pi2"] != before["pi2"] and after["pi2"] is not None and after["pi2"]["health"] == "healthy"
    assert "SCAN_INTERVAL=3" in fleet.pis["pi2"].sh("docker exec ups-nut-smart env")


def test_a_broken_image_is_rolled_back_and_the_host_keeps_serving(fleet: Fleet, broken_image: str) -> None:
    before = containers(fleet)
    fleet.data["pi3"] = {"image": broken_image}
    result = fleet.pyinfra("-y", env={"NUT_MONUSER_PASSWORD": SECRET})
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "[pi3] health gate failed" in out and "rolled back to the previous image and files: healthy again" in out
    assert "broken agent: exits at once" in out  # the failed container's last log lines
    pi3 = fleet.pis["pi3"].nut()
    assert pi3 is not None and pi3["image"] == "ups-nut-smart:latest" and pi3["health"] == "healthy"
    assert fleet.pis["pi3"].upsc("ups.mfr") == "ups-nut-smart"
    assert 'image: "ups-nut-smart:latest"' in fleet.pis["pi3"].sh("cat /opt/ups-nut-smart/compose.yaml")
    after = containers(fleet)
    assert after["pi1"] == before["pi1"] and after["pi2"] == before["pi2"]
    del fleet.data["pi3"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ups_name": "my ups"}, "host pi1: data ups_name"),
        ({"ups_name": "ups@home"}, "host pi1: data ups_name"),
        ({"nut_port": 70000}, "host pi1: data nut_port: 70000 is not a port from 1 to 65535"),
        ({"image_source": "scp"}, "host pi1: data image_source: 'scp' is not one of load, build, pull"),
        ({"scan_interval": "fast"}, "host pi1: data scan_interval"),
        ({"devices": [{"match": {"vendorid": 1309}}]}, "host pi1: data devices: device[0].match.vendorid"),
    ],
)
def test_bad_data_fails_that_host_before_anything_on_it_changes(
    fleet: Fleet, data: dict[str, object], message: str
) -> None:
    before = containers(fleet)
    files = fleet.pis["pi1"].sh("cat /opt/ups-nut-smart/compose.yaml /opt/ups-nut-smart/.env")
    fleet.data["pi1"] = data
    try:
        result = fleet.pyinfra("-y", env={"NUT_MONUSER_PASSWORD": SECRET})
    finally:
        del fleet.data["pi1"]
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert message in out
    assert "pi1" not in changed_hosts(out)
    assert fleet.pis["pi1"].sh("cat /opt/ups-nut-smart/compose.yaml /opt/ups-nut-smart/.env") == files
    assert containers(fleet) == before  # the other hosts went on: nothing to change there


def test_a_fresh_pi_without_docker_is_refused_when_install_is_off_and_set_up_when_on(fleet: Fleet) -> None:
    pi4 = fleet.pis["pi4"]
    fleet.data["pi4"] = {"install_docker": False}
    refused = fleet.pyinfra("-y", hosts=("pi4",))
    out = refused.stdout + refused.stderr
    assert refused.returncode == 1, out
    assert "host pi4: no working Docker engine with compose here, and install_docker is false" in out
    assert pi4.sh("ls /opt 2>/dev/null").strip() == ""  # nothing written

    # install_docker on (the default): Debian's docker.io and docker-compose, started by
    # systemd, then the rollout as on any Pi (as user pi, with sudo).
    del fleet.data["pi4"]
    result = fleet.pyinfra("-y", hosts=("pi4",))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert pi4.sh("systemctl is-active docker").strip() == "active"
    nut = pi4.nut()
    assert nut is not None and nut["health"] == "healthy"
    assert pi4.upsc("ups.mfr") == "ups-nut-smart"

    # Docker's own packages (docker-ce), installed and stopped: that engine is started, and
    # Debian's docker.io is never installed over it. The package is a record in dpkg's status
    # (no docker-ce .deb is at hand here); the engine behind the service name is docker.io's.
    record = (
        "\\nPackage: docker-ce\\nStatus: install ok installed\\nPriority: optional\\nSection: admin\\n"
        "Maintainer: the fleet tests\\nArchitecture: amd64\\nVersion: 5:27.0.0-1~debian.12~bookworm\\n"
        "Description: a record only\\n"
    )
    pi4.sh("cp -p /var/lib/dpkg/status /root/dpkg-status.real")
    try:
        pi4.sh(f"printf '{record}' >> /var/lib/dpkg/status && systemctl stop docker.socket docker")
        assert pi4.sh("dpkg-query -W -f='${Status}' docker-ce").strip() == "install ok installed"
        assert pi4.sh("systemctl is-active docker", check=False).strip() != "active"
        again = fleet.pyinfra("-y", hosts=("pi4",))
        out = again.stdout + again.stderr
        assert again.returncode == 0, out
        assert "Run Docker CE's engine" in out and "Install Docker (docker.io" not in out, out
        assert pi4.sh("systemctl is-active docker").strip() == "active"
        assert await_true(lambda: (pi4.nut() or {}).get("health") == "healthy", 120)
    finally:
        pi4.sh("cp -p /root/dpkg-status.real /var/lib/dpkg/status")


def test_canary_first_then_the_rest_stops_at_the_first_failure(fleet: Fleet, broken_image: str) -> None:
    before = containers(fleet)
    for name in PIS:
        fleet.data[name] = {"scan_interval": 4}
    canary = fleet.pyinfra("-y", "--limit", "canary", env={"NUT_MONUSER_PASSWORD": SECRET})
    out = canary.stdout + canary.stderr
    assert canary.returncode == 0, out
    assert changed_hosts(out) == {"pi1"}
    after_canary = containers(fleet)
    assert after_canary["pi2"] == before["pi2"] and after_canary["pi3"] == before["pi3"]

    # The rest, one host at a time, stopping at the first failure. pyinfra picks the order
    # (not the inventory's), so both remaining hosts get the broken image: whichever comes
    # first fails its gate and is rolled back, and the one after it is never touched.
    for name in ("pi2", "pi3"):
        fleet.data[name] = {"scan_interval": 4, "image": broken_image}
    rest = fleet.pyinfra("-y", "--serial", "--fail-percent", "0", env={"NUT_MONUSER_PASSWORD": SECRET})
    out = rest.stdout + rest.stderr
    assert rest.returncode == 1, out
    executed = list(dict.fromkeys(re.findall(r"\[(pi\d)\]", out.split("Beginning operation run", 1)[-1])))
    failed = [name for name in ("pi2", "pi3") if f"[{name}] health gate failed" in out]
    assert len(failed) == 1 and executed[-1] == failed[0], executed
    untouched = "pi3" if failed == ["pi2"] else "pi2"
    assert untouched not in executed
    after = containers(fleet)
    assert after[untouched] == after_canary[untouched]  # same container, not recreated
    assert "SCAN_INTERVAL=4" not in fleet.pis[untouched].sh("cat /opt/ups-nut-smart/.env")
    failed_pi = after[failed[0]]
    assert failed_pi is not None and failed_pi["health"] == "healthy" and failed_pi["image"] == "ups-nut-smart:latest"
    for name in PIS:
        fleet.data.pop(name, None)


def test_image_source_build_builds_on_the_pi(fleet: Fleet) -> None:
    pi5 = fleet.pis["pi5"]
    pi5.load("debian:bookworm-slim")  # the Dockerfile's base: no registry here
    fleet.data["pi5"] = {"image_source": "build", "image": "ups-nut-smart:built-on-pi"}
    env = {"NUT_SOURCE": "debian"}  # the offline variant: the release URL is unreachable here
    result = fleet.pyinfra("-y", hosts=("pi5",), env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    nut = pi5.nut()
    assert nut is not None and nut["image"] == "ups-nut-smart:built-on-pi" and nut["health"] == "healthy"
    assert pi5.upsc("ups.mfr") == "ups-nut-smart"
    again = fleet.pyinfra("-y", hosts=("pi5",), env=env)
    assert again.returncode == 0 and changed_hosts(again.stdout) == set(), again.stdout
    assert pi5.nut() == nut


def test_image_source_pull_pulls_a_version_from_a_registry(fleet: Fleet) -> None:
    pi6 = fleet.pis["pi6"]
    # A registry on the Pi's own loopback, serving the image the tests built.
    save = subprocess.Popen(["docker", "save", "ups-nut-smart:latest"], stdout=subprocess.PIPE)
    store = subprocess.run(
        ["docker", "exec", "-i", pi6.container, "sh", "-c", "cat > /srv/image.tar"], stdin=save.stdout, timeout=600
    )
    assert save.wait(600) == 0 and store.returncode == 0
    docker("exec", "-d", pi6.container, "python3", "/usr/local/bin/registry.py", "/srv/image.tar", "5000")
    probe = "python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:5000/v2/\")' && echo up"
    assert await_true(lambda: pi6.sh(probe, check=False).strip() == "up", 120)

    image = "127.0.0.1:5000/ups-nut-smart:1.0"
    fleet.data["pi6"] = {"image_source": "pull", "image": image}
    result = fleet.pyinfra("-y", hosts=("pi6",))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    nut = pi6.nut()
    assert nut is not None and nut["image"] == image and nut["health"] == "healthy"
    assert pi6.upsc("ups.mfr") == "ups-nut-smart"
    again = fleet.pyinfra("-y", hosts=("pi6",))
    assert again.returncode == 0 and changed_hosts(again.stdout) == set(), again.stdout
    assert pi6.nut() == nut


def test_an_image_that_does_not_ship_leaves_the_live_files_and_the_container_as_they_were(fleet: Fleet) -> None:
    """The files are staged and go live only with the recreate: a pull that fails (from a registry
    that does not answer) fails the host with its live files and container untouched,
    and the next good run puts them in place (the live files, not the staged ones, decide)."""
    pi6 = fleet.pis["pi6"]
    live = "cat /opt/ups-nut-smart/compose.yaml /opt/ups-nut-smart/.env"
    before, nut = pi6.sh(live), pi6.nut()
    good = fleet.data["pi6"]
    fleet.data["pi6"] = {**good, "image": "127.0.0.1:5999/ups-nut-smart:1.0", "tz": "America/Chicago"}
    result = fleet.pyinfra("-y", hosts=("pi6",))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert pi6.sh(live) == before and pi6.nut() == nut
    assert "America/Chicago" in pi6.sh("cat /opt/ups-nut-smart/.next/.env")  # staged, not live
    fleet.data["pi6"] = {**good, "tz": "America/Chicago"}
    fixed = fleet.pyinfra("-y", hosts=("pi6",))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "TZ=America/Chicago" in pi6.sh("cat /opt/ups-nut-smart/.env")
    assert pi6.nut() != nut


def test_a_pi_on_a_digest_reference_is_rolled_back_by_image_id(fleet: Fleet, broken_image: str) -> None:
    """Docker refuses to tag a digest reference (name@sha256:...), and needs no tag for it:
    the rollback puts the Pi back on the image it ran by ID and brings it up healthy."""
    pi6 = fleet.pis["pi6"]
    pinned = pi6.sh("docker inspect -f '{{index .RepoDigests 0}}' 127.0.0.1:5000/ups-nut-smart:1.0").strip()
    assert "@sha256:" in pinned, pinned
    good = fleet.data["pi6"]
    fleet.data["pi6"] = {**good, "image": pinned}
    on_digest = fleet.pyinfra("-y", hosts=("pi6",))
    assert on_digest.returncode == 0, on_digest.stdout + on_digest.stderr
    assert (pi6.nut() or {}).get("image") == pinned
    pi6.load(broken_image)
    fleet.data["pi6"] = {**good, "image": broken_image}
    result = fleet.pyinfra("-y", hosts=("pi6",))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "rolled back to the previous image and files: healthy again" in out, out
    nut = pi6.nut()
    assert nut is not None and nut["image"] == pinned and nut["health"] == "healthy"
    fleet.data["pi6"] = {**good, "image": pinned}


def test_a_pi_with_no_ups_passes_the_gate_with_driver_not_connected(fleet: Fleet) -> None:
    pi6 = fleet.pis["pi6"]
    fleet.data["pi6"] = {**fleet.data.get("pi6", {}), "simulate": False}
    result = fleet.pyinfra("-y", hosts=("pi6",))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "[pi6] Success" in out  # the gate ran, and passed
    assert pi6.upsc("ups.status") == "Error: Driver not connected"


RECORD = "/var/log/host-shutdowns"
LOGINS = "from reconcile.observe import upsd_client as c; print(c.clients(c.Connection('127.0.0.1', 3493), 'my-ups'))"


def logins(pi: Pi) -> int:
    """upsd's LIST CLIENT count for my-ups, asked inside the Pi's container."""
    return int(pi.sh(f'docker exec ups-nut-smart python3 -c "{LOGINS}"').strip())


def test_the_rollout_makes_each_pi_halt_itself_through_its_own_upsmon(fleet: Fleet) -> None:
    """host_shutdown (on by default): the Pi runs Debian's nut-client as a secondary of its
    container's upsd, logged in with a derived password no output shows, and the gate saw it
    logged in (the container is healthy only then)."""
    pi1 = fleet.pis["pi1"]
    assert pi1.sh("grep -c ^MODE=netclient /etc/nut/nut.conf").strip() == "1"
    assert pi1.sh("stat -c '%a %U %G' /etc/nut/upsmon.conf").strip() == "640 root nut"
    conf = pi1.sh("cat /etc/nut/upsmon.conf")
    assert re.search(r'^MONITOR my-ups@127\.0\.0\.1:3493 1 pi-host "[0-9a-f]{32}" secondary$', conf, re.M), conf
    password = re.findall(r'pi-host "([0-9a-f]{32})"', conf)[0]
    assert pi1.sh("pgrep -x upsmon >/dev/null && echo up", check=False).strip() == "up"
    # Logged in to my-ups (upsd's LIST CLIENT): the container's own upsmon and the host's.
    assert logins(pi1) == 2
    env = {"NUT_MONUSER_PASSWORD": SECRET}  # as the earlier runs gave it
    first = fleet.pyinfra("-y", hosts=("pi1",), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    again = fleet.pyinfra("-y", hosts=("pi1",), env=env)
    out = again.stdout + again.stderr
    assert again.returncode == 0 and changed_hosts(out) == set(), out  # idempotent, host side too
    assert password not in first.stdout + first.stderr + out


def test_a_low_battery_drill_halts_the_pi_power_cycles_the_ups_and_mains_back_call_fsd_off(fleet: Fleet) -> None:
    """The chain on a Pi, driven by the SIMULATE demo's drill: OB LB, the container's upsmon
    (primary) sets FSD, the Pi's own upsmon runs its (recording) SHUTDOWNCMD, the agent asks
    the UPS to cycle the power (dummy-ups has no shutdown.return: the agent says it skips
    the power cycle, and why, and sends nothing). Mains back: FSD is called off after
    fsd_clear_after, and nothing shuts down again."""
    pi1 = fleet.pis["pi1"]
    fleet.data["pi1"] = {
        **fleet.data.get("pi1", {}),
        "host_shutdown_cmd": f"/bin/sh -c 'date >> {RECORD}'",
        "fsd_clear_after": 60,  # the least the fleet takes (the hosts have halted by then)
    }
    result = fleet.pyinfra("-y", hosts=("pi1",))
    assert result.returncode == 0, result.stdout + result.stderr
    pi1.sh(f"rm -f {RECORD}")
    logs = "docker logs ups-nut-smart 2>&1"
    assert "event=ups.no_power_cycle ups=my-ups" in pi1.sh(logs)  # reported at start
    pi1.sh("docker exec ups-nut-smart nut-reconcile drill low-battery")
    try:
        assert await_true(lambda: pi1.sh(f"test -s {RECORD} && echo ran", check=False).strip() == "ran", 120), pi1.sh(
            "tail -20 /var/log/syslog 2>/dev/null; " + logs, check=False
        )
        assert pi1.upsc("ups.status").split()[0] == "FSD"
        # The simulated UPS (dummy-ups) offers no shutdown.return: the agent says so and
        # sends nothing (a UPS that can is shown in tests/faults/test_shutdown.py, on the stub).
        skipped = 'event=power_cycle.skipped ups=my-ups why="its driver offers no shutdown.return"'
        assert await_true(lambda: skipped in pi1.sh(logs), 90), pi1.sh(logs)
        assert "event=ups.power_cycle " not in pi1.sh(logs)
    finally:
        pi1.sh("docker exec ups-nut-smart nut-reconcile drill on-line")
    assert await_true(lambda: "event=fsd.cleared ups=my-ups" in pi1.sh(logs), 120), pi1.sh(logs)
    assert await_true(lambda: pi1.upsc("ups.status") == "OL CHRG", 60)
    pi1.sh("docker exec ups-nut-smart nut-reconcile drill auto")
    assert len(pi1.sh(f"cat {RECORD}").splitlines()) == 1  # one shutdown, none after FSD was called off
    # The Pi's upsmon exited after its shutdown command, as on a real halt: until it runs
    # again (the Pi booted), the shutdown path is broken, and health says so.
    says = pi1.sh("docker exec ups-nut-smart nut-reconcile health", check=False)
    assert "the host's own upsmon is not logged in to my-ups from the host" in says, says
    pi1.sh("/etc/init.d/nut-client start")
    assert await_true(lambda: pi1.nut()["health"] == "healthy", 90)  # type: ignore[index]
    assert len(pi1.sh(f"cat {RECORD}").splitlines()) == 1


def test_a_pi_whose_own_upsmon_never_logs_in_fails_the_gate(fleet: Fleet) -> None:
    """The shutdown path is part of the gate: with the host's upsmon replaced by a program
    that exits at once (its service "starts", but nothing watches the UPS), the container
    stays unhealthy (its secondary never logs in), and a change to that Pi fails it and is
    rolled back to what ran before.

    The snapshot is what runs: with config.toml edited by hand since the container was
    created, those files never ran and are not kept, and the failed gate leaves the new
    container running (never `down`). A run that changes nothing (it only starts the
    stopped container) fails the gate and rolls nothing back."""
    pi2 = fleet.pis["pi2"]
    here = "/opt/ups-nut-smart"
    fleet.data["pi2"] = {**fleet.data.get("pi2", {}), "gate_timeout": 40}  # it is to fail: no need to wait 120 s
    pi2.sh("cp -p /sbin/upsmon /sbin/upsmon.real && printf '#!/bin/sh\\nexit 0\\n' > /sbin/upsmon")
    pi2.sh("pkill -x upsmon || true")
    try:
        fleet.data["pi2"] = {**fleet.data["pi2"], "tz": "Europe/Berlin"}
        result = fleet.pyinfra("-y", hosts=("pi2",))
        out = result.stdout + result.stderr
        assert result.returncode != 0, out
        assert "health gate failed" in out, out
        assert "the host's own upsmon is not logged in to my-ups from the host" in out, out
        assert "rolled back to the previous image and files" in out, out
        assert pi2.nut() is not None and "Europe/Berlin" not in pi2.sh(f"cat {here}/.env")

        pi2.sh(f"echo '# edited by hand' >> {here}/config.toml")
        hand = fleet.pyinfra("-y", hosts=("pi2",))
        out = hand.stdout + hand.stderr
        assert hand.returncode != 0, out
        assert "the files on disk are not the ones the container was created from" in out, out
        assert "the new container is left running" in out, out
        new = pi2.nut()
        assert new is not None and "TZ=Europe/Berlin" in pi2.sh("docker exec ups-nut-smart env")
        assert "# edited by hand" not in pi2.sh(f"cat {here}/config.toml")  # the wanted files went live
        kept = pi2.sh(f"ls -A {here}/.rollback")

        pi2.sh("docker stop ups-nut-smart")
        again = fleet.pyinfra("-y", hosts=("pi2",))
        out = again.stdout + again.stderr
        assert again.returncode != 0, out
        assert "nothing changed in this run, so nothing is rolled back" in out, out
        assert (pi2.nut() or {}).get("id") == new["id"]  # started again, not recreated
        assert pi2.sh(f"ls -A {here}/.rollback") == kept  # no new snapshot either
        assert "TZ=Europe/Berlin" in pi2.sh("docker exec ups-nut-smart env")
    finally:
        pi2.sh("mv /sbin/upsmon.real /sbin/upsmon")
    fixed = fleet.pyinfra("-y", hosts=("pi2",))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert await_true(lambda: (pi2.nut() or {}).get("health") == "healthy", 120)


def test_a_nut_client_host_goes_down_first_after_its_time_on_battery_then_the_pi_on_low_battery(
    fleet: Fleet,
) -> None:
    """Group nut_clients: nas1 watches pi1's UPS over the network as a secondary with its own
    user (created on pi1's agent by the same run), and halts after shutdown_after seconds
    on battery (upssched), while the Pi waits for low battery."""
    pi1, nas1 = fleet.pis["pi1"], fleet.pis["nas1"]
    fleet.clients = {"nas1"}
    stamp = f"/bin/sh -c 'date +%s.%N >> {RECORD}'"
    # fsd_clear_after 60 (the least the fleet takes): mains back, FSD is called off within the wait below.
    fleet.data["pi1"] = {**fleet.data.get("pi1", {}), "host_shutdown_cmd": stamp, "fsd_clear_after": 60}
    fleet.data["nas1"] = {
        "ups_server": "pi1",
        "ups_server_address": pi1.address(),
        "shutdown_after": 5,
        "host_shutdown_cmd": stamp,
    }
    result = fleet.pyinfra("-y", hosts=("pi1", "nas1"))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "client-nas1" in pi1.sh("docker exec ups-nut-smart cat /opt/nut/etc/upsd.users")
    assert nas1.sh("cat /etc/nut/upssched.conf").count("START-TIMER on-battery-too-long 5") == 1
    assert await_true(lambda: logins(pi1) == 3, 60)  # the container's upsmon, the Pi's, nas1's
    assert re.findall(r'client-nas1 "([0-9a-f]{32})"', nas1.sh("cat /etc/nut/upsmon.conf"))[0] not in out
    pi1.sh(f"rm -f {RECORD}")
    nas1.sh(f"rm -f {RECORD}")
    drill = "docker exec ups-nut-smart nut-reconcile drill"
    try:
        pi1.sh(f"{drill} on-battery")
        ran = f"test -s {RECORD} && echo ran"
        assert await_true(lambda: nas1.sh(ran, check=False).strip() == "ran", 60), nas1.sh(
            "tail -30 /var/log/syslog /var/log/messages 2>/dev/null", check=False
        )
        assert pi1.sh(ran, check=False).strip() == ""  # the Pi waits for low battery
        pi1.sh(f"{drill} low-battery")
        assert await_true(lambda: pi1.sh(ran, check=False).strip() == "ran", 120)
        assert float(nas1.sh(f"head -1 {RECORD}")) < float(pi1.sh(f"head -1 {RECORD}"))
    finally:
        pi1.sh(f"{drill} on-line")
    assert await_true(lambda: pi1.upsc("ups.status") == "OL CHRG", 120)
    pi1.sh(f"{drill} auto")


def test_nothing_changes_on_a_pi_while_its_ups_is_on_battery(fleet: Fleet) -> None:
    """A recreate would drop upsd's FSD and upsmon's view of the outage: the host is
    deferred and reported, and a run after mains return does the change."""
    pi3 = fleet.pis["pi3"]
    before, env_file = pi3.nut(), pi3.sh("cat /opt/ups-nut-smart/.env")
    drill = "docker exec ups-nut-smart nut-reconcile drill"
    pi3.sh(f"{drill} on-battery")
    try:
        assert await_true(lambda: pi3.upsc("ups.status").startswith("OB"), 60)
        fleet.data["pi3"] = {**fleet.data.get("pi3", {}), "tz": "Asia/Tokyo"}
        result = fleet.pyinfra("-y", hosts=("pi3",), env={"NUT_MONUSER_PASSWORD": SECRET})
        out = result.stdout + result.stderr
        assert result.returncode != 0 and "deferred: my-ups on battery" in out, out
        assert pi3.nut() == before and pi3.sh("cat /opt/ups-nut-smart/.env") == env_file
    finally:
        pi3.sh(f"{drill} on-line")
    assert await_true(lambda: pi3.upsc("ups.status") == "OL CHRG", 60)
    pi3.sh(f"{drill} auto")
    again = fleet.pyinfra("-y", hosts=("pi3",), env={"NUT_MONUSER_PASSWORD": SECRET})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "TZ=Asia/Tokyo" in pi3.sh("cat /opt/ups-nut-smart/.env")


def test_a_rotated_password_does_not_linger_in_the_rollback_snapshot(fleet: Fleet) -> None:
    pi3 = fleet.pis["pi3"]
    rotated = SECRET + "-rotated"
    result = fleet.pyinfra("-y", hosts=("pi3",), env={"NUT_MONUSER_PASSWORD": rotated})
    assert result.returncode == 0, result.stdout + result.stderr
    assert pi3.sh("ls -A /opt/ups-nut-smart/.rollback/secrets 2>/dev/null || true").strip() == ""
    assert SECRET not in pi3.sh("cat /opt/ups-nut-smart/.rollback/* 2>/dev/null || true")
    assert rotated in pi3.sh("cat /opt/ups-nut-smart/secrets/nut_monuser_password")
    # The Quick start's volume names: a Pi moved to the fleet keeps its names and passwords.
    assert {"ups-nut-agent", "ups-nut-logs"} <= set(pi3.sh("docker volume ls -q").split())


def test_metrics_port_turns_on_the_pis_metrics_on_its_loopback_and_metrics_listen_opens_them(fleet: Fleet) -> None:
    """Host data metrics_port: METRICS_LISTEN in the Pi's env file and the port published
    on the Pi's loopback only; with metrics_listen = 0.0.0.0, on its other addresses too,
    so that Prometheus reaches /metrics at <pi>:<port>."""
    pi3 = fleet.pis["pi3"]
    fleet.data["pi3"] = {**fleet.data.get("pi3", {}), "metrics_port": 9199}
    result = fleet.pyinfra("-y", hosts=("pi3",), env={"NUT_MONUSER_PASSWORD": SECRET})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "METRICS_LISTEN=0.0.0.0:9199" in pi3.sh("cat /opt/ups-nut-smart/.env")
    assert '- "127.0.0.1:9199:9199"' in pi3.sh("cat /opt/ups-nut-smart/compose.yaml")
    lan = pi3.sh("hostname -i").split()[0]  # the Pi's address on its network (not loopback)

    def scrape(address: str) -> str:
        get = f"u.urlopen('http://{address}:9199/metrics', timeout=5).read().decode()"
        return pi3.sh(f'python3 -c "import urllib.request as u; print({get})" 2>&1', check=False)

    series = 'network_ups_tools_battery_charge{ups="my-ups"}'
    assert await_true(lambda: series in scrape("127.0.0.1"), 60), scrape("127.0.0.1")
    assert "Connection refused" in scrape(lan), scrape(lan)  # loopback only
    fleet.data["pi3"] = {**fleet.data["pi3"], "metrics_listen": "0.0.0.0"}
    result = fleet.pyinfra("-y", hosts=("pi3",), env={"NUT_MONUSER_PASSWORD": SECRET})
    assert result.returncode == 0, result.stdout + result.stderr
    assert await_true(lambda: series in scrape(lan), 60), scrape(lan)


NOTIFY_SECRET = "fleet-notify-s3cret-token"
MQTT_SECRET = "fleet-mqtt-s3cret"


def test_notify_and_mqtt_reach_the_agent_as_docker_secrets_and_messages_name_the_pi(fleet: Fleet) -> None:
    """Host data notify_urls, notify_events, mqtt_url: the URLs (tokens, a password) as Docker
    secrets files, never in the output, the env file, compose.yaml, `docker inspect` or the
    agent's log; NOTIFY_EVENTS and HOST_NAME in its env. FLEET_FILE_SD: the deploy writes
    Prometheus's targets. Dropped again, the secrets go, and a second run changes nothing."""
    pi3 = fleet.pis["pi3"]
    here = "/opt/ups-nut-smart"
    before = fleet.data.get("pi3", {})
    urls = [f"json://127.0.0.1:9/{NOTIFY_SECRET}", "json://127.0.0.1:9/second"]  # port 9: nothing listens
    fleet.data["pi3"] = {
        **before,
        "metrics_port": 9199,
        "notify_urls": urls,
        "notify_events": "default, -held",
        "mqtt_url": f"mqtt://ha:{MQTT_SECRET}@127.0.0.1:1883",
    }
    env = {"NUT_MONUSER_PASSWORD": SECRET}
    dry = fleet.pyinfra("--dry", "--diff", hosts=("pi3",), env=env)
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out
    assert f"Will create {here}/.next/secrets/notify_urls (a secret: its content is not shown)" in out, out
    assert f"Will create {here}/.next/secrets/mqtt_url (a secret: its content is not shown)" in out, out
    assert "+ NOTIFY_EVENTS=default,-held" in out, out

    targets = fleet.root / "prometheus" / "targets.json"
    result = fleet.pyinfra("-y", hosts=("pi3",), env={**env, "FLEET_FILE_SD": str(targets)})
    out += result.stdout + result.stderr
    assert result.returncode == 0, out
    assert NOTIFY_SECRET not in out and MQTT_SECRET not in out
    seen = pi3.sh("docker exec ups-nut-smart env")
    assert "HOST_NAME=pi3" in seen and "NOTIFY_EVENTS=default,-held" in seen
    mounted = "stat -c '%a %U' /run/secrets/notify_urls /run/secrets/mqtt_url"
    assert pi3.sh(f'docker exec ups-nut-smart sh -c "{mounted}"').splitlines() == ["600 root", "600 root"]
    assert pi3.sh("docker exec ups-nut-smart cat /run/secrets/notify_urls").splitlines() == urls
    assert MQTT_SECRET in pi3.sh("docker exec ups-nut-smart cat /run/secrets/mqtt_url")
    logs = "docker logs ups-nut-smart 2>&1"
    for where in (f"cat {here}/.env {here}/compose.yaml", "docker inspect ups-nut-smart", logs):
        shown = pi3.sh(where)
        assert NOTIFY_SECRET not in shown and MQTT_SECRET not in shown, where
    says = json.loads(pi3.sh("docker exec ups-nut-smart nut-reconcile status --json"))
    assert says["agent"]["host_name"] == "pi3"  # messages name the Pi, not the container's ID
    assert json.loads(targets.read_text()) == [
        {"targets": ["127.0.0.1:9199"], "labels": {"host": "pi3", "__meta_fleet_groups": ",hosts,pis,"}}
    ]

    fleet.data["pi3"] = {**before, "metrics_port": 9199}
    dropped = fleet.pyinfra("-y", hosts=("pi3",), env=env)
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert "NOTIFY_EVENTS" not in pi3.sh("docker exec ups-nut-smart env")
    assert pi3.sh("docker exec ups-nut-smart ls /run/secrets").split() == ["nut_host_password", "nut_monuser_password"]
    again = fleet.pyinfra("-y", hosts=("pi3",), env=env)
    assert again.returncode == 0 and changed_hosts(again.stdout + again.stderr) == set(), again.stdout


def status_json(fleet: Fleet) -> tuple[int, dict[str, Any]]:
    result = fleet.status("--json")
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def by_host(payload: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in payload["rows"]:
        out.setdefault(row["host"], []).append(row)
    return out


def test_the_fleet_status_shows_each_pis_ups_and_one_not_running_fails_the_command(fleet: Fleet) -> None:
    """`python -m fleet.status` and `pyinfra -y ... fleet/status.py`: a row per Pi and UPS
    (the demo's my-ups on line, its charge, the agent's and NUT's versions, the shutdown path
    armed); a Pi whose own upsmon is stopped is not armed; a Pi whose container is stopped
    is a row saying so, and the command exits 1."""
    # After an earlier test's low battery, a Pi's own upsmon (and a nut_clients host's, which
    # its Pi expects logged in) has run its SHUTDOWNCMD and exited, as on a real halt (that
    # Pi is rightly not armed): start it, as its boot would.
    for name in sorted({*PIS, *fleet.clients}):
        fleet.pis[name].sh("/etc/init.d/nut-client start >/dev/null 2>&1 || true")

    def armed() -> bool:
        rc, payload = status_json(fleet)
        return rc == 0 and all(row["armed"] for row in payload["rows"])

    assert await_true(armed, 90), status_json(fleet)
    rc, payload = status_json(fleet)
    assert rc == 0 and payload["unreadable"] == [], payload
    rows = by_host(payload)
    assert sorted(rows) == list(PIS)
    for name in PIS:
        (row,) = rows[name]
        assert (row["ups"], row["state"], row["status"]) == ("my-ups", "ok", "OL CHRG"), row
        assert isinstance(row["charge"], float) and 0 <= row["charge"] <= 100, row
        assert (row["agent"], row["nut"], row["armed"], row["error"]) == ("0.1.0", "2.8.0", True, None), row

    table = fleet.status()
    assert table.returncode == 0, table.stdout + table.stderr
    assert table.stdout.splitlines()[0].split() == [
        "HOST", "UPS", "STATUS", "CHARGE", "RUNTIME", "LAST", "EVENT", "HEALS", "ARMED", "AGENT", "NUT",
    ]  # fmt: skip
    for name in PIS:
        line = rf"^{name}\s+my-ups\s+OL CHRG\s+[0-9.]+%\s+\S+\s+.+\s+\d+\s+yes\s+0\.1\.0\s+2\.8\.0$"
        assert re.search(line, table.stdout, re.M), table.stdout
    deployed = fleet.pyinfra("-y", deploy="fleet/status.py")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert deployed.stdout.splitlines()[0] == table.stdout.splitlines()[0]
    assert len(deployed.stdout.splitlines()) == len(table.stdout.splitlines()), deployed.stdout
    as_json = fleet.pyinfra("-y", deploy="fleet/status.py", env={"STATUS_FORMAT": "json"})
    assert as_json.returncode == 0 and sorted(by_host(json.loads(as_json.stdout))) == list(PIS), as_json.stdout

    # Prometheus's targets: the Pis with metrics_port published beyond their loopback (as
    # far as these tests set it).
    targets = fleet.root / "status-targets.json"
    written = fleet.status("--file-sd", str(targets))
    assert written.returncode == 0 and f"{targets}: written" in written.stderr, written.stderr
    given = {name: fleet.data.get(name, {}) for name in PIS}
    want = sorted(name for name, d in given.items() if d.get("metrics_port") and d.get("metrics_listen") == "0.0.0.0")
    assert [t["labels"]["host"] for t in json.loads(targets.read_text())] == want
    unchanged = fleet.status("--file-sd", str(targets))
    assert f"{targets}: unchanged" in unchanged.stderr, unchanged.stderr

    pi1 = fleet.pis["pi1"]
    pi1.sh("/etc/init.d/nut-client stop")
    try:
        rc, payload = status_json(fleet)
        (row,) = by_host(payload)["pi1"]
        assert rc == 0 and row["armed"] is False, row
        assert "the Pi's own upsmon (nut-client) is stopped" in row["armed_why"], row
        assert "pi1: shutdown path not armed: " in fleet.status().stdout
    finally:
        pi1.sh("/etc/init.d/nut-client start")
    assert await_true(lambda: by_host(status_json(fleet)[1])["pi1"][0]["armed"] is True, 60)

    pi2 = fleet.pis["pi2"]
    pi2.sh("docker stop ups-nut-smart")
    try:
        rc, payload = status_json(fleet)
        assert rc == 1 and payload["unreadable"] == ["pi2"], payload
        rows = by_host(payload)
        assert [(r["ups"], r["error"]) for r in rows["pi2"]] == [("-", "container not running (exited)")]
        assert all(rows[name][0]["status"] == "OL CHRG" for name in ("pi1", "pi3"))  # the others still read
        table = fleet.status()
        assert table.returncode == 1
        assert re.search(r"^pi2\s+-\s+could not be read: container not running \(exited\)$", table.stdout, re.M)
        deployed = fleet.pyinfra("-y", deploy="fleet/status.py")
        out = deployed.stdout + deployed.stderr
        assert deployed.returncode == 1 and "[pi2] host pi2: could not be read: container not running" in out, out
    finally:
        pi2.sh("docker start ups-nut-smart")
    assert await_true(lambda: (pi2.nut() or {}).get("health") == "healthy", 120)
