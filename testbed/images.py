"""The images the container tests, the fleet tests and the benchmarks build: the target
platforms with their local base images, NUT 2.8.4's source served at a fixed loopback
address, and one build() that reports what it did.

Why a fixed address: the download URL is a build argument, and BuildKit keys the download
step on it. With the same URL and SHA-256 each run, an unchanged tree rebuilds from the
cache in seconds; a random port never hit the cache, so every run compiled NUT again.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import http.server
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testbed import REPO, await_true
from testbed.docker import docker

BUILD_TIMEOUT = 1800
# Every build this process made: (tag, platform and whether it came from the cache, seconds).
builds: list[tuple[str, str, float]] = []


@dataclass(frozen=True)
class Target:
    """A platform an image is built for, the local base image it starts from (no registry
    here: docker/engine-setup.sh makes them), and what `uname -m` says inside it."""

    platform: str  # linux/arm/v7
    base: str
    uname: str

    @property
    def key(self) -> str:
        """One word for tags and test ids: amd64, arm64, armv7."""
        return self.platform.removeprefix("linux/").replace("/", "")

    @property
    def emulated(self) -> bool:
        """Runs under qemu on this (amd64) machine."""
        return self.platform != "linux/amd64"


TARGETS = {
    t.key: t
    for t in (
        Target("linux/amd64", os.environ.get("BASE_AMD64_TAG", "debian:bookworm-slim"), "x86_64"),
        Target("linux/arm64", os.environ.get("BASE_ARM64_TAG", "local/bookworm-slim:arm64"), "aarch64"),
        Target("linux/arm/v7", os.environ.get("BASE_ARMHF_TAG", "local/bookworm-slim:armhf"), "armv7l"),
    )
}
QEMU = {"arm64": "qemu-aarch64", "armv7": "qemu-arm"}


# dev.sh test makes the arm64 and arm/v7 base images while the first lanes already run,
# and writes its exit status here when done.
BASES_DONE = os.environ.get("BASES_DONE")
BASES_TIMEOUT = 1800.0


def _foreign_bases_made() -> str | None:
    """Wait, where dev.sh is still making them, for the foreign base images; why not, or None."""
    if not BASES_DONE:
        return None
    done = Path(BASES_DONE)
    if not await_true(done.exists, BASES_TIMEOUT, 1.0):
        return f"the arm64 and arm/v7 base images were not made within {BASES_TIMEOUT:.0f} s"
    status = done.read_text().strip()
    return None if status == "0" else f"making the arm64 and arm/v7 base images failed (exit {status})"


def missing_emulation(target: Target) -> str | None:
    """Why images for `target` cannot be built and run here, or None."""
    if target.emulated:
        problem = _foreign_bases_made()
        if problem:
            return problem
    if target.key in QEMU and not os.path.exists(f"/proc/sys/fs/binfmt_misc/{QEMU[target.key]}"):
        return f"{QEMU[target.key]} is not registered with binfmt_misc (docker/engine-setup.sh does it)"
    if docker("image", "inspect", target.base, check=False).returncode != 0:
        return f"base image {target.base} missing (docker/engine-setup.sh builds it)"
    return None


# NUT 2.8.4's source (its v2.8.4 tag tree with ./configure generated), beside the project:
# what the default image builds from where the release URL cannot be reached.
NUT_SRC = Path(os.environ.get("NUT_SRC_DIR", str(REPO.parent / "shared" / "nut-src")))
NUT_TARBALL = "nut-2.8.4.tar.gz"
SOURCE_PORT = int(os.environ.get("NUT_SRC_PORT", "38480"))


class MissingSource(Exception):
    pass


def nut_source_sha() -> str:
    """The SHA-256 that NUT_SRC's README gives, checked against the tarball beside it."""
    tarball, readme = NUT_SRC / NUT_TARBALL, NUT_SRC / "README.md"
    if not tarball.is_file() or not readme.is_file():
        raise MissingSource(f"{tarball} or {readme} is missing")
    found = re.search(r"SHA-256: `([0-9a-f]{64})`", readme.read_text())
    if not found:
        raise MissingSource(f"{readme} gives no SHA-256")
    if hashlib.sha256(tarball.read_bytes()).hexdigest() != found.group(1):
        raise MissingSource(f"{tarball} is not the one {readme} names")
    return found.group(1)


