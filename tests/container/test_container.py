"""The image and compose.yaml against a real Docker engine.

This machine has no USB, so the host side of the bus is a sysfs-like tree the test
writes and bind-mounts (USB_SYSFS_ROOT), and the UPS is NUT's dummy-ups (the TOML
override). Every client call goes from the host to the published port on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.conftest import (
    ARM64_BASE,
    ARM64_IMAGE,
    BUILD_TIMEOUT,
    SOURCE_ARM64_IMAGE,
    build,
    nut_source,
    served,
    source_build_args,
)
from tests.helpers import REPO, SIM_ENV, SIM_MOUNT, await_true, container_sim, docker, free_port, run_container
from tests.helpers import upsc as host_upsc

pytestmark = pytest.mark.docker
# A test that builds an image, or is the first to need a session fixture that does: its
# timeout covers the build (NUT compiled from source takes minutes, under qemu about 15).
BUILDS = pytest.mark.timeout(BUILD_TIMEOUT + 120)

NOT_CONNECTED = "Error: Driver not connected"
AWAIT = 30.0
TARBALL_URL = "https://www.networkupstools.org/source/2.8/nut-2.8.4.tar.gz"


def upsc(port: int, var: str = "ups.status") -> str:
    return host_upsc(port, "my-ups", var)[1]


# Why: the healthcheck's default 30 s interval would make "turns healthy" a 30 s wait.
FAST_HEALTH = ("--health-interval", "1s", "--health-start-period", "1s")


def test_image_runs_the_agent_and_nut(image: str) -> None:
    assert docker("run", "--rm", image, "--version").stdout.strip().startswith("nut-reconcile ")
    upsd = docker("run", "--rm", "--entrypoint", "/opt/nut/sbin/upsd", image, "-V").stdout
    assert "Network UPS Tools upsd" in upsd
    for path in (
        "/opt/nut/bin/upsc",
        "/opt/nut/bin/nut-scanner",
        "/opt/nut/etc",
        "/opt/nut/bin/dummy-ups",
        "/opt/nut/bin/usbhid-ups",
        "/opt/nut/share/nut/62-nut-usbups.rules",
    ):
        docker("run", "--rm", "--entrypoint", "test", image, "-e", path)
    # no compilers left in the runtime image, no secret baked in
    assert docker("run", "--rm", "--entrypoint", "sh", image, "-c", "command -v gcc cc pip3 || true").stdout == ""
    history = docker("history", "--no-trunc", image).stdout
    assert "password" not in history.lower()
    # passwords are made on first start, in the state volume: none is in the image
    found = docker(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "find / -xdev \\( -name secrets.json -o -name 'nut_*_password' \\) 2>/dev/null",
    ).stdout
    assert found.strip() == ""
    assert docker("run", "--rm", "--entrypoint", "ls", image, "-A", "/var/run/nut").stdout.strip() == ""
    modes = docker(
        "run", "--rm", "--entrypoint", "stat", image, "-c", "%n %U:%G %a", "/var/run/nut", "/var/lib/nut-reconcile"
    )
    assert modes.stdout.split("\n")[:2] == ["/var/run/nut root:nut 2770", "/var/lib/nut-reconcile root:root 700"]


def test_no_ups_serves_my_ups_not_connected_and_turns_healthy(image: str, container_name: str) -> None:
    port = free_port()
    run_container(image, container_name, port, *FAST_HEALTH)
    assert await_true(lambda: upsc(port) == NOT_CONNECTED, AWAIT), docker("logs", container_name).stdout

    def healthy() -> bool:
        return docker("inspect", "-f", "{{.State.Health.Status}}", container_name).stdout.strip() == "healthy"

    assert await_true(healthy, AWAIT), docker("logs", container_name).stdout


def hotplug_through(image: str, container_name: str, root: Path) -> None:
    """Plug and unplug on the host's (simulated) bus; a client outside follows."""
    bus = container_sim(root)
    port = free_port()
    run_container(image, container_name, port, *FAST_HEALTH, "-v", f"{root}:{SIM_MOUNT}", *SIM_ENV)
    assert await_true(lambda: upsc(port) == NOT_CONNECTED, AWAIT), docker("logs", container_name).stdout

    start = time.monotonic()
    bus.plug("1-1")
    assert await_true(lambda: upsc(port, "battery.charge") == "77", AWAIT), docker("logs", container_name).stdout
    plug = time.monotonic() - start
    start = time.monotonic()
    bus.unplug("1-1")
    assert await_true(lambda: upsc(port) == NOT_CONNECTED, AWAIT), docker("logs", container_name).stdout
    unplug = time.monotonic() - start
    # Reported, not asserted: speed targets live in benchmarks/ (target: 2 + 2 + 1 s).
    print(f"container hotplug ({image}): plug->data {plug:.2f}s, unplug->not connected {unplug:.2f}s")

    status = json.loads(docker("exec", container_name, "nut-reconcile", "status", "--json").stdout)
    assert status["upsd"]["pid"] and status["served"]["my-ups"]["state"] == "DRIVER-NOT-CONNECTED"


