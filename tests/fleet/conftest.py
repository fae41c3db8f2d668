"""Docker-in-docker "Raspberry Pis" for the fleet tests, reached by pyinfra's real SSH
connector on 127.0.0.1 ports only (nothing is sent to any other address).

  pi1  compose v2, SSH as root          (group canary)
  pi2  compose v2, SSH as pi with sudo
  pi3  compose v1 (bookworm's docker-compose 1.29), SSH as root
  pi4  a fresh Pi: systemd, no Docker at all (the rollout installs it)
  pi5  compose v2, root: image_source = build
  pi6  compose v2, root: image_source = pull, from registry.py on its own loopback

Without a Docker engine the tests skip, saying why; under CI (which starts one through
docker/engine-setup.sh) a missing engine fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.container.conftest import IMAGE, build
from tests.helpers import REPO, await_true, docker
from tests.images import TARGETS

PIHOST = REPO / "tests" / "fleet" / "pihost"
DEBS = Path(os.environ.get("UPS_NUT_CACHE_DIR", "/var/cache/ups-nut-smart")) / "debs"
BROKEN = "ups-nut-smart:broken"


@dataclass
class Pi:
    name: str
    port: int
    user: str
    container: str

    def sh(self, command: str, check: bool = True, timeout: float = 120) -> str:
        """A command on the Pi (docker exec into its container: the test's own view)."""
        result = docker("exec", self.container, "sh", "-c", command, timeout=timeout, check=check)
        return result.stdout

    def nut(self) -> dict[str, Any] | None:
        """The NUT container on this Pi: its ID, start time, image and health."""
        out = self.sh("docker inspect ups-nut-smart 2>/dev/null || true")
        data = json.loads(out) if out.strip() else []
        if not data:
            return None
        c = data[0]
        health = (c["State"].get("Health") or {}).get("Status")
        return {"id": c["Id"], "started": c["State"]["StartedAt"], "image": c["Config"]["Image"], "health": health}

    def load(self, image: str) -> None:
        """Put an image of the controller's into this Pi's engine (as a registry would)."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        load = subprocess.run(
            ["docker", "exec", "-i", self.container, "docker", "load"],
            stdin=save.stdout,
            capture_output=True,
            timeout=600,
        )
        assert save.wait(600) == 0 and load.returncode == 0, load.stderr

    def upsc(self, var: str = "ups.mfr", port: int = 3493) -> str:
        """upsc's answer from inside the NUT container, or its error (not its SSL notice)."""
        out = self.sh(f"docker exec ups-nut-smart upsc my-ups@127.0.0.1:{port} {var} 2>&1", check=False)
        return "\n".join(line for line in out.splitlines() if "Init SSL" not in line).strip()


@dataclass
class Fleet:
    root: Path
    key: Path
    pis: dict[str, Pi]
    data: dict[str, dict[str, Any]] = field(default_factory=dict)  # host data beyond SSH

    def inventory(self, hosts: tuple[str, ...] = ("pi1", "pi2", "pi3")) -> Path:
        """An inventory file outside inventory/: group pis (and canary: pi1)."""
        entries = []
        for name in hosts:
            pi = self.pis[name]
            ssh = {
                "ssh_hostname": "127.0.0.1",
                "ssh_port": pi.port,
                "ssh_user": pi.user,
                "ssh_key": str(self.key),
                "ssh_known_hosts_file": "/dev/null",
                "ssh_strict_host_key_checking": "no",
            }
            if pi.user != "root":
                ssh["_sudo"] = True
            entries.append((name, {**ssh, "simulate": True, **self.data.get(name, {})}))
        path = self.root / "hosts.py"
        canary = [e for e in entries if e[0] == "pi1"]
        path.write_text(f"pis = {entries!r}\ncanary = {canary!r}\n")
        return path

    def pyinfra(
        self, *args: str, hosts: tuple[str, ...] = ("pi1", "pi2", "pi3"), env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [str(REPO / ".venv" / "bin" / "pyinfra"), str(self.inventory(hosts)), "deploy.py", *args]
        if not Path(command[0]).exists():
            command[0] = shutil.which("pyinfra") or "pyinfra"
        return subprocess.run(
            command,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )


def _engine_or_skip() -> None:
    problem = None
    if shutil.which("docker") is None:
        problem = "no docker client"
    elif subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode != 0:
        problem = "no Docker engine reachable"
    elif not list(DEBS.glob("docker-compose_*.deb")):
        problem = f"no compose v2 .deb in {DEBS} (docker/engine-setup.sh downloads it)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the fleet tests: {problem}")
        pytest.skip(problem)


def _pihost_image(compose: str) -> str:
    """compose: v2, v1, or fresh (systemd, no Docker)."""
    tag = f"ups-nut-smart-pihost:{compose}"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(PIHOST, tmp, dirs_exist_ok=True)
        (Path(tmp) / "debs").mkdir()
        for deb in DEBS.glob("docker-compose_*.deb"):
            shutil.copy(deb, Path(tmp) / "debs")
        dockerfile = ["-f", f"{tmp}/Dockerfile.fresh"] if compose == "fresh" else []
        docker("build", "-q", *dockerfile, "--build-arg", f"COMPOSE={compose}", "-t", tag, tmp, timeout=900)
    return tag


def _start(name: str, image: str, key: Path, user: str) -> Pi:
    container = f"ups-nut-smart-fleet-{name}"
    docker("rm", "-f", container, check=False)
    docker("volume", "rm", f"{container}-docker", check=False)
    # What docker-in-docker needs here (see the platform notes): not --privileged. A Pi booted
    # by systemd also gets a tmpfs /run of its own.
    fresh = image.endswith(":fresh")
    boot = ["--tmpfs", "/run", "--tmpfs", "/run/lock"] if fresh else []
    docker(
        "run", "-d", "--name", container, "--hostname", name,
        "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm",
        "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", *boot, "-v", f"{container}-docker:/var/lib/docker",
        "-p", "127.0.0.1::22", image,
    )  # fmt: skip
    home = "/root" if user == "root" else f"/home/{user}"
    docker("cp", str(key.with_suffix(".pub")), f"{container}:{home}/.ssh/authorized_keys")
    docker("exec", container, "chown", "-R", f"{user}:{user}", f"{home}/.ssh")
    port = int(docker("port", container, "22").stdout.split(":")[-1])
    pi = Pi(name, port, user, container)
    if fresh:
        up = "systemctl is-active ssh 2>/dev/null"
        assert await_true(lambda: pi.sh(up, check=False).strip() == "active", 60)
        return pi
    assert await_true(lambda: pi.sh("docker info >/dev/null 2>&1 && echo ok", check=False).strip() == "ok", 60)
    return pi


@pytest.fixture(scope="session")
def broken_image() -> str:
    """An image whose agent exits at once (and says so), built on the real one."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "Dockerfile").write_text(
            f'FROM {IMAGE}\nENTRYPOINT ["sh", "-c", "echo broken agent: exits at once >&2; exit 3"]\n'
        )
        docker("build", "-q", "-t", BROKEN, tmp, timeout=300)
    return BROKEN


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    _engine_or_skip()
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        build(IMAGE, TARGETS["amd64"], "--build-arg", "NUT_SOURCE=debian")
    root = tmp_path_factory.mktemp("fleet")
    key = root / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    images = {compose: _pihost_image(compose) for compose in ("v2", "v1", "fresh")}
    pis = {
        "pi1": _start("pi1", images["v2"], key, "root"),
        "pi2": _start("pi2", images["v2"], key, "pi"),
        "pi3": _start("pi3", images["v1"], key, "root"),
        "pi4": _start("pi4", images["fresh"], key, "pi"),
        "pi5": _start("pi5", images["v2"], key, "root"),
        "pi6": _start("pi6", images["v2"], key, "root"),
    }
    try:
        yield Fleet(root, key, pis)
    finally:
        for pi in pis.values():
            docker("rm", "-f", pi.container, check=False, timeout=120)
            docker("volume", "rm", f"{pi.container}-docker", check=False)
