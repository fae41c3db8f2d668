"""`health` in the container tells the host's own upsmon from any other login by its
address: on the bridge network, the host's upsmon dialling the published port on
127.0.0.1 arrives through Docker's proxy from the bridge's gateway (the container's
default route), while a client elsewhere (here a NAS: NUT's upsmon in a second container
on the same bridge) keeps its own address. Real engine, real upsmons on both sides.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import await_true
from testbed.docker import SIM_ENV, SIM_MOUNT, container_sim, docker, run_container
from testbed.nut import free_port

pytestmark = pytest.mark.docker

AWAIT = 60.0
PASSWORD = "nas-login-pw"
SECONDARIES = f"""
[users.nas]
password = "{PASSWORD}"

[[shutdown.secondary]]
name = "pi-host"
ups = "my-ups"
from = "host"

[[shutdown.secondary]]
name = "nas"
ups = "my-ups"
"""


def logins(name: str) -> list[str]:
    """upsd's LIST CLIENT my-ups, asked inside the container."""
    ask = (
        "from reconcile.observe import upsd_client as c; "
        "print(' '.join(c.logins(c.Connection('127.0.0.1', 3493), 'my-ups')))"
    )
    result = docker("exec", name, "python3", "-c", ask, check=False)
    return result.stdout.split() if result.returncode == 0 else []


def health(name: str) -> tuple[int, str]:
    result = docker("exec", name, "nut-reconcile", "health", check=False)
    return result.returncode, result.stdout + result.stderr


def address(name: str, field: str) -> str:
    return docker(
        "inspect", "-f", f"{{{{range .NetworkSettings.Networks}}}}{{{{.{field}}}}}{{{{end}}}}", name
    ).stdout.strip()


@pytest.fixture
def host_upsmon(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_the_hosts_upsmon_through_the_published_port_is_known_by_the_gateway_address(
    image: str, container_name: str, tmp_path: Path, host_upsmon: list[subprocess.Popen[bytes]]
) -> None:
    container_sim(tmp_path).plug("1-1")
    (tmp_path / "config.toml").write_text((tmp_path / "config.toml").read_text() + SECONDARIES)
    os.chmod(tmp_path, 0o755)
    port = free_port()
    run_container(image, container_name, port, "-v", f"{tmp_path}:{SIM_MOUNT}", *SIM_ENV)
    assert await_true(lambda: logins(container_name) == ["127.0.0.1"], AWAIT), docker("logs", container_name).stdout
    gateway, agent_ip = address(container_name, "Gateway"), address(container_name, "IPAddress")

    # A NAS on the bridge, straight to the container's address: not the host.
    nas = f"{container_name}-nas"
    docker("rm", "-f", nas, check=False)
    conf = f"MONITOR my-ups@{agent_ip}:3493 1 nas {PASSWORD} secondary\\nSHUTDOWNCMD /bin/true\\nPOLLFREQ 1\\n"
    script = f'printf "{conf}" > /tmp/upsmon.conf && chmod 600 /tmp/upsmon.conf && NUT_CONFPATH=/tmp exec upsmon -F'
    try:
        docker("run", "-d", "--name", nas, "--entrypoint", "sh", image, "-c", script)
        nas_ip = address(nas, "IPAddress")
        assert nas_ip != gateway
        assert await_true(lambda: nas_ip in logins(container_name), AWAIT), docker("logs", nas).stdout
        code, text = health(container_name)
        assert code == 1, text
        assert f"pi-host: the host's own upsmon is not logged in to my-ups from the host ({gateway}, " in text, text
        assert "nas is not" not in text, text

        # The host's own upsmon, to the published port on 127.0.0.1 (as the Pi's).
        state = tmp_path / "host-upsmon"
        state.mkdir()
        (state / "upsmon.conf").write_text(
            f'MONITOR my-ups@127.0.0.1:{port} 1 nas {PASSWORD} secondary\nSHUTDOWNCMD "/bin/true"\nPOLLFREQ 1\n'
        )
        os.chmod(state / "upsmon.conf", 0o600)
        env = {**os.environ, "NUT_CONFPATH": str(state), "NUT_STATEPATH": str(state)}
        host_upsmon.append(
            subprocess.Popen(
                ["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /run/nut && exec /lib/nut/upsmon -p -F"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        assert await_true(lambda: gateway in logins(container_name), AWAIT), logins(container_name)
        assert sorted(logins(container_name)) == sorted(["127.0.0.1", gateway, nas_ip])
        assert health(container_name) == (0, "healthy: upsd serves my-ups\n")
        status = json.loads(docker("exec", container_name, "nut-reconcile", "status", "--json").stdout)
        assert status["shutdown"]["armed"] is True
        assert [(s["name"], s["logged_in"]) for s in status["shutdown"]["secondaries"]] == [
            ("pi-host", True),
            ("nas", True),
        ]
    finally:
        docker("rm", "-f", nas, check=False)
