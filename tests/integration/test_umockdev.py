"""Real libusb, pyusb and nut-scanner, with a simulated USB device under umockdev."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import REPO
from tests.helpers import FIXTURES

pytestmark = pytest.mark.umockdev


def run_under_umockdev(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, expect: int = 0
) -> dict[str, object]:
    if shutil.which("umockdev-run") is None or shutil.which("nut-scanner") is None:
        if os.environ.get("CI"):
            pytest.fail("umockdev-run or nut-scanner missing: .ci/run installs umockdev and nut-client")
        pytest.skip("needs umockdev and nut-scanner (apt-get install umockdev nut-client)")
    (tmp_path / "conf").mkdir(exist_ok=True)
    (tmp_path / "state").mkdir(exist_ok=True)
    result = subprocess.run(
        [
            "umockdev-run",
            "--device",
            str(FIXTURES / "apc-backups.umockdev"),
            "--",
            sys.executable,
            "-m",
            "reconcile",
            *args,
        ],
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(REPO),
            "NUT_CONFPATH": str(tmp_path / "conf"),
            "NUT_STATEPATH": str(tmp_path / "state"),
            "LOG_FILE": "",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == expect, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_sysfs_libusb_pyusb_and_nut_scanner_all_see_the_simulated_ups(tmp_path: Path) -> None:
    # USB_SYSFS_ROOT is left at /sys/bus/usb/devices, which umockdev redirects.
    data = run_under_umockdev(tmp_path, "scan", "--all", "--json")
    devices = data["devices"]
    assert isinstance(devices, list) and len(devices) == 1
    ups = devices[0]
    assert (ups["vendorid"], ups["productid"], ups["port"]) == ("051d", "0002", "1-1")
    assert ups["serial"] == "3B1234X56789"  # read from sysfs, device never opened
    assert ups["manufacturer"] == "American Power Conversion"
    assert ups["name"] == "my-ups"
    # nut-scanner (real, through libusb) chose the driver:
    assert (ups["driver"], ups["driver_from"]) == ("usbhid-ups", "nut-scanner")
    assert data["nut_scanner"] == {"051d:0002": "usbhid-ups"}
    # pyusb through a fresh libusb context found it too:
    assert data["libusb"] == ["051d:0002 bus 1 device 2"]


def test_without_sysfs_the_scan_falls_back_to_libusb(tmp_path: Path) -> None:
    data = run_under_umockdev(tmp_path, "scan", "--json", env={"USB_SYSFS_ROOT": str(tmp_path / "no-sysfs")})
    devices = data["devices"]
    assert isinstance(devices, list) and len(devices) == 1
    assert (devices[0]["vendorid"], devices[0]["productid"], devices[0]["port"]) == ("051d", "0002", "1-1")
    assert devices[0]["serial"] == ""  # libusb alone: no string descriptors without opening the device
    assert devices[0]["driver"] == "usbhid-ups"


def test_plan_under_umockdev_renders_a_usbhid_section_matching_by_identity(tmp_path: Path) -> None:
    data = run_under_umockdev(tmp_path, "plan", "--json", expect=2)  # 2: changes pending
    steps = data["steps"]
    assert isinstance(steps, list)
    diff = next(s["diff"] for s in steps if s.get("file") == "ups.conf")
    assert '+  driver = "usbhid-ups"' in diff
    assert '+  vendorid = "051d"' in diff and '+  productid = "0002"' in diff
    assert '+  serial = "3B1234X56789"' in diff
    assert "bus =" not in diff and "device =" not in diff


def test_a_long_running_process_sees_add_and_remove_on_the_next_scan() -> None:
    wrapper = shutil.which("umockdev-wrapper")
    probe_deps = subprocess.run(
        ["/usr/bin/python3", "-c", "import gi, usb; gi.require_version('UMockdev', '1.0')"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if wrapper is None or probe_deps.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("needs umockdev, python3-gi, gir1.2-umockdev-1.0, python3-usb (.ci/run installs them)")
        pytest.skip("needs umockdev, python3-gi, gir1.2-umockdev-1.0 and python3-usb from Debian")
    result = subprocess.run(
        [
            wrapper,
            "/usr/bin/python3",
            str(Path(__file__).with_name("umockdev_probe.py")),
            str(FIXTURES / "apc-backups.umockdev"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["before"] == {"sysfs": [], "libusb": []}
    assert seen["plugged"] == {"sysfs": ["051d:0002 1-1 3B1234X56789"], "libusb": ["051d:0002 1-1"]}
    assert seen["unplugged"] == {"sysfs": [], "libusb": []}
