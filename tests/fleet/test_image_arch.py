"""The controller's side of `image_source = load` for a Pi of another architecture: the
image is built for the host's platform with buildx (NUT cross-compiled, the runtime stage
under qemu, offline: each platform's local base image and NUT's source at its fixed
address), kept under ref-<platform>, and that build is what is shipped. A 32-bit Pi
(`uname -m` armv7l) gets linux/arm/v7; a 64-bit one linux/arm64."""

from __future__ import annotations

import shlex

import pytest

from fleet import image as images
from testbed.docker import docker
from testbed.images import TARGETS, missing_emulation
from tests.container.conftest import IMAGE
from tests.helpers import need

pytestmark = pytest.mark.docker


@pytest.mark.timeout(3600)
def test_a_host_of_another_architecture_gets_a_buildx_build_for_it(
    source_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("arm64", "armv7"):
        need(missing_emulation(TARGETS[key]))
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        need(f"{IMAGE} missing (the container tests build it)")
    native = images.for_arch(IMAGE, "amd64")
    assert native.ref == IMAGE and native.arch == "amd64"  # the local image itself: no build
    # The container tests build these same images: BuildKit's cache answers, where they ran first.
    monkeypatch.setenv("FLEET_BUILDX_ARGS", shlex.join(source_args))
    for key in ("arm64", "armv7"):
        monkeypatch.setenv(f"FLEET_BUILDX_ARGS_{key.upper()}", f"--build-arg BASE_IMAGE={TARGETS[key].base}")
    shipped = {}
    for machine in ("aarch64", "armv7l"):
        arch = images.ARCHES[machine]
        shipped[machine] = images.for_arch(IMAGE, arch)
        assert shipped[machine].arch == arch
    assert shipped["aarch64"].ref == "ups-nut-smart:latest-arm64"
    assert shipped["armv7l"].ref == "ups-nut-smart:latest-armv7"
    assert len({native.id, shipped["aarch64"].id, shipped["armv7l"].id}) == 3
    inside = docker("run", "--rm", "--platform", "linux/arm/v7", "--entrypoint", "uname", shipped["armv7l"].id, "-m")
    assert inside.stdout.strip() == "armv7l"
    archive = images.saved(shipped["armv7l"])
    assert archive.stat().st_size > 10_000_000 and archive.name == f"{shipped['armv7l'].short}.tar.gz"
    assert images.saved(shipped["armv7l"]) == archive  # once per image for all hosts of a run
