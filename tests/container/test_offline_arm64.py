"""The offline variant (Debian's NUT packages) for arm64, whose whole build runs under qemu.

Its own file because dev.sh runs it in the fleet lane: it is the longest build with no
compile in it, and there it overlaps the container lane's builds instead of adding to them
(testbed/images.build keeps two arm64 builds from running at once).
"""

from __future__ import annotations

import pytest

from testbed.docker import docker
from testbed.images import BUILD_TIMEOUT, TARGETS, missing_emulation
from tests.container.conftest import ARM64_IMAGE, build
from tests.helpers import need

pytestmark = pytest.mark.docker


@pytest.mark.timeout(BUILD_TIMEOUT + 120)
def test_arm64_image_builds_under_emulation_and_runs(engine: None) -> None:
    target = TARGETS["arm64"]
    need(missing_emulation(target))
    took = build(ARM64_IMAGE, target, "--build-arg", "NUT_SOURCE=debian").seconds
    print(f"arm64 build (emulated): {took:.0f}s")
    run = ["run", "--rm", "--platform", "linux/arm64"]
    assert docker(*run, "--entrypoint", "uname", ARM64_IMAGE, "-m").stdout.strip() == "aarch64"
    assert docker(*run, ARM64_IMAGE, "--version", timeout=120).stdout.startswith("nut-reconcile ")
    assert "Network UPS Tools upsd" in docker(*run, "--entrypoint", "/opt/nut/sbin/upsd", ARM64_IMAGE, "-V").stdout
