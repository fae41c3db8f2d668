"""The controller's side of `image_source = load` for a Pi of another architecture: the
image is built for the host's platform with buildx (here under qemu, offline: the local
arm64 base and Debian's NUT), kept under ref-<arch>, and that build is what is shipped."""

from __future__ import annotations

import os

import pytest

from fleet import image as images
from tests.container.conftest import ARM64_BASE, IMAGE
from tests.helpers import docker

pytestmark = pytest.mark.docker


def test_a_host_of_another_architecture_gets_a_buildx_build_for_it(
    engine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for needed, why in (
        (os.path.exists("/proc/sys/fs/binfmt_misc/qemu-aarch64"), "qemu-aarch64 is not registered"),
        (docker("image", "inspect", ARM64_BASE, check=False).returncode == 0, f"{ARM64_BASE} missing"),
        (docker("image", "inspect", IMAGE, check=False).returncode == 0, f"{IMAGE} missing"),
    ):
        if not needed:
            if os.environ.get("CI"):
                pytest.fail(f"{why} (docker/engine-setup.sh and the container tests provide it)")
            pytest.skip(why)
    monkeypatch.setenv("FLEET_BUILDX_ARGS", f"--build-arg BASE_IMAGE={ARM64_BASE} --build-arg NUT_SOURCE=debian")
    native = images.for_arch(IMAGE, "amd64")
    assert native.ref == IMAGE and native.arch == "amd64"  # the local image itself: no build
    built = images.for_arch(IMAGE, "arm64")
    assert (built.ref, built.arch) == ("ups-nut-smart:latest-arm64", "arm64")
    assert built.id != native.id
    archive = images.saved(built)
    assert archive.stat().st_size > 10_000_000 and archive.name == f"{built.short}.tar.gz"
    assert images.saved(built) == archive  # once per image for all hosts of a run
