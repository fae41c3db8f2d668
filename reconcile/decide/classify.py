"""Which USB devices are UPSes, and which driver serves each."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace

from reconcile.model import DeviceRule, Ups, UsbDevice
from reconcile.observe.driver_table import DriverTable


def rule_for(device: UsbDevice, rules: Iterable[DeviceRule]) -> DeviceRule | None:
    """The first [[device]] rule matching the device, in file order."""
    return next((r for r in rules if r.matches(device)), None)


def classify(
    devices: Iterable[UsbDevice],
    table: DriverTable,
    scanner: Mapping[str, str],
    rules: Iterable[DeviceRule],
) -> list[Ups]:
    """UPSes among the devices. Driver precedence: the user's rule, then nut-scanner,
    then NUT's udev rules table. A device none of them knows is not a UPS."""
    rules = tuple(rules)
    upses = []
    for dev in devices:
        rule = rule_for(dev, rules)
        if rule is not None and rule.ignore:
            continue
        if rule is not None and rule.driver:
            driver, origin = rule.driver, "rule"
        elif dev.vidpid in scanner:
            driver, origin = scanner[dev.vidpid], "nut-scanner"
        elif table.lookup(dev.vidpid):
            driver, origin = table.by_vidpid[dev.vidpid], "udev-rules"
        else:
            continue
        upses.append(Ups(usb=dev, driver=driver, driver_from=origin, usb_driver=table.is_usb_driver(driver), rule=rule))
    return mark_twins(upses)


def mark_twins(upses: list[Ups]) -> list[Ups]:
    """Units that report the same VID:PID:serial (cheap UPSes often say 000000000000) can
    only be told apart by their USB port: mark them, so each gets its own name and driver."""
    counts = Counter(u.usb.fingerprint for u in upses)
    return [replace(u, twin=counts[u.usb.fingerprint] > 1) for u in upses]


def twin_warnings(upses: Iterable[Ups]) -> list[str]:
    by_fp: dict[str, list[str]] = {}
    for u in upses:
        if u.twin:
            by_fp.setdefault(u.usb.fingerprint, []).append(u.usb.port)
    return [
        f"USB ports {', '.join(sorted(ports))} hold UPSes that all report {fp}: they are told apart by "
        "port, so their names follow the port (plug one into another port and the names may move)"
        for fp, ports in sorted(by_fp.items())
    ]
