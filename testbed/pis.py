"""Docker-in-docker "Raspberry Pis", reached by pyinfra's real SSH connector on 127.0.0.1
ports only (nothing is sent to any other address): the fleet tests' and benchmarks' hosts.
pihost/ holds their images (compose v2 or v1; "fresh": systemd and no Docker at all;
"systemd": booted by systemd, with Docker and compose v2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed import REPO, await_true
from testbed.docker import docker

PIHOST = REPO / "testbed" / "pihost"
# The hosts of the example inventory (the top-level file `inventory`), each SSH as pi with sudo.
EXAMPLE_PIS = ("pi-rack.lan", "pi-shop.lan", "pi-cabin.lan")
DEBS = Path(os.environ.get("UPS_NUT_CACHE_DIR", "/var/cache/ups-nut-smart")) / "debs"


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

    def address(self) -> str:
        """Its IP address on the outer engine's bridge (where other containers reach it)."""
        return docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", self.container).stdout.strip()

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
    clients: set[str] = field(default_factory=set)  # hosts of group nut_clients, not pis

    def inventory(self, hosts: tuple[str, ...] = ("pi1", "pi2", "pi3")) -> Path:
        """An inventory file of the tests' own, in a temp dir: group pis (and canary: pi1)."""
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
            # A demo UPS on line for hours (its cycle's first 40 %), not one that goes on
            # battery every 2 minutes: a Pi on battery defers every change, and unplugged it
            # skips the host-upsmon check; the tests pin other states with `drill`.
            demo = {"simulate": True, "simulate_cycle": 86400}
            entries.append((name, {**ssh, **demo, **self.data.get(name, {})}))
        path = self.root / "hosts.py"
        canary = [e for e in entries if e[0] == "pi1"]
        pis = [e for e in entries if e[0] not in self.clients]
        clients = [e for e in entries if e[0] in self.clients]
        path.write_text(f"pis = {pis!r}\ncanary = {canary!r}\nnut_clients = {clients!r}\n")
        return path

    def pyinfra(
        self,
        *args: str,
        hosts: tuple[str, ...] = ("pi1", "pi2", "pi3"),
        env: dict[str, str] | None = None,
        deploy: str = "deploy.py",
    ) -> subprocess.CompletedProcess[str]:
        command = [str(REPO / ".venv" / "bin" / "pyinfra"), str(self.inventory(hosts)), deploy, *args]
        if not Path(command[0]).exists():
            command[0] = shutil.which("pyinfra") or "pyinfra"
        return self._run(command, env, 900)

    def status(
        self, *args: str, hosts: tuple[str, ...] = ("pi1", "pi2", "pi3"), env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`python -m fleet.status <inventory> ARGS` (docs/fleet.md), as on a controller."""
        python = REPO / ".venv" / "bin" / "python"
        command = [str(python if python.exists() else sys.executable), "-m", "fleet.status", str(self.inventory(hosts))]
        return self._run([*command, *args], env, 300)

    def ssh_home(self) -> Path:
        """A home directory whose ~/.ssh/config takes each Pi's name to its SSH port on
        127.0.0.1 with the fleet's key: a controller that reaches its Pis by the names its
        inventory gives them, as a Pi owner's ssh config or DNS does (pyinfra's SSH connector
        reads ~/.ssh/config). The user stays the inventory's (its ssh_user wins)."""
        home = self.root / "home"
        ssh = home / ".ssh"
        ssh.mkdir(parents=True, exist_ok=True)
        entries = [
            f"Host {pi.name}\n  HostName 127.0.0.1\n  Port {pi.port}\n  IdentityFile {self.key}\n  ConnectTimeout 30\n"
            for pi in self.pis.values()
        ]
        (ssh / "config").write_text("\n".join(entries))
        (ssh / "known_hosts").touch()  # accept-new, pyinfra's default, records each Pi's key here
        return home

    def controller(self, *words: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """`words` run as written, from the repo's root, as a Pi owner runs them with the venv
        active (`pyinfra inventory deploy.py --dry --diff`), with HOME = ssh_home()."""
        venv = REPO / ".venv" / "bin"
        path = f"{venv}{os.pathsep}{os.environ.get('PATH', '')}" if venv.is_dir() else os.environ.get("PATH", "")
        return self._run(list(words), {"HOME": str(self.ssh_home()), "PATH": path}, timeout)

    def _run(self, command: list[str], env: dict[str, str] | None, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )


def pihost_image(compose: str) -> str:
    """compose: v2, v1, fresh (systemd, no Docker), or systemd (systemd as PID 1, Docker
    with compose v2: Dockerfile.systemd)."""
    tag = f"ups-nut-smart-pihost:{compose}"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(PIHOST, tmp, dirs_exist_ok=True)
        (Path(tmp) / "debs").mkdir()
        for deb in DEBS.glob("docker-compose_*.deb"):
            shutil.copy(deb, Path(tmp) / "debs")
        booted = compose in ("fresh", "systemd")
        dockerfile = ["-f", f"{tmp}/Dockerfile.{compose}"] if booted else []
        docker("build", "-q", *dockerfile, "--build-arg", f"COMPOSE={compose}", "-t", tag, tmp, timeout=900)
    return tag


def start_pi(name: str, image: str, key: Path, user: str) -> Pi:
    container = f"ups-nut-smart-fleet-{name}"
    docker("rm", "-f", container, check=False)
    docker("volume", "rm", f"{container}-docker", check=False)
    # What docker-in-docker needs here (see the platform notes): not --privileged. A Pi booted
    # by systemd also gets a tmpfs /run of its own.
    fresh = image.endswith(":fresh")
    booted = fresh or image.endswith(":systemd")
    boot = ["--tmpfs", "/run", "--tmpfs", "/run/lock"] if booted else []
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
    if booted:
        up = "systemctl is-active ssh 2>/dev/null"
        assert await_true(lambda: pi.sh(up, check=False).strip() == "active", 60)
    if fresh:
        return pi
    assert await_true(lambda: pi.sh("docker info >/dev/null 2>&1 && echo ok", check=False).strip() == "ok", 60)
    return pi
