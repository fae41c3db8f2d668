"""Fixtures for tests against a real Docker engine. Without one they skip, saying why;
under CI (which starts one through docker/engine-setup.sh) a missing engine fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.helpers import REPO, docker

IMAGE = "ups-nut-smart:latest"  # the name compose.yaml uses
ARM64_IMAGE = "ups-nut-smart:arm64"
ARM64_BASE = os.environ.get("BASE_ARM64_TAG", "local/bookworm-slim:arm64")
BUILD_TIMEOUT = 1800

built: dict[str, str] = {}  # what the session built, for the size report


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client (sudo ./dev.sh test installs one)"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if info.returncode != 0:
        return f"no Docker engine reachable: {info.stderr.strip().splitlines()[-1] if info.stderr.strip() else ''}"
    if docker("buildx", "version", check=False).returncode != 0:
        return "docker buildx missing (docker/engine-setup.sh installs it)"
    return None


@pytest.fixture(scope="session")
def engine() -> None:
    problem = _engine_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have a Docker engine: {problem}")
        pytest.skip(problem)


def build(tag: str, *args: str) -> float:
    start = time.monotonic()
    docker("buildx", "build", *args, "-t", tag, "--load", str(REPO), timeout=BUILD_TIMEOUT)
    built[tag] = docker("image", "inspect", "-f", "{{.Size}}", tag).stdout.strip()
    return time.monotonic() - start


@pytest.fixture(scope="session")
def image(engine: None) -> Iterator[str]:
    """The offline variant (NUT from Debian's packages), built from this tree for amd64."""
    build(IMAGE, "--platform", "linux/amd64", "--build-arg", "NUT_SOURCE=debian")
    yield IMAGE


@pytest.fixture
def container_name(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"ups-nut-smart-test-{request.node.name[:40].replace('[', '-').replace(']', '')}".lower()
    docker("rm", "-f", name, check=False)
    yield name
    docker("rm", "-f", name, check=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for tag, size in built.items():
        terminalreporter.write_line(f"image size: {tag} {int(size) / 1e6:.1f} MB")