@contextlib.contextmanager
def served(folder: Path, port: int = 0) -> Iterator[str]:
    """A directory served over HTTP on 127.0.0.1 (a build with --network host fetches from it)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise OSError(f"cannot serve {folder} on 127.0.0.1:{port} ({exc}); set NUT_SRC_PORT to a free port") from None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def source_served() -> Iterator[list[str]]:
    """NUT_SRC at its fixed address, for as long as builds may need it: yields the build
    arguments that make the default (NUT_SOURCE=tarball) image from it."""
    sha = nut_source_sha()
    with served(NUT_SRC, SOURCE_PORT) as base:
        yield [
            "--network",
            "host",
            "--build-arg",
            f"NUT_URL={base}/{NUT_TARBALL}",
            "--build-arg",
            f"NUT_SHA256={sha}",
        ]


@dataclass(frozen=True)
class Built:
    tag: str
    seconds: float
    log: str  # BuildKit's plain progress output

    def step_cached(self, fragment: str) -> bool:
        """Whether the build step whose command contains `fragment` came from the cache."""
        steps = re.findall(r"^#(\d+) \[[^\]]+\] (.*)$", self.log, re.MULTILINE)
        numbers = {n for n, command in steps if fragment in command}
        assert numbers, f"no build step runs {fragment!r}:\n{self.log[-3000:]}"
        return all(re.search(rf"^#{n} CACHED$", self.log, re.MULTILINE) for n in numbers)


# One build per target platform at a time, across the test lanes (separate processes).
# Why: two builds of one stage at once each make a layer and BuildKit keeps both under one
# cache key, so a later rebuild may take the other one and give another image ID. Builds for
# different platforms share only the build machine's stages: prebuild() makes those first.
LOCK_DIR = Path(os.environ.get("BUILD_LOCK_DIR", tempfile.gettempdir()))


@contextlib.contextmanager
def platform_lock(target: Target, timeout: float) -> Iterator[float]:
    """Hold the build lock of `target`'s platform; yields the seconds spent waiting for it."""
    start = time.monotonic()
    with open(LOCK_DIR / f"ups-nut-smart-build-{target.key}.lock", "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - start > timeout:
                    held = f"another build for {target.platform} held its lock for {timeout:.0f} s"
                    raise TimeoutError(held) from None
                # Why a poll: flock has no timeout of its own; the holder is a build of minutes.
                time.sleep(1)
        try:
            yield time.monotonic() - start
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(tag: str, target: Target, *args: str, context: Path = REPO, timeout: float = BUILD_TIMEOUT) -> Built:
    """`docker buildx build` of `context` (this tree) for `target` (from its local base
    image), loaded into the engine as `tag`. Waits while another build for the same
    platform runs (platform_lock); the seconds reported are the build's own."""
    with platform_lock(target, timeout) as waited:
        return _build(tag, target, args, context, timeout, waited)


def _build(tag: str, target: Target, args: tuple[str, ...], context: Path, timeout: float, waited: float) -> Built:
    start = time.monotonic()
    result = docker(
        "buildx",
        "build",
        "--progress",
        "plain",
        "--platform",
        target.platform,
        "--build-arg",
        f"BASE_IMAGE={target.base}",
        *args,
        "-t",
        tag,
        "--load",
        str(context),
        timeout=timeout,
    )
    done = Built(tag, time.monotonic() - start, result.stderr)
    steps = re.findall(r"^#(\d+) (?:DONE|CACHED)", done.log, re.MULTILINE)
    cached = len(re.findall(r"^#\d+ CACHED$", done.log, re.MULTILINE))
    wait = f", after {waited:.0f} s waiting for another {target.key} build" if waited >= 1 else ""
    builds.append((tag, f"{target.key}, {cached} of {len(set(steps))} steps cached{wait}", done.seconds))
    return done


PREBUILD_TAG = "ups-nut-smart:pybuild"


def prebuild() -> Built:
    """The stage every offline build shares whatever its target: pybuild, the pure-Python
    install, run on the build machine's platform. Built once before the lanes start, so
    their first builds (amd64 in one, arm64 in another) both find it in the cache."""
    return build(PREBUILD_TAG, TARGETS["amd64"], "--target", "pybuild")


if __name__ == "__main__":
    # dev.sh runs `python -m testbed.images prebuild` before the lanes.
    if sys.argv[1:] != ["prebuild"]:
        sys.exit("usage: python -m testbed.images prebuild")
    done = prebuild()
    print(f"{done.tag}: {done.seconds:.1f} s")
