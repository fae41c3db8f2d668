"""Which NUT driver serves which USB VID:PID, from NUT's own generated udev rules.

NUT installs 62-nut-usbups.rules with every supported VID:PID and, in the comment
above each, the driver: `#  HP T750 INTL  - usbhid-ups` then
`ATTR{idVendor}=="03f0", ATTR{idProduct}=="1f06", ...`. Reading it keeps us in step
with the NUT version in use instead of a vendor list of our own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_COMMENT = re.compile(r"#.*\s-\s+([a-z0-9_-]+)\s*$")
_ATTRS = re.compile(r'ATTR\{idVendor\}=="([0-9a-fA-F]{4})",\s*ATTR\{idProduct\}=="([0-9a-fA-F]{4})"')


@dataclass(frozen=True)
class DriverTable:
    by_vidpid: dict[str, str]  # "051d:0002" -> "usbhid-ups"; the first rule listed wins
    source: str | None

    @property
    def usb_drivers(self) -> frozenset[str]:
        return frozenset(self.by_vidpid.values()) | {"usbhid-ups"}

    def is_usb_driver(self, driver: str) -> bool:
        """Whether the driver matches USB devices (vendorid=, serial=, port=auto).
        NUT names its USB-only drivers *_usb; the rest are listed in the rules."""
        return driver in self.usb_drivers or driver.endswith("_usb")

    def lookup(self, vidpid: str) -> str | None:
        return self.by_vidpid.get(vidpid)


def parse(text: str, source: str | None = None) -> DriverTable:
    table: dict[str, str] = {}
    driver: str | None = None
    for line in text.splitlines():
        comment = _COMMENT.match(line.strip())
        if comment:
            driver = comment.group(1)
            continue
        attrs = _ATTRS.search(line)
        if attrs and driver:
            table.setdefault(f"{attrs.group(1).lower()}:{attrs.group(2).lower()}", driver)
    return DriverTable(table, source)


def load(path: str | None) -> DriverTable:
    if path is None:
        return DriverTable({}, None)
    return parse(Path(path).read_text(encoding="utf-8", errors="replace"), path)
