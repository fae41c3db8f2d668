"""Fixtures for tests against a real Docker engine (the engine itself and NUT's source are
the root conftest's, shared with tests/fleet). Without an engine they skip, saying why;
under CI (which starts one through docker/engine-setup.sh) a missing engine fails."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from testbed import images
from testbed.docker import docker
from testbed.images import TARGETS, Built, Target
from tests.helpers import need

IMAGE = "ups-nut-smart:latest"  # the name compose.yaml uses
ARM64_IMAGE = "ups-nut-smart:arm64"

built: dict[str, str] = {}  # what the session built, for the size report


def build(tag: str, target: Target, *args: str) -> Built:
    result = images.build(tag, target, *args)
    built[tag] = docker("image", "inspect", "-f", "{{.Size}}", tag).stdout.strip()
    return result


@pytest.fixture(scope="session")
def image(engine: None) -> Iterator[str]:
    """The offline variant (NUT from Debian's packages), built from this tree for amd64."""
    build(IMAGE, TARGETS["amd64"], "--build-arg", "NUT_SOURCE=debian")
    yield IMAGE


@dataclass(frozen=True)
class SourceImage:
    tag: str
    target: Target

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`docker run --rm` of this image on its platform (under qemu for arm)."""
        return docker(
            "run",
            "--rm",
            "--platform",
            self.target.platform,
            *args,
            timeout=300 if self.target.emulated else 120,
            check=check,
        )

    def sh(self, script: str, check: bool = True) -> str:
        result = self.run("--entrypoint", "sh", self.tag, "-c", script, check=check)
        return result.stdout + result.stderr


def source_tag(target: Target) -> str:
    return "ups-nut-smart:source" if target.key == "amd64" else f"ups-nut-smart:source-{target.key}"


@pytest.fixture(scope="session", params=sorted(TARGETS), ids=lambda key: key)
def source_image(request: pytest.FixtureRequest, source_args: list[str]) -> Iterator[SourceImage]:
    """The default image (NUT_SOURCE=tarball: NUT 2.8.4 compiled in the build; for arm64 and
    arm/v7 cross-compiled, with only the runtime stage under qemu), from the shared source
    copy with NUT_URL and NUT_SHA256, as docs/contributing.md ("The container tests") tells.
    One platform at a time: built side by side they took longer on two cores, and two builds
    of one stage at once leave two layers for one cache key (a rebuild then gave another ID)."""
    target = TARGETS[request.param]
    need(images.missing_emulation(target))
    done = build(source_tag(target), target, *source_args)
    print(f"NUT 2.8.4 source build ({target.key}): {done.seconds:.0f}s")
    yield SourceImage(done.tag, target)


@pytest.fixture
def container_name(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"ups-nut-smart-test-{request.node.name[:40].replace('[', '-').replace(']', '')}".lower()
    docker("rm", "-f", name, check=False)
    yield name
    docker("rm", "-f", name, check=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for tag, size in built.items():
        terminalreporter.write_line(f"image size: {tag} {int(size) / 1e6:.1f} MB")
