"""Docker-in-docker "Raspberry Pis" for the fleet tests, reached by pyinfra's real SSH
connector on 127.0.0.1 ports only (nothing is sent to any other address).

  pi1  compose v2, SSH as root          (group canary)
  pi2  compose v2, SSH as pi with sudo
  pi3  compose v1 (bookworm's docker-compose 1.29), SSH as root
  pi4  a fresh Pi: systemd, no Docker at all (the rollout installs it)
  pi5  compose v2, root: image_source = build
  pi6  compose v2, root: image_source = pull, from registry.py on its own loopback
  nas1 another machine on pi1's UPS (group nut_clients): only its NUT client

and, apart (example_fleet), the example inventory's own three: pi-rack.lan, pi-shop.lan and
pi-cabin.lan, compose v2, SSH as pi with sudo, reached by those names (testbed/pis.py ssh_home).

Without a Docker engine the tests skip, saying why; under CI (which starts one through
docker/engine-setup.sh) a missing engine fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.docker import docker
from testbed.images import TARGETS
from testbed.pis import DEBS, EXAMPLE_PIS, Fleet, Pi, pihost_image, start_pi
from tests.container.conftest import IMAGE, build

BROKEN = "ups-nut-smart:broken"


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
    images = {compose: pihost_image(compose) for compose in ("v2", "v1", "fresh")}
    pis = {
        "pi1": start_pi("pi1", images["v2"], key, "root"),
        "pi2": start_pi("pi2", images["v2"], key, "pi"),
        "pi3": start_pi("pi3", images["v1"], key, "root"),
        "pi4": start_pi("pi4", images["fresh"], key, "pi"),
        "pi5": start_pi("pi5", images["v2"], key, "root"),
        "pi6": start_pi("pi6", images["v2"], key, "root"),
        "nas1": start_pi("nas1", images["v2"], key, "root"),  # a NUT client host (group nut_clients)
    }
    try:
        yield Fleet(root, key, pis)
    finally:
        for pi in pis.values():
            docker("rm", "-f", pi.container, check=False, timeout=120)
            docker("volume", "rm", f"{pi.container}-docker", check=False)


@pytest.fixture(scope="module")
def example_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Fresh Pis for the example `inventory` as it stands: its host names, user pi with sudo."""
    _engine_or_skip()
    root = tmp_path_factory.mktemp("example-fleet")
    key = root / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    image = pihost_image("v2")
    pis: dict[str, Pi] = {}
    try:
        for name in EXAMPLE_PIS:
            pis[name] = start_pi(name, image, key, "pi")
        yield Fleet(root, key, pis)
    finally:
        for pi in pis.values():
            docker("rm", "-f", pi.container, check=False, timeout=120)
            docker("volume", "rm", f"{pi.container}-docker", check=False)