def test_hotplug_on_the_host_reaches_a_client_outside(image: str, container_name: str, tmp_path: Path) -> None:
    hotplug_through(image, container_name, tmp_path)


def test_docker_stop_is_clean_within_10s_with_exit_0(image: str, container_name: str, tmp_path: Path) -> None:
    port = free_port()
    run_container(image, container_name, port, *FAST_HEALTH, "-e", "SIMULATE=1")
    assert await_true(lambda: upsc(port, "ups.mfr") == "ups-nut-smart", AWAIT), docker("logs", container_name).stdout
    inside = docker("top", container_name, "-eo", "pid,comm").stdout
    assert all(p in inside for p in ("upsd", "upsmon", "dummy-ups"))
    start = time.monotonic()
    docker("stop", "-t", "10", container_name, timeout=30)
    took = time.monotonic() - start
    state = json.loads(docker("inspect", "-f", "{{json .State}}", container_name).stdout)
    assert state["ExitCode"] == 0 and not state["OOMKilled"]
    assert took < 10  # the contract: Docker would SIGKILL at 10 s (exit 137)
    logs = docker("logs", container_name).stdout
    assert "event=signal name=SIGTERM" in logs and "event=stopped" in logs  # the agent stopped NUT itself


def test_compose_up_and_down_with_the_shipped_file_and_least_privilege(image: str, tmp_path: Path) -> None:
    if docker("ps", "-aq", "--filter", "name=^ups-nut-smart$").stdout.strip():
        pytest.skip("a container named ups-nut-smart exists already: not touching it")
    if {"ups-nut-agent", "ups-nut-logs"} & set(docker("volume", "ls", "-q").stdout.split()):
        pytest.skip("volumes ups-nut-agent/ups-nut-logs exist already: not touching them")
    port = free_port()
    # Overrides only for what this machine lacks: no /dev/bus/usb, no /run/udev, no UPS
    # (SIMULATE=1), and the port on loopback only. Everything about privilege is as shipped.
    override = tmp_path / "compose.test.yaml"
    override.write_text(
        "services:\n  ups-nut-smart:\n"
        "    volumes: !override\n      - ups-nut-agent:/var/lib/nut-reconcile\n      - ups-nut-logs:/var/log/nut\n"
        f'    ports: !override\n      - "127.0.0.1:{port}:3493"\n'
        '    environment:\n      SIMULATE: "1"\n'
    )
    compose = ["compose", "-f", str(REPO / "compose.yaml"), "-f", str(override)]
    try:
        docker(*compose, "config", "--quiet")
        docker(*compose, "up", "-d", "--no-build", timeout=180)
        assert await_true(lambda: upsc(port, "ups.mfr") == "ups-nut-smart", AWAIT), docker(*compose, "logs").stdout
        host = json.loads(docker("inspect", "ups-nut-smart").stdout)[0]["HostConfig"]
        assert host["Privileged"] is False
        assert host["DeviceCgroupRules"] == ["c 189:* rmw"]
        assert host["RestartPolicy"]["Name"] == "unless-stopped"
        # least privilege, each step as it reaches the engine
        assert host["CapDrop"] == ["ALL"]
        assert sorted(host["CapAdd"]) == ["CHOWN", "KILL", "SETGID", "SETUID"]
        assert host["SecurityOpt"] == ["no-new-privileges:true"]
        assert host["ReadonlyRootfs"] is True
        assert set(host["Tmpfs"]) == {"/opt/nut/etc", "/var/run/nut", "/tmp"}
        # ... and what it means inside: upsd runs as nut, the root filesystem takes no write,
        # the agent's dir is root's alone, and no admin user exists unless asked for.
        run = ["exec", "ups-nut-smart", "sh", "-c"]
        # uids, not names: `docker top` would name them from the host's /etc/passwd
        top = docker("top", "ups-nut-smart", "-eo", "pid,uid,comm").stdout.splitlines()[1:]
        uids = {line.split()[2]: line.split()[1] for line in top}
        assert uids["upsd"] == docker(*run, "id -u nut").stdout.strip() and uids["dummy-ups"] == "0"
        assert docker(*run, "touch /opt/nut/sbin/x", check=False).returncode != 0
        assert docker(*run, "stat -c %a /var/lib/nut-reconcile").stdout.strip() == "700"
        assert docker(*run, "grep -c '^\\[admin\\]' /opt/nut/etc/upsd.users", check=False).stdout.strip() == "0"
        assert docker(*run, "nut-reconcile health").stdout.startswith("healthy")
        docker(*compose, "down", timeout=60)
        assert docker("ps", "-aq", "--filter", "name=^ups-nut-smart$").stdout.strip() == ""
    finally:
        docker(*compose, "down", "--volumes", timeout=60, check=False)


