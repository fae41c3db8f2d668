"""The plan: a pure function from (desired, actual) to ordered steps.

NUT's safe order (see README, "How a change is applied"):
  unplug: MONITOR out -> reload upsmon -> stop driver -> section out -> reload upsd
  plug:   section in -> start driver -> reload upsd -> MONITOR in -> reload upsmon
Both can happen in one plan (a swap), so the steps run in phases:
  A. upsmon.conf without the MONITORs that go away; reload upsmon
  B. stop the drivers whose section goes away or changes (before the section leaves
     ups.conf: NUT finds a driver through its section)
  C. write ups.conf, upsd.conf, upsd.users, nut.conf
  D. start the drivers that are new, changed, dead, or asked to restart
  E. start upsd, restart it (upsd.conf changed: LISTEN needs a restart), or reload it
  F. upsmon.conf with the new MONITORs; start or reload upsmon
Files we do not manage (no header, or read-only) are never written: they are
reported and what they say is used as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from reconcile.model import Action, ActualState, Plan, Skipped, Step, WriteFile
from reconcile.nutsyntax import NutSyntaxError, section_drivers, tokenize

_HEADER_LINE = re.compile(r"^\s*\[([^\]]*)\]\s*$")


@dataclass(frozen=True)
class Desired:
    files: dict[str, str]
    upsmon_enabled: bool
    placeholders: frozenset[str]  # sections to serve with no driver
    # upsmon.conf as it would be with only these MONITORs (for phase A)
    upsmon_with: Callable[[tuple[str, ...]], str]


def section_blocks(text: str | None) -> dict[str, str]:
    """ups.conf section name -> its text, to tell which sections changed."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (text or "").splitlines():
        header = _HEADER_LINE.match(line)
        if header:
            current = blocks.setdefault(header.group(1), [])
        if current is not None:
            current.append(line.rstrip())
    return {name: "\n".join(lines).strip() for name, lines in blocks.items()}


def monitored(text: str | None) -> tuple[str, ...]:
    """UPS names in upsmon.conf MONITOR lines."""
    names = []
    for words in tokenize(text or ""):
        if words[0] == "MONITOR" and len(words) > 1:
            names.append(words[1].split("@", 1)[0])
    return tuple(names)


def make_plan(desired: Desired, actual: ActualState, restart: frozenset[str] = frozenset()) -> Plan:
    skipped: list[Skipped] = []
    warnings: list[str] = []
    final: dict[str, str | None] = {}
    to_write: dict[str, WriteFile] = {}
    for name, content in desired.files.items():
        state = actual.files[name]
        if state.content == content:
            final[name] = content
        elif not state.managed:
            skipped.append(Skipped(name, "has no nut-reconcile header: left as it is, its content is used"))
            final[name] = state.content
        elif not state.writable:
            skipped.append(Skipped(name, "is read-only: left as it is, its content is used"))
            final[name] = state.content
        else:
            final[name] = content
            reason = "create" if state.content is None else "update"
            to_write[name] = WriteFile(name, content, state.content, reason)

    old_ups = actual.files["ups.conf"].content
    new_ups = final["ups.conf"]
    try:
        new_drivers = section_drivers(new_ups)
        if new_ups == desired.files["ups.conf"]:
            new_drivers = {ups: d for ups, d in new_drivers.items() if ups not in desired.placeholders}
    except NutSyntaxError as exc:
        warnings.append(f"ups.conf cannot be parsed ({exc}): no driver is started")
        new_drivers = {}
    old_blocks, new_blocks = section_blocks(old_ups), section_blocks(new_ups)
    try:
        old_mon = monitored(actual.files["upsmon.conf"].content)
    except NutSyntaxError:
        old_mon = ()
    try:
        new_mon = monitored(final["upsmon.conf"])
    except NutSyntaxError as exc:
        warnings.append(f"upsmon.conf cannot be parsed ({exc})")
        new_mon = old_mon
    upsmon_running = actual.upsmon_pid is not None

    steps: list[Step] = []
    # A. MONITORs out first, so upsmon never watches a UPS that is about to vanish.
    gone = [m for m in old_mon if m not in new_mon]
    if gone and upsmon_running and "upsmon.conf" in to_write:
        kept = tuple(m for m in old_mon if m in new_mon)
        added = [m for m in new_mon if m not in old_mon]
        content = desired.upsmon_with(kept) if added else to_write["upsmon.conf"].content
        steps.append(WriteFile("upsmon.conf", content, to_write["upsmon.conf"].old, f"stop watching {', '.join(gone)}"))
        steps.append(Action("reload_upsmon", f"stop watching {', '.join(gone)}", pid=actual.upsmon_pid))
        if not added:
            del to_write["upsmon.conf"]

    # B. drivers down, while their section is still in ups.conf.
    stopped: set[str] = set()
    for ups, proc in sorted(actual.drivers.items()):
        if ups not in new_drivers:
            reason = "UPS gone"
        elif new_drivers[ups] != proc.driver:
            reason = f"driver changes to {new_drivers[ups]}"
        elif new_blocks.get(ups) != old_blocks.get(ups):
            reason = "section changed (new device, replug or options)"
        elif ups in restart:
            reason = "restart requested (data stale)"
        else:
            continue
        steps.append(Action("stop_driver", reason, ups=ups, driver=proc.driver, pid=proc.pid))
        stopped.add(ups)

    # C. the files upsd and the drivers read.
    for name in ("nut.conf", "ups.conf", "upsd.conf", "upsd.users"):
        if name in to_write:
            steps.append(to_write.pop(name))

    # D. drivers up.
    for ups, driver in sorted(new_drivers.items()):
        if not driver:
            warnings.append(f"ups.conf section [{ups}] has no driver")
        elif ups not in actual.drivers:
            steps.append(
                Action("start_driver", "new UPS" if ups not in old_blocks else "not running", ups=ups, driver=driver)
            )
        elif ups in stopped:
            steps.append(Action("start_driver", "restart", ups=ups, driver=driver))

    # E. upsd.
    written = {s.name for s in steps if isinstance(s, WriteFile)}
    if actual.upsd_pid is None:
        steps.append(Action("start_upsd", "not running"))
    elif "upsd.conf" in written:
        steps.append(Action("stop_upsd", "upsd.conf changed (LISTEN needs a restart)", pid=actual.upsd_pid))
        steps.append(Action("start_upsd", "upsd.conf changed"))
    elif written & {"ups.conf", "upsd.users"}:
        steps.append(Action("reload_upsd", "ups.conf or upsd.users changed", pid=actual.upsd_pid))

    # F. upsmon last: only now do the new UPSes exist in upsd.
    if desired.upsmon_enabled:
        if "upsmon.conf" in to_write:
            steps.append(to_write.pop("upsmon.conf"))
            if upsmon_running:
                steps.append(Action("reload_upsmon", "upsmon.conf changed", pid=actual.upsmon_pid))
        if not upsmon_running:
            steps.append(Action("start_upsmon", "not running"))
    else:
        if "upsmon.conf" in to_write:
            steps.append(to_write.pop("upsmon.conf"))
        if upsmon_running:
            steps.append(Action("stop_upsmon", "upsmon is disabled", pid=actual.upsmon_pid))
    return Plan(steps=tuple(steps), skipped=tuple(skipped), warnings=tuple(warnings))
