"""`pyinfra <inventory> deploy.py` against three docker-in-docker Pis over real SSH: the
image shipped by `load`, a clean second run, a one-host dry-run diff then apply, secrets
never shown, a broken image rolled back, bad data failing one host only, a Pi without
Docker, and the canary procedure. The tests build on each other, in file order."""

from __future__ import annotations

import re
import subprocess

import pytest

from testbed import await_true
from testbed.docker import docker
from testbed.pis import Fleet

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
    assert "[pi2] Will modify /opt/ups-nut-smart/.env" in out
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


def test_a_pi_with_no_ups_passes_the_gate_with_driver_not_connected(fleet: Fleet) -> None:
    pi6 = fleet.pis["pi6"]
    fleet.data["pi6"] = {**fleet.data.get("pi6", {}), "simulate": False}
    result = fleet.pyinfra("-y", hosts=("pi6",))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "[pi6] Success" in out  # the gate ran, and passed
    assert pi6.upsc("ups.status") == "Error: Driver not connected"
