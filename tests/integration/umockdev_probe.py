"""Run by test_umockdev under `umockdev-wrapper /usr/bin/python3` (Debian's python3: the
UMockdev GObject API comes from Debian's python3-gi, not from PyPI).

One long-running process: a device is added, then removed, at run time; the agent's two
scanners (sysfs, and libusb with a fresh context) must see each change on their next call.
Prints the observations as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

from reconcile.observe import usb_libusb, usb_sysfs  # noqa: E402

SYSFS = Path("/sys/bus/usb/devices")
DEVICE = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1"  # the fixture's P: line


def snapshot() -> dict[str, list[str]]:
    return {
        "sysfs": [f"{d.vidpid} {d.port} {d.serial}" for d in usb_sysfs.scan(SYSFS)],
        "libusb": [f"{d.vidpid} {d.port}" for d in usb_libusb.scan()],
    }


def main() -> None:
    testbed = UMockdev.Testbed.new()
    out = {"before": snapshot()}
    if not testbed.add_from_file(sys.argv[1]):
        raise SystemExit(f"umockdev could not add {sys.argv[1]}")
    out["plugged"] = snapshot()
    testbed.remove_device(DEVICE)
    out["unplugged"] = snapshot()
    print(json.dumps(out))


main()