def arm64_ready() -> None:
    """qemu for arm64 and the local arm64 base image (docker/engine-setup.sh provides both):
    under CI their absence fails the test, elsewhere it skips."""
    if not os.path.exists("/proc/sys/fs/binfmt_misc/qemu-aarch64"):
        if os.environ.get("CI"):
            pytest.fail("qemu-aarch64 is not registered (docker/engine-setup.sh does it)")
        pytest.skip("qemu-aarch64 is not registered with binfmt_misc")
    if docker("image", "inspect", ARM64_BASE, check=False).returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"{ARM64_BASE} missing (docker/engine-setup.sh builds it)")
        pytest.skip(f"{ARM64_BASE} missing: run docker/engine-setup.sh")


@BUILDS
def test_arm64_image_builds_under_emulation_and_runs(engine: None) -> None:
    arm64_ready()
    took = build(
        ARM64_IMAGE,
        "--platform",
        "linux/arm64",
        "--build-arg",
        f"BASE_IMAGE={ARM64_BASE}",
        "--build-arg",
        "NUT_SOURCE=debian",
    )
    print(f"arm64 build (emulated): {took:.0f}s")
    run = ["run", "--rm", "--platform", "linux/arm64"]
    assert docker(*run, "--entrypoint", "uname", ARM64_IMAGE, "-m").stdout.strip() == "aarch64"
    assert docker(*run, ARM64_IMAGE, "--version", timeout=120).stdout.startswith("nut-reconcile ")
    assert "Network UPS Tools upsd" in docker(*run, "--entrypoint", "/opt/nut/sbin/upsd", ARM64_IMAGE, "-V").stdout


def _tarball_reachable() -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(TARBALL_URL, method="HEAD"), timeout=5):
            return True
    except OSError:
        return False


def test_source_variant_builds_nut_2_8_4_from_the_release_tarball(engine: None) -> None:
    # Wherever networkupstools.org is reachable; this CI machine reaches only package
    # registries, so here it skips (the tests below build the same release from a copy).
    if not _tarball_reachable():
        pytest.skip(f"{TARBALL_URL} is not reachable from this machine")
    build("ups-nut-smart:release", "--platform", "linux/amd64")
    out = docker("run", "--rm", "--entrypoint", "/opt/nut/sbin/upsd", "ups-nut-smart:release", "-V").stdout
    assert "2.8.4" in out


@BUILDS
def test_the_default_image_runs_nut_2_8_4_compiled_from_source(source_image: str) -> None:
    """The image as compose.yaml builds it by default (NUT_SOURCE=tarball), from NUT's
    v2.8.4 source: not Debian's 2.8.0."""
    out = docker("run", "--rm", "--entrypoint", "/opt/nut/sbin/upsd", source_image, "-V").stdout
    assert "Network UPS Tools upsd 2.8.4" in out
    assert (
        docker(
            "image", "inspect", "-f", '{{index .Config.Labels "io.ups-nut-smart.nut-source"}}', source_image
        ).stdout.strip()
        == "tarball"
    )


@BUILDS
def test_nut_scanner_loads_libusb_in_the_trimmed_runtime(source_image: str) -> None:
    # nut-scanner opens libusb-1.0 at run time (libltdl); when it cannot it says
    # "Cannot load USB library ... USB search disabled" and finds nothing, ever.
    result = docker("run", "--rm", "--entrypoint", "nut-scanner", source_image, "-U", "-q", check=False)
    out = result.stdout + result.stderr
    assert "Cannot load USB library" not in out and "USB search disabled" not in out, out
    assert result.returncode == 0, out
    libs = docker(
        "run", "--rm", "--entrypoint", "sh", source_image, "-c", "ls /usr/lib/*/libusb-1.0.so* /usr/lib/*/libltdl.so*"
    ).stdout
    assert "libusb-1.0.so.0" in libs and "libltdl.so.7" in libs


@BUILDS
def test_the_usb_drivers_are_there_and_run(source_image: str) -> None:
    rules = docker("run", "--rm", "--entrypoint", "cat", source_image, "/opt/nut/share/nut/62-nut-usbups.rules").stdout
    assert rules.count("ATTR{idVendor}") >= 120 and "EcoFlow" in rules  # 2.8.4's table (EcoFlow arrived in 2.8.3)
    # Every driver NUT's own table names for a USB UPS, plus the USB-only ones it does not list.
    named = set(re.findall(r"^#.* - ([a-z0-9_-]+)\s*$", rules, re.MULTILINE))
    drivers = sorted(named | {"blazer_usb", "richcomm_usb", "nutdrv_atcl_usb"})
    assert "usbhid-ups" in drivers and len(drivers) >= 8
    for driver in drivers:
        out = docker("run", "--rm", "--entrypoint", f"/opt/nut/bin/{driver}", source_image, "-V", check=False)
        text = out.stdout + out.stderr
        assert "Network UPS Tools" in text and "2.8.4" in text, f"{driver}: {text}"


