"""A fleet run never leaves a Pi half-changed (issue 26): `compose up` failing (the new
NUT port taken by another listener on the Pi) puts the previous files back, the host's
own nut.conf and upsmon.conf too, and the previous container serves again on them; a
failed gate puts the host's files back and its upsmon runs on them. Two docker-in-docker
Pis of this file's own, reached by pyinfra's real SSH connector: compose v2 as root, and
bookworm's compose 1.29 as `pi` with sudo. The tests build on each other, in file order."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from functools import partial

import pytest

from testbed import await_true
from testbed.docker import docker
from testbed.pis import Fleet, Pi, pihost_image, start_pi
from tests.container.conftest import IMAGE, build
from tests.fleet.conftest import _engine_or_skip

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

PIS = ("rb-v2", "rb-v1")
HERE = "/opt/ups-nut-smart"
TAKEN = 3494  # the new nut_port, held by another listener on the Pi
# What must come out of a failed run byte for byte (digests, so no secret is printed on a
# failure), with modes and owners: the project's files and the host's own NUT files.
LIVE = (
    f"cd {HERE} && sha256sum compose.yaml .env config.toml secrets/* /etc/nut/nut.conf /etc/nut/upsmon.conf"
    f" && stat -c '%a %U %G %n' compose.yaml .env config.toml secrets secrets/* /etc/nut/nut.conf /etc/nut/upsmon.conf"
)
LISTENER = (
    "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    f"s.bind(('0.0.0.0', {TAKEN})); s.listen(); time.sleep(3600)"
)
LISTENER_PID = "/run/rollback-test-listener.pid"
PROBE = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {TAKEN}), 5)\" && echo taken"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    _engine_or_skip()
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        from testbed.images import TARGETS

        build(IMAGE, TARGETS["amd64"], "--build-arg", "NUT_SOURCE=debian")
    root = tmp_path_factory.mktemp("rollback-fleet")
    key = root / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    pis: dict[str, Pi] = {}
    try:
        pis["rb-v2"] = start_pi("rb-v2", pihost_image("v2"), key, "root")
        pis["rb-v1"] = start_pi("rb-v1", pihost_image("v1"), key, "pi")
        yield Fleet(root, key, pis)
    finally:
        for pi in pis.values():
            docker("rm", "-f", pi.container, check=False, timeout=120)
            docker("volume", "rm", f"{pi.container}-docker", check=False)


def taken(pi: Pi) -> bool:
    return pi.sh(PROBE, check=False).strip() == "taken"


def free(pi: Pi) -> bool:
    return not taken(pi)


def upsc(pi: Pi, port: int) -> str:
    return pi.upsc("ups.mfr", port=port)


def test_the_first_deploy_serves_on_both_pis(fleet: Fleet) -> None:
    result = fleet.pyinfra("-y", hosts=PIS)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for name in PIS:
        pi = fleet.pis[name]
        assert upsc(pi, 3493) == "ups-nut-smart", name
        assert (pi.nut() or {}).get("health") == "healthy", name
        assert "MONITOR my-ups@127.0.0.1:3493 " in pi.sh("cat /etc/nut/upsmon.conf"), name
    assert "docker-compose version 1." in fleet.pis["rb-v1"].sh("docker-compose version")


def test_compose_up_failing_puts_the_previous_files_back_and_the_previous_container_serves(fleet: Fleet) -> None:
    """The run moves nut_port to a port another listener holds: the files go live, compose
    recreates the container, and its start fails (Docker cannot bind the port). The same
    command puts the previous compose.yaml, .env, config.toml, secrets and the host's
    upsmon.conf (its MONITOR names the port) back, byte for byte, and the previous container
    serves again on the old port; the host's upsmon, restarted on its old file, is logged in
    (the container is healthy only then). A run after the port is free does the change."""
    before, nuts = {}, {}
    for name in PIS:
        pi = fleet.pis[name]
        before[name], nuts[name] = pi.sh(LIVE), pi.nut()
        docker("exec", "-d", pi.container, "sh", "-c", f'echo $$ > {LISTENER_PID}; exec python3 -c "{LISTENER}"')
        assert await_true(partial(taken, pi), 30)
        fleet.data[name] = {"nut_port": TAKEN, "tz": "Europe/Paris"}
    result = fleet.pyinfra("-y", hosts=PIS)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    for name in PIS:
        pi = fleet.pis[name]
        said = [line.strip() for line in out.splitlines() if line.strip().startswith(f"[{name}] compose up failed")]
        assert said and "address already in use" in said[0], out
        assert "the previous compose.yaml, .env, config.toml and secrets are back" in said[0], said
        assert "the host's own NUT files are as before" in said[0], said
        assert "the previous container runs on them: healthy" in said[0], said
        assert pi.sh(LIVE) == before[name], name  # every byte, mode and owner as before
        nut = pi.nut()
        assert nut is not None and nut["health"] == "healthy" and nut["image"] == (nuts[name] or {}).get("image")
        assert upsc(pi, 3493) == "ups-nut-smart", name  # serving, on the old port
        assert "TZ=UTC" in pi.sh("docker exec ups-nut-smart env"), name  # on the old files
        # .next/ is the live files again: the next run's --dry --diff shows the whole change.
        assert pi.sh(f"cd {HERE} && cat .next/.env .next/config.toml") == pi.sh(f"cd {HERE} && cat .env config.toml")
        assert pi.sh(f"test -e {HERE}/.previous && echo left || true").strip() == "", name  # nothing left aside
        # Only one container of the project is left: none created or stopped beside it.
        assert len(pi.sh("docker ps -aq --filter label=com.docker.compose.project=ups-nut-smart").split()) == 1

    for name in PIS:
        fleet.pis[name].sh(f"kill $(cat {LISTENER_PID})")
        assert await_true(partial(free, fleet.pis[name]), 30)
    fixed = fleet.pyinfra("-y", hosts=PIS)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    for name in PIS:
        pi = fleet.pis[name]
        assert upsc(pi, TAKEN) == "ups-nut-smart", name
        assert f"MONITOR my-ups@127.0.0.1:{TAKEN} " in pi.sh("cat /etc/nut/upsmon.conf"), name
        assert "TZ=Europe/Paris" in pi.sh("docker exec ups-nut-smart env"), name


def test_a_failed_gate_puts_the_hosts_own_files_back_and_its_upsmon_runs_on_them(
    fleet: Fleet, broken_image: str
) -> None:
    """A new host password (the host's upsmon.conf and the container's secret both change)
    with an image that exits at once: the gate fails, and the rollback puts the previous
    image and files back, the host's upsmon.conf too, and restarts the host's upsmon on it.
    Healthy again means the host's upsmon logged in to the previous container with the
    previous password: with the new file still live, it could not."""
    pi = fleet.pis["rb-v2"]
    password = "rollback-host-pass-4242"
    before, nut = pi.sh(LIVE), pi.nut()
    good = fleet.data.get("rb-v2", {})
    fleet.data["rb-v2"] = {**good, "host_password": password, "image": broken_image}
    try:
        result = fleet.pyinfra("-y", hosts=("rb-v2",))
    finally:
        fleet.data["rb-v2"] = good
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "[rb-v2] health gate failed" in out, out
    assert "rolled back to the previous image and files: healthy again" in out, out
    assert "putting back the host's own files failed" not in out, out
    assert password not in out
    assert pi.sh(LIVE) == before
    assert password not in pi.sh("cat /etc/nut/upsmon.conf")
    after = pi.nut()
    assert after is not None and nut is not None and after["image"] == nut["image"] and after["health"] == "healthy"
    # The Pi is as its data says again: a run changes nothing there (no file, no restart).
    again = fleet.pyinfra("-y", hosts=("rb-v2",))
    out = again.stdout + again.stderr
    assert again.returncode == 0 and "[rb-v2] Success" not in out, out
