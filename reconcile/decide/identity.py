"""NUT names for UPSes: which one is the primary (`my-ups`) and stable names for the rest.

The rule, in order:
1. A [[device]] rule that pins a name gives that name (pinning UPS_NAME makes it primary).
2. The UPS that holds the primary name keeps it while it stays attached, across agent
   restarts (the holder is persisted), so dashboards never jump to another unit.
3. When the holder is gone, the attached UPS on the lowest bus/port (e.g. 1-1 before
   1-1.2 before 2-1) becomes primary: a single UPS swapped for another model is my-ups.
4. Every other UPS gets `<UPS_NAME>-<n>` (n = 2, 3, ...), assigned when first seen and
   persisted by fingerprint, so it survives restarts and replugs on another port. A
   name stays reserved for its device while that device is away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reconcile.model import Ups
from reconcile.nutsyntax import NutSyntaxError, is_printable_ascii, validate_name

_KEY_MAX = 512


@dataclass(frozen=True)
class NameBook:
    """What is persisted between runs (state dir, names.json)."""

    primary: str | None = None  # key (Ups.key) of the UPS holding the primary name
    names: dict[str, str] = field(default_factory=dict)  # key -> secondary name

    def to_json(self) -> dict[str, object]:
        return {"primary": self.primary, "names": dict(sorted(self.names.items()))}

    @classmethod
    def from_json(cls, data: object) -> NameBook:
        """Validated like any input: every name must be one NUT can be given safely,
        since it goes into ups.conf and upsmon.conf (upsmon runs as root)."""
        if not isinstance(data, dict) or set(data) - {"primary", "names"}:
            raise ValueError("not a JSON object with 'primary' and 'names'")
        primary = data.get("primary")
        names = data.get("names", {})
        if primary is not None and not _good_key(primary):
            raise ValueError("'primary' must be a device key (printable ASCII) or null")
        if not isinstance(names, dict):
            raise ValueError("'names' must map device keys to UPS names")
        for key, name in names.items():
            if not _good_key(key) or not isinstance(name, str):
                raise ValueError("'names' must map device keys (printable ASCII) to UPS names")
            try:
                validate_name(name, "a name in 'names'")
            except NutSyntaxError as exc:
                raise ValueError(str(exc)) from None
        if len(set(names.values())) != len(names):
            raise ValueError("'names' gives one UPS name to more than one device")
        return cls(primary, dict(names))


def _good_key(key: object) -> bool:
    return isinstance(key, str) and 0 < len(key) <= _KEY_MAX and is_printable_ascii(key)


def _port_key(port: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.split(r"[-.]", port) if n.isdigit())


def assign(upses: list[Ups], book: NameBook, primary_name: str) -> tuple[dict[str, str], NameBook]:
    """Names by key (Ups.key) for the attached UPSes, and the updated book."""
    names: dict[str, str] = {}
    attached = {u.key: u for u in upses}
    # 1. pinned names
    for fp, ups in attached.items():
        if ups.rule is not None and ups.rule.name:
            names[fp] = ups.rule.name
    pinned_taken = set(names.values())
    # 2./3. the primary
    primary_fp = next((fp for fp, n in names.items() if n == primary_name), None)
    if primary_fp is None and primary_name not in pinned_taken:
        free = [fp for fp in attached if fp not in names]
        if book.primary in free:
            primary_fp = book.primary
        elif free:
            primary_fp = min(free, key=lambda fp: (_port_key(attached[fp].usb.port), fp))
        if primary_fp is not None:
            names[primary_fp] = primary_name
    # 4. the others keep or get a secondary name
    secondary = {
        fp: n for fp, n in book.names.items() if fp != primary_fp and n not in pinned_taken and n != primary_name
    }
    reserved = set(secondary.values()) | set(names.values())
    for fp in sorted(attached, key=lambda fp: (_port_key(attached[fp].usb.port), fp)):
        if fp in names:
            continue
        if fp not in secondary:
            n = 2
            while f"{primary_name}-{n}" in reserved:
                n += 1
            secondary[fp] = f"{primary_name}-{n}"
            reserved.add(secondary[fp])
        names[fp] = secondary[fp]
    new_primary = primary_fp if primary_fp is not None else book.primary
    return names, NameBook(new_primary, secondary)
