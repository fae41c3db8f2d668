"""The image on the controller: its ID and architecture, a build for another platform
(buildx), and a compressed `docker save`, made once per image ID and shared by the hosts.

An image's ID is the digest of its config, which `docker save` / `docker load` keep: a
host whose image has the controller's ID already has exactly this image.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

# `uname -m` (pyinfra's server.Arch fact) -> the Docker platform (without "linux/") of the
# image that host runs: 64-bit Raspberry Pi OS (Pi 3, 4, 5, Zero 2 W) is arm64; 32-bit
# Raspberry Pi OS on an ARMv7 or ARMv8 CPU (Pi 2, 3, 4, Zero 2 W) is arm/v7. armv8l is what
# a 32-bit kernel on an ARMv8 CPU prints.
ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm/v7",
    "armv8l": "arm/v7",
}
# Known, and refused with a reason: Debian's armhf (our arm/v7 image) needs an ARMv7 CPU.
UNSUPPORTED = {"armv6l": "an ARMv6 Pi (Pi 1, Zero, Zero W) cannot run Debian's armhf, which the arm/v7 image is"}
BUILD_TIMEOUT = 3600
SAVE_TIMEOUT = 900
REPO = Path(__file__).resolve().parent.parent


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalImage:
    ref: str  # the tag on the controller
    id: str
    arch: str

    @property
    def short(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImageError(f"docker {args[0]}: {exc}") from None


def platform_of(architecture: str, variant: str = "") -> str:
    """Docker's architecture and variant as one platform name: amd64, arm64, arm/v7.
    arm64's only variant is v8, which some images state and others leave out."""
    if architecture == "arm64" or not variant:
        return architecture
    return f"{architecture}/{variant}"


# Why `index`: an image without a variant has no such key, and Docker 20.10's template
# fails on a plain {{.Variant}} there ("map has no entry for key").
INSPECT_FORMAT = '{{.Id}} {{.Architecture}} {{with index . "Variant"}}{{.}}{{end}}'


def inspect(ref: str) -> LocalImage | None:
    result = _docker("image", "inspect", "-f", INSPECT_FORMAT, ref)
    if result.returncode != 0:
        return None
    image_id, architecture, *variant = result.stdout.split()
    return LocalImage(ref, image_id, platform_of(architecture, *variant[:1]))


def platform_key(arch: str) -> str:
    """A platform as one word, for tags and variable names: arm/v7 -> armv7."""
    return arch.replace("/", "")


def platform_tag(ref: str, arch: str) -> str:
    """Where a build for another platform is kept on the controller: ref-<arch>, with
    arm/v7 as armv7."""
    name, tag = ref.rsplit(":", 1) if ":" in ref.rsplit("/", 1)[-1] else (ref, "latest")
    return f"{name}:{tag}-{platform_key(arch)}"


def buildx_args(arch: str) -> list[str]:
    """Extra build arguments: FLEET_BUILDX_ARGS for every platform, then
    FLEET_BUILDX_ARGS_<PLATFORM> (ARM64, ARMV7, AMD64) for that one alone, so one run can
    give each platform its own offline base image."""
    general = os.environ.get("FLEET_BUILDX_ARGS", "")
    own = os.environ.get(f"FLEET_BUILDX_ARGS_{platform_key(arch).upper()}", "")
    try:
        return shlex.split(general) + shlex.split(own)
    except ValueError as exc:
        raise ImageError(f"FLEET_BUILDX_ARGS: {exc}") from None


def built_for(ref: str, arch: str) -> LocalImage | None:
    """The controller's image for this platform as it is now, without building: `ref`
    itself, or its platform tag from an earlier build; None when there is neither."""
    for candidate in (ref, platform_tag(ref, arch)):
        local = inspect(candidate)
        if local is not None and local.arch == arch:
            return local
    return None


def for_arch(ref: str, arch: str) -> LocalImage:
    """The controller's image for this platform (amd64, arm64, arm/v7): `ref` itself when
    it is built for it, else a buildx build of this tree for linux/<arch> (NUT cross-compiled,
    and cached by BuildKit, so cheap when nothing changed). FLEET_BUILDX_ARGS adds build
    arguments, e.g. an offline base image:
    FLEET_BUILDX_ARGS_ARM64="--build-arg BASE_IMAGE=local/bookworm-slim:arm64"."""
    local = inspect(ref)
    if local is not None and local.arch == arch:
        return local
    tag = platform_tag(ref, arch)
    args = ["buildx", "build", "--platform", f"linux/{arch}", *buildx_args(arch), "-t", tag, "--load", str(REPO)]
    result = _docker(*args, timeout=BUILD_TIMEOUT)
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise ImageError(f"building {ref} for linux/{arch} failed: {' / '.join(last)}")
    built = inspect(tag)
    if built is None or built.arch != arch:
        raise ImageError(f"the build for linux/{arch} did not give an {arch} image {tag}")
    return built


_saves: dict[str, Path] = {}
_lock = threading.Lock()  # gevent-patched under pyinfra: hosts wait for one save


def saved(image: LocalImage) -> Path:
    """`docker save | gzip -1` of the image, made once per ID for all hosts of a run."""
    with _lock:
        if image.id in _saves and _saves[image.id].exists():
            return _saves[image.id]
        folder = Path(tempfile.mkdtemp(prefix="ups-nut-smart-image-"))
        atexit.register(shutil.rmtree, folder, True)  # the run's saves go when it ends
        path = folder / f"{image.short}.tar.gz"
        command = f"docker save {shlex.quote(image.id)} | gzip -1 > {shlex.quote(str(path))}"
        try:
            result = subprocess.run(
                ["bash", "-o", "pipefail", "-c", command],
                capture_output=True,
                text=True,
                timeout=SAVE_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ImageError(f"docker save {image.ref} timed out") from None
        if result.returncode != 0:
            raise ImageError(f"docker save {image.ref} failed: {result.stderr.strip()}")
        _saves[image.id] = path
        return path
