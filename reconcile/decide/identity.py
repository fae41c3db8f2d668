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


@dataclass(frozen=True)
class NameBook:
    """What is persisted between runs (state dir, names.json)."""

    primary: str | None = None  # fingerprint of the UPS holding the primary name
    names: dict[str, str] = field(default_factory=dict)  # fingerprint -> secondary name

    def to_json(self) -> dict[str, object]:
        return {"primary": self.primary, "names": dict(sorted(self.names.items()))}

    @classmethod
    def from_json(cls, data: object) -> NameBook:
        if not isinstance(data, dict):
            raise ValueError("names file: not a JSON object")
        primary = data.get("primary")
        names = data.get("names", {})
        if primary is not None and not isinstance(primary, str):
            raise ValueError("names file: 'primary' must be a string or null")
        if not isinstance(names, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in names.items()):
            raise ValueError("names file: 'names' must map strings to strings")
        return cls(primary, dict(names))


def _port_key(port: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.split(r"[-.]", port) if n.isdigit())


def assign(upses: list[Ups], book: NameBook, primary_name: str) -> tuple[dict[str, str], NameBook]:
    """Names by fingerprint for the attached UPSes, and the updated book."""
    names: dict[str, str] = {}
    attached = {u.usb.fingerprint: u for u in upses}
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
    secondary = {fp: n for fp, n in book.names.items() if fp != primary_fp and n not in pinned_taken}
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
