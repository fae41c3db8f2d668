"""NUT names for UPSes: which one is the primary (`my-ups`) and stable names for the rest.

The rule, in order:
1. A [[device]] rule that pins a name gives that name (pinning UPS_NAME makes it primary).
2. The UPS that holds the primary name keeps it while it stays attached, across agent
   restarts (the holder is persisted), so dashboards never jump to another unit.
3. When the holder is gone, the attached UPS on the lowest bus/port (e.g. 1-1 before
   1-1.2 before 2-1) becomes primary: a single UPS swapped for another model is my-ups.
4. Every other UPS gets `<UPS_NAME>-<n>` (n = 2, 3, ...), assigned when first seen and
   persisted by fingerprint, so it survives restarts and replugs on another port. A
   name stays reserved for its device while that device is away, up to NAMES_FORGET_DAYS
   (30 by default): a fingerprint not seen for that long is forgotten and its name freed,
   unless a [[device]] rule describes that very unit (its serial). Why: a UPS whose
   serial changes at each enumeration would otherwise take a new name forever.
   The day a fingerprint was last seen is kept in whole days, so names.json changes at
   most once a day per UPS (the state dir may be an SD card).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reconcile.model import DeviceRule, Ups
from reconcile.nutsyntax import NutSyntaxError, is_printable_ascii, validate_name

_KEY_MAX = 512


@dataclass(frozen=True)
class NameBook:
    """What is persisted between runs (state dir, names.json)."""

    primary: str | None = None  # key (Ups.key) of the UPS holding the primary name
    names: dict[str, str] = field(default_factory=dict)  # key -> secondary name
    seen: dict[str, int] = field(default_factory=dict)  # key -> the day (since 1970) it was last attached

    def to_json(self) -> dict[str, object]:
        return {
            "primary": self.primary,
            "names": dict(sorted(self.names.items())),
            "seen": dict(sorted(self.seen.items())),
        }

    @classmethod
    def from_json(cls, data: object) -> NameBook:
        """Validated like any input: every name must be one NUT can be given safely,
        since it goes into ups.conf and upsmon.conf (upsmon runs as root)."""
        if not isinstance(data, dict) or set(data) - {"primary", "names", "seen"}:
            raise ValueError("not a JSON object with 'primary', 'names' and 'seen'")
        primary = data.get("primary")
        names = data.get("names", {})
        seen = data.get("seen", {})  # absent in files of earlier versions
        if not isinstance(seen, dict) or not all(
            _good_key(k) and isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1_000_000
            for k, d in seen.items()
        ):
            raise ValueError("'seen' must map device keys to a day number")
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
        return cls(primary, dict(names), dict(seen))


def _good_key(key: object) -> bool:
    return isinstance(key, str) and 0 < len(key) <= _KEY_MAX and is_printable_ascii(key)


def _port_key(port: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.split(r"[-.]", port) if n.isdigit())


def pins(rule: DeviceRule, key: str) -> bool:
    """Whether `rule` describes the one unit `key` names: its VID:PID and serial match."""
    if rule.ignore or not rule.serial:
        return False
    vidpid, _, rest = key.partition(":serial=")
    vendorid, _, productid = vidpid.partition(":")
    return (
        rest.split(":port=")[0] == rule.serial
        and rule.vendorid in (None, vendorid)
        and rule.productid in (None, productid)
    )


def forget_old(book: NameBook, today: int, after_days: int, rules: tuple[DeviceRule, ...]) -> NameBook:
    """The book without the fingerprints not seen for more than `after_days` (0: never
    forget), unless a rule pins them. An entry with no day yet (an earlier version's
    file) starts its clock today."""
    if after_days <= 0:
        return book
    keys = set(book.names) | ({book.primary} if book.primary else set())
    seen = {k: book.seen.get(k, today) for k in keys}
    old = {k for k, day in seen.items() if today - day > after_days and not any(pins(r, k) for r in rules)}
    if not old and seen == book.seen:
        return book
    return NameBook(
        None if book.primary in old else book.primary,
        {k: n for k, n in book.names.items() if k not in old},
        {k: d for k, d in seen.items() if k not in old},
    )


def assign(
    upses: list[Ups],
    book: NameBook,
    primary_name: str,
    today: int = 0,
    forget_after_days: int = 0,
    rules: tuple[DeviceRule, ...] = (),
) -> tuple[dict[str, str], NameBook]:
    """Names by key (Ups.key) for the attached UPSes, and the updated book (`today`: the
    day number, for aging out; forget_after_days 0 never forgets)."""
    book = forget_old(book, today, forget_after_days, rules)
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
    if forget_after_days <= 0:
        return names, NameBook(new_primary, secondary, dict(book.seen))
    kept = set(secondary) | ({new_primary} if new_primary else set())
    seen = {k: (today if k in attached else book.seen.get(k, today)) for k in kept}
    return names, NameBook(new_primary, secondary, seen)