@BUILDS
def test_hotplug_through_the_image_built_from_source(source_image: str, container_name: str, tmp_path: Path) -> None:
    hotplug_through(source_image, container_name, tmp_path)


@BUILDS
def test_the_default_image_compiles_nut_2_8_4_for_arm64_under_emulation(engine: None) -> None:
    """What a Pi builds: NUT 2.8.4 compiled for arm64 (here under qemu: about 15 min on two
    cores), then run under emulation: the daemons are 2.8.4 and arm64, libusb loads."""
    arm64_ready()
    tarball, sha = nut_source()
    with served(tarball.parent) as base:
        took = build(
            SOURCE_ARM64_IMAGE,
            "--platform",
            "linux/arm64",
            "--build-arg",
            f"BASE_IMAGE={ARM64_BASE}",
            *source_build_args(f"{base}/{tarball.name}", sha),
        )
    print(f"NUT 2.8.4 source build (arm64, emulated): {took:.0f}s")
    run = ["run", "--rm", "--platform", "linux/arm64"]
    assert docker(*run, "--entrypoint", "uname", SOURCE_ARM64_IMAGE, "-m").stdout.strip() == "aarch64"
    upsd = docker(*run, "--entrypoint", "/opt/nut/sbin/upsd", SOURCE_ARM64_IMAGE, "-V", timeout=120).stdout
    assert "Network UPS Tools upsd 2.8.4" in upsd
    driver = docker(*run, "--entrypoint", "/opt/nut/bin/usbhid-ups", SOURCE_ARM64_IMAGE, "-V", check=False, timeout=120)
    assert "2.8.4" in driver.stdout + driver.stderr, driver.stdout + driver.stderr
    scan = docker(*run, "--entrypoint", "nut-scanner", SOURCE_ARM64_IMAGE, "-U", "-q", check=False, timeout=120)
    assert scan.returncode == 0 and "Cannot load USB library" not in scan.stdout + scan.stderr, scan.stderr
    assert docker(*run, SOURCE_ARM64_IMAGE, "--version", timeout=120).stdout.startswith("nut-reconcile ")


@pytest.fixture
def fake_nut_tarball(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A NUT-like source tree (tests/fixtures/fake-nut-src: a configure that knows a subset
    of NUT's options, programs that link libusb and libltdl) served over HTTP on loopback,
    for the pipeline's failure paths (a wrong SHA-256) and its install layout."""
    tarball = tmp_path / "nut-9.9.9.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(REPO / "tests" / "fixtures" / "fake-nut-src", arcname="nut-9.9.9")
    with served(tmp_path) as base:
        yield f"{base}/{tarball.name}", hashlib.sha256(tarball.read_bytes()).hexdigest()


def test_source_variant_pipeline_fetches_checks_builds_and_installs(
    engine: None, fake_nut_tarball: tuple[str, str]
) -> None:
    url, sha = fake_nut_tarball
    args = [
        "--platform",
        "linux/amd64",
        "--network",
        "host",
        "--build-arg",
        f"NUT_URL={url}",
        "--build-arg",
        "NUT_VERSION=9.9.9",
    ]
    wrong = docker(
        "buildx",
        "build",
        *args,
        "--build-arg",
        "NUT_SHA256=" + "0" * 64,
        "-t",
        "ups-nut-smart:bad",
        str(REPO),
        timeout=1800,
        check=False,
    )
    assert wrong.returncode != 0 and "SHA-256 mismatch" in wrong.stdout + wrong.stderr
    build("ups-nut-smart:fake-source", *args, "--build-arg", f"NUT_SHA256={sha}")
    run = ["run", "--rm", "--entrypoint", "sh", "ups-nut-smart:fake-source", "-c"]
    assert "9.9.9 (fake" in docker(*run, "/opt/nut/sbin/upsd -V").stdout
    layout = docker(
        *run,
        "ls /opt/nut/bin /opt/nut/sbin /opt/nut/lib; test -s /opt/nut/share/nut/62-nut-usbups.rules "
        "&& echo rules; find /opt/nut -name '*.a' -o -name '*.la' -o -path '*/man/*'",
    ).stdout
    assert "nut-scanner" in layout and "upsdrvctl" in layout and "rules" in layout
    assert ".a\n" not in layout and ".la" not in layout and "/man/" not in layout
    assert docker(*run, "command -v gcc make || echo none").stdout.strip() == "none"
    docker("image", "rm", "ups-nut-smart:fake-source", check=False)
