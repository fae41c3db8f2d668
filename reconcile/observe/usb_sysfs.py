"""Enumerate USB devices from sysfs (USB_SYSFS_ROOT, default /sys/bus/usb/devices).

Why sysfs and not only libusb: sysfs sees an add or remove at once (libusb's cached
context in a container without udev events does not), and serial, manufacturer and
product are plain files there, so no device is ever opened while a driver owns it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from reconcile.model import UsbDevice
from reconcile.nutsyntax import is_printable_ascii, printable_ascii

_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
# Device entries are "<bus>-<port>[.<port>...]"; interfaces ("1-1:1.0") and root hubs
# ("usb1") are not devices a UPS can be.
_DEVICE_NAME = re.compile(r"\d+-\d+(\.\d+)*")
_MAX_ATTR = 256


def _attr(path: Path, name: str) -> str | None:
    try:
        with open(path / name, "rb") as handle:
            raw = handle.read(_MAX_ATTR)
    except OSError:
        return None
    return raw.decode("utf-8", errors="replace").rstrip("\n")


def read_device(path: Path) -> UsbDevice | None:
    """One sysfs device directory, or None when it is not a complete USB device (yet)."""
    vid, pid = _attr(path, "idVendor"), _attr(path, "idProduct")
    busnum, devnum = _attr(path, "busnum"), _attr(path, "devnum")
    if not (vid and pid and _HEX4.fullmatch(vid) and _HEX4.fullmatch(pid)):
        return None
    if not (busnum and devnum and busnum.isdigit() and devnum.isdigit()):
        return None
    serial_raw = _attr(path, "serial") or ""
    return UsbDevice(
        port=path.name,
        vendorid=vid.lower(),
        productid=pid.lower(),
        busnum=int(busnum),
        devnum=int(devnum),
        serial=printable_ascii(serial_raw),
        manufacturer=printable_ascii(_attr(path, "manufacturer") or ""),
        product=printable_ascii(_attr(path, "product") or ""),
        serial_raw_ok=is_printable_ascii(serial_raw.strip()),
    )


def appeared(root: Path, ports: list[str]) -> dict[str, float]:
    """When each device entry appeared (wall clock), from its sysfs mtime.

    sysfs stamps an entry's inode when it is made: at enumeration, or at the first look
    after it (kernfs makes inodes lazily). Either way never before the device arrived,
    so using it to shorten the settle wait is safe; it can only be too late, never early.
    """
    times = {}
    for port in ports:
        try:
            times[port] = os.stat(root / port).st_mtime
        except OSError:
            continue
    return times


def scan(root: Path) -> list[UsbDevice]:
    """All USB devices under root, sorted by port. A missing root means no USB at all: []."""
    try:
        names = os.listdir(root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    devices = []
    for name in names:
        if not _DEVICE_NAME.fullmatch(name):
            continue
        # A device being plugged or unplugged right now may be half there: skip it this
        # tick; the settle time makes us look again before acting.
        device = read_device(root / name)
        if device is not None:
            devices.append(device)
    return sorted(devices, key=lambda d: d.port)
