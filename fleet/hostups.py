"""Which UPS powers a host: host data `host_ups` (and `host_minsupplies`), for the Pi's own
upsmon and each nut_clients host alike. Pure.

A host's upsmon must MONITOR the UPS that feeds it by the name upsd serves it under. A
[[device]] rule that pins a name (`name = "cabin-ups"`) serves that UPS as cabin-ups, not
as `ups_name`, so a MONITOR of `ups_name` watches a placeholder ("Driver not connected")
and never sees OB, LB or FSD. So, unless host_ups says otherwise, a host watches:

- the name pinned by the one rule that powers the host (`powers_host`, default true, and
  not `ignore`), else
- `ups_name` (the first UPS without a pinned name).

Two such rules that pin different names are ambiguous: which one's low battery must halt
the host is the owner's to say (host_ups), and the rollout refuses to guess.
Several UPSes feeding one host (a dual-PSU server) are NUT's MINSUPPLIES: one MONITOR line
each, and the host halts when fewer than MINSUPPLIES of them can still feed it
(`host_minsupplies`, default all of them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from reconcile.nutsyntax import NutSyntaxError, validate_name
from reconcile.userconfig import ConfigError
from reconcile.userconfig import parse as parse_agent_config


class DeviceRule(Protocol):
    """What is read here of the agent's [[device]] rule (reconcile's DeviceRule)."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str | None: ...
    @property
    def powers_host(self) -> bool: ...
    @property
    def ignore(self) -> bool: ...


class SupplyError(ValueError):
    """Bad or ambiguous host_ups / host_minsupplies data; `key` is the host data key at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def rules_of(devices: Iterable[dict[str, Any]]) -> Sequence[DeviceRule]:
    """The [[device]] rules, read by the agent's own parser. Raises SupplyError (devices)."""
    try:
        return parse_agent_config({"device": [dict(d) for d in devices]}).rules
    except (ConfigError, TypeError) as exc:
        raise SupplyError("devices", str(exc)) from None


def _where(rule: DeviceRule) -> str:
    return f"device[{rule.index}] ({rule.name})"


def default(ups_name: str, rules: Iterable[DeviceRule]) -> tuple[str, ...]:
    """host_ups when the host data gives none. Raises SupplyError when two rules that power
    the host pin different names (the message names them)."""
    powering = [r for r in rules if r.name and r.powers_host and not r.ignore]
    names = sorted({str(r.name) for r in powering})
    if len(names) > 1:
        raise SupplyError(
            "host_ups",
            f"none given, and {', '.join(_where(r) for r in powering)} all power this host "
            "(powers_host, default true) and pin different names: set host_ups to the UPS whose low battery "
            f"must halt it (e.g. {names[0]!r}), or to a list of them if several feed it (one MONITOR each, "
            "NUT's MINSUPPLIES), or set powers_host = false on the rule of a UPS that does not feed it",
        )
    return (names[0],) if names else (ups_name,)


def resolve(
    ups_name: str, devices: Iterable[dict[str, Any]], given: Any, minsupplies: Any
) -> tuple[tuple[str, ...], int]:
    """(the UPSes that power the host, its MINSUPPLIES), from its data: `given` is host_ups
    (None, a name or a list of names), `minsupplies` host_minsupplies (None: all of them).
    Raises SupplyError naming the key."""
    rules = rules_of(devices)
    if given is None:
        upses = default(ups_name, rules)
    else:
        upses = names(given, "host_ups")
        served(upses, ups_name, rules, "host_ups")
        pinned = {str(r.name): r for r in rules if r.name}
        for name in upses:
            rule = pinned.get(name)
            if rule is not None and (rule.ignore or not rule.powers_host):
                why = "ignore = true: it is never served" if rule.ignore else "powers_host = false"
                raise SupplyError("host_ups", f"{name!r} is pinned by device[{rule.index}], which says {why}")
    return upses, count(minsupplies, len(upses), "host_minsupplies")


def served(upses: Iterable[str], ups_name: str, rules: Iterable[DeviceRule], key: str) -> None:
    """Raises SupplyError for a name the Pi can never serve (a typo): what the agent names
    a UPS is ups_name, a rule's pinned name, or ups_name-N for the second and later."""
    pinned = sorted({str(r.name) for r in rules if r.name})
    for name in upses:
        if name == ups_name or name in pinned or re.fullmatch(re.escape(ups_name) + r"-[2-9][0-9]*", name):
            continue
        known = [f"{ups_name!r} (ups_name)", *(f"{n!r} (pinned by devices)" for n in pinned)]
        raise SupplyError(
            key,
            f"{name!r} is no name the Pi serves a UPS under: its UPSes are {', '.join(known)}, "
            f"and {ups_name}-2, {ups_name}-3... for more (a typo? else pin the name with a devices rule)",
        )


def names(value: Any, key: str) -> tuple[str, ...]:
    """A UPS name or a non-empty list of distinct ones, each one NUT takes. Raises SupplyError."""
    listed = [value] if isinstance(value, str) else value
    if not isinstance(listed, list | tuple) or not listed or not all(isinstance(n, str) for n in listed):
        raise SupplyError(key, f'{value!r} is not a UPS name or a list of them (e.g. "cabin-ups")')
    for name in listed:
        try:
            validate_name(name, "name")
        except NutSyntaxError as exc:
            # "name='my ups' is not a valid UPS name: ..." -> "'my ups' is not ...": the key is named by the caller.
            raise SupplyError(key, str(exc).removeprefix("name=")) from None
        if listed.count(name) > 1:
            raise SupplyError(key, f"{name!r} is given twice")
    return tuple(listed)


def count(value: Any, supplies: int, key: str) -> int:
    """MINSUPPLIES: None is all `supplies`; else a whole number from 1 to `supplies`."""
    if value is None:
        return supplies
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= supplies:
        raise SupplyError(
            key, f"{value!r} is not a whole number from 1 to {supplies} (the number of UPSes this host watches)"
        )
    return value
