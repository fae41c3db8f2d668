"""Which USB devices are UPSes, and which driver serves each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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
    return upses
