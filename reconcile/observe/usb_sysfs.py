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


Seen = dict[str, tuple[tuple[int, int], UsbDevice]]


def scan(root: Path, seen: Seen | None = None) -> list[UsbDevice]:
    """All USB devices under root, sorted by port. A missing root means no USB at all: [].

    `seen` (kept by a long-running caller) skips re-reading a device whose directory is
    the same one as before: the kernel makes a new one for every (re)enumeration, and a
    device's attributes never change in place, so (inode, ctime) tells a new device from
    one already read. A tick then costs a directory listing and a stat per device.
    """
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = [e.name for e in entries]
    devices = []
    for entry in entries:
        name = entry.name
        if not _DEVICE_NAME.fullmatch(name):
            continue
        key = None
        if seen is not None:
            try:
                st = os.stat(entry.path)  # follows sysfs's symlink to the device's directory
            except OSError:
                continue
            key = (st.st_ino, st.st_ctime_ns)
            known = seen.get(name)
            if known is not None and known[0] == key:
                devices.append(known[1])
                continue
        # A device being plugged or unplugged right now may be half there: skip it this
        # tick; the settle time makes us look again before acting.
        device = read_device(root / name)
        if device is not None:
            devices.append(device)
            if seen is not None and key is not None:
                seen[name] = (key, device)
    if seen is not None:
        for gone in set(seen) - set(names):
            del seen[gone]
    return sorted(devices, key=lambda d: d.port)
