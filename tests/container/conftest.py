"""Fixtures for tests against a real Docker engine. Without one they skip, saying why;
under CI (which starts one through docker/engine-setup.sh) a missing engine fails."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

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


# NUT 2.8.4's source (its v2.8.4 tag tree with ./configure generated), beside the project:
# what the default image builds from where the release URL cannot be reached.
NUT_SRC = Path(os.environ.get("NUT_SRC_DIR", str(REPO.parent / "shared" / "nut-src")))
SOURCE_IMAGE = "ups-nut-smart:source"
SOURCE_ARM64_IMAGE = "ups-nut-smart:source-arm64"


def nut_source() -> tuple[Path, str]:
    """The tarball and the SHA-256 its README gives (checked against the file)."""
    tarball, readme = NUT_SRC / "nut-2.8.4.tar.gz", NUT_SRC / "README.md"
    if not tarball.is_file() or not readme.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI must build NUT 2.8.4 from source: {tarball} or {readme} is missing")
        pytest.skip(f"no NUT 2.8.4 source at {NUT_SRC}")
    found = re.search(r"SHA-256: `([0-9a-f]{64})`", readme.read_text())
    assert found, f"{readme} gives no SHA-256"
    assert hashlib.sha256(tarball.read_bytes()).hexdigest() == found.group(1), (
        f"{tarball} is not the one {readme} names"
    )
    return tarball, found.group(1)


@contextlib.contextmanager
def served(folder: Path, port: int = 0) -> Iterator[str]:
    """A directory served over HTTP on 127.0.0.1 (a build with --network host fetches from it)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def source_build_args(url: str, sha: str) -> list[str]:
    return ["--network", "host", "--build-arg", f"NUT_URL={url}", "--build-arg", f"NUT_SHA256={sha}"]


@pytest.fixture(scope="session")
def source_image(engine: None) -> Iterator[str]:
    """The default image (NUT_SOURCE=tarball: NUT 2.8.4 compiled in the build), built from
    the shared source copy with NUT_URL and NUT_SHA256, as the README tells a Pi to."""
    tarball, sha = nut_source()
    with served(tarball.parent) as base:
        took = build(SOURCE_IMAGE, "--platform", "linux/amd64", *source_build_args(f"{base}/{tarball.name}", sha))
    print(f"NUT 2.8.4 source build (amd64): {took:.0f}s")
    yield SOURCE_IMAGE


@pytest.fixture
def container_name(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"ups-nut-smart-test-{request.node.name[:40].replace('[', '-').replace(']', '')}".lower()
    docker("rm", "-f", name, check=False)
    yield name
    docker("rm", "-f", name, check=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for tag, size in built.items():
        terminalreporter.write_line(f"image size: {tag} {int(size) / 1e6:.1f} MB")
