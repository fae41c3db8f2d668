"""The plan: a pure function from (desired, actual) to ordered steps, each naming the
earlier steps it needs.

Level-triggered: it compares what should be with what is there *and running* (the
drivers per section, what upsd serves, the configuration each process last loaded),
never with what the agent did before. A section with no live driver gets one; a driver
started for another version of its section is restarted; an upsd that does not serve
exactly the sections of ups.conf, or runs with older files, is reloaded. So whatever
instant the agent was killed at, the next pass converges.

NUT's safe order (see docs/design.md, "How a change is applied"):
  unplug: MONITOR out -> reload upsmon -> stop driver -> section out -> reload upsd
  plug:   section in -> start driver -> reload upsd -> MONITOR in -> reload upsmon
Both can happen in one plan (a swap), so the steps come in phases:
  A. upsmon stops watching the UPSes that go away (an intermediate upsmon.conf)
  B. the drivers whose section goes away or changes are stopped
  C. ups.conf, upsd.conf, upsd.users, nut.conf are written
  D. the drivers that are missing are started
  E. upsd is started, restarted (LISTEN needs it) or reloaded
  F. upsmon.conf with the new MONITORs; upsmon is started or reloaded
A step whose needs failed is skipped by the executor (e.g. no driver stop and no upsd
reload after a failed upsmon.conf write). Files we do not manage (no header, or
read-only) are never written: they are reported and what they say is used as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache

from reconcile.decide.loaded import UPSD_FILES, digest, of_files, of_section, section_blocks
from reconcile.model import (
    ActualState,
    Monitor,
    Plan,
    ReloadUpsd,
    ReloadUpsmon,
    Skipped,
    StartDriver,
    StartUpsd,
    StartUpsmon,
    Step,
    StopDriver,
    StopUpsd,
    StopUpsmon,
    WriteFile,
)
from reconcile.nutsyntax import NutSyntaxError, section_drivers, tokenize


@dataclass(frozen=True)
class Desired:
    files: dict[str, str]
    upsmon_enabled: bool
    held: frozenset[str]  # UPSes that vanished on battery and stay watched (decide/power.py)
    monitors: tuple[Monitor, ...]
    # upsmon.conf as it would be with only these MONITORs (phase A)
    upsmon_with: Callable[[tuple[Monitor, ...]], str]


@lru_cache(maxsize=16)
def monitored(text: str | None) -> tuple[str, ...]:
    """UPS names in upsmon.conf MONITOR lines."""
    names = []
    for words in tokenize(text or ""):
        if words[0] == "MONITOR" and len(words) > 1:
            names.append(words[1].split("@", 1)[0])
    return tuple(names)


@dataclass
class _Builder:
    steps: list[Step] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    upsmon_reloaded_to: tuple[tuple[str, str], ...] | None = None  # by phase A

    def add(self, step: Step, needs: Iterable[int | None] = ()) -> int:
        self.steps.append(replace(step, needs=frozenset(n for n in needs if n is not None)))
        return len(self.steps) - 1


@dataclass(frozen=True)
class _Files:
    final: dict[str, str | None]  # what each file will say after the plan
    writes: dict[str, WriteFile]
    skipped: tuple[Skipped, ...]


def _files(desired: Desired, actual: ActualState) -> _Files:
    final: dict[str, str | None] = {}
    writes: dict[str, WriteFile] = {}
    skipped: list[Skipped] = []
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
            writes[name] = WriteFile(name=name, content=content, old=state.content, reason=reason)
    return _Files(final, writes, tuple(skipped))


NO_DRIVER = "# nut-reconcile: no driver"


def _drivers_wanted(final_ups: str | None, b: _Builder) -> dict[str, str]:
    """The sections of ups.conf as it will be that get a driver: all, but those our own
    file marks as served without one (a placeholder, a held UPS)."""
    try:
        sections = section_drivers(final_ups)
    except NutSyntaxError as exc:
        b.warnings.append(f"ups.conf cannot be parsed ({exc}): no driver is started")
        return {}
    blocks = section_blocks(final_ups)
    sections = {ups: d for ups, d in sections.items() if NO_DRIVER not in blocks.get(ups, "")}
    for ups, driver in sorted(sections.items()):
        if not driver:
            b.warnings.append(f"ups.conf section [{ups}] has no driver")
    return {ups: d for ups, d in sections.items() if d}


def _monitors_out(
    desired: Desired, actual: ActualState, files: _Files, leaving: set[str], b: _Builder
) -> tuple[int | None, set[str]]:
    """Phase A. Returns the step after which upsmon no longer watches `gone`, and `gone`."""
    on_disk = actual.files["upsmon.conf"].content
    try:
        disk_mon = set(monitored(on_disk))
    except NutSyntaxError:
        disk_mon = set()
    try:
        final_mon = set(monitored(files.final["upsmon.conf"]))
    except NutSyntaxError as exc:
        b.warnings.append(f"upsmon.conf cannot be parsed ({exc})")
        final_mon = disk_mon
    upsmon = actual.upsmon
    if upsmon is None:
        return None, set()
    may_watch = set(disk_mon)
    if upsmon.loaded != of_files({"upsmon.conf": on_disk}, ("upsmon.conf",)):
        # upsmon runs with a file that is no longer on disk (a crash between a write and
        # its reload): it may watch any UPS that still has a section.
        may_watch |= leaving
    gone = may_watch - final_mon
    if not gone:
        return None, set()
    why = f"stop watching {', '.join(sorted(gone))}"
    write = files.writes.get("upsmon.conf")
    if write is not None:
        kept = tuple(m for m in desired.monitors if m.name in disk_mon)
        added = final_mon - disk_mon
        content = desired.upsmon_with(kept) if added else write.content
        step = b.add(WriteFile(name="upsmon.conf", content=content, old=write.old, reason=why))
        if not added:
            del files.writes["upsmon.conf"]
        b.upsmon_reloaded_to = of_files({"upsmon.conf": content}, ("upsmon.conf",))
        return b.add(ReloadUpsmon(proc=upsmon.proc, loaded=b.upsmon_reloaded_to, reason=why), [step]), gone
    if files.final["upsmon.conf"] == on_disk and "upsmon.conf" not in {s.name for s in files.skipped}:
        b.upsmon_reloaded_to = of_files({"upsmon.conf": on_disk}, ("upsmon.conf",))
        return b.add(ReloadUpsmon(proc=upsmon.proc, loaded=b.upsmon_reloaded_to, reason=why)), gone
    b.warnings.append(f"upsmon.conf is not ours to write: upsmon may still watch {', '.join(sorted(gone))}")
    return None, set()


def _drivers_down(
    actual: ActualState,
    wanted: dict[str, str],
    final_blocks: dict[str, str],
    restart: frozenset[str],
    held: frozenset[str],
    gate: tuple[int | None, set[str]],
    b: _Builder,
) -> dict[str, int]:
    """Phase B: stop the drivers that must go or restart, while upsmon no longer watches
    a UPS that goes away. Returns the stop step of each UPS."""
    stops: dict[str, int] = {}
    gate_step, gone = gate
    for ups, proc in sorted(actual.drivers.items()):
        if ups not in wanted:
            reason = "vanished on battery: the driver goes, the UPS stays watched" if ups in held else "UPS gone"
        elif wanted[ups] != proc.driver:
            reason = f"driver changes to {wanted[ups]}"
        elif proc.loaded != of_section(final_blocks.get(ups)):
            reason = "section changed (new device, replug or options)"
        elif ups in restart:
            reason = "restart requested (data stale)"
        else:
            continue
        step = StopDriver(ups=ups, driver=proc.driver, proc=proc.proc, reason=reason)
        stops[ups] = b.add(step, [gate_step if ups in gone else None])
    return stops


def _write_configs(
    files: _Files, stops_before_ups_conf: list[int], gate_step: int | None, b: _Builder
) -> dict[str, int]:
    """Phase C: the files upsd and the drivers read."""
    written: dict[str, int] = {}
    for name in ("nut.conf", "ups.conf", "upsd.conf", "upsd.users"):
        if name in files.writes:
            needs: list[int | None] = [gate_step, *stops_before_ups_conf] if name == "ups.conf" else []
            written[name] = b.add(files.writes.pop(name), needs)
    if "upssched.conf" in files.writes:
        # Here too, before upsmon.conf (phase F) names the relay that runs upssched. Not in
        # `written`: upsd and the drivers never read it.
        b.add(files.writes.pop("upssched.conf"), [])
    return written


def _drivers_up(
    actual: ActualState,
    wanted: dict[str, str],
    final_blocks: dict[str, str],
    old_sections: set[str],
    stops: dict[str, int],
    written: dict[str, int],
    b: _Builder,
) -> None:
    """Phase D: every section that should have a driver and has no live one gets one."""
    blocked = {s.key.removeprefix("driver:"): s for s in actual.strangers if s.key.startswith("driver:")}
    for ups, driver in sorted(wanted.items()):
        if ups in actual.drivers and ups not in stops:
            continue
        if ups in blocked:
            s = blocked[ups]
            b.blocked.append(
                f"driver for {ups} not started: {s.source} names pid {s.pid} ({s.program}), not started by "
                "nut-reconcile (never signalled; stop it or remove its PID file)"
            )
            continue
        reason = "restart" if ups in stops else ("new UPS" if ups not in old_sections else "not running")
        step = StartDriver(ups=ups, driver=driver, loaded=of_section(final_blocks.get(ups)), reason=reason)
        b.add(step, [written.get("ups.conf"), stops.get(ups)])


def _upsd(
    actual: ActualState,
    files: _Files,
    sections: set[str],
    written: dict[str, int],
    fsd: bool,
    clear_fsd: bool,
    b: _Builder,
) -> int | None:
    """Phase E. Returns the step after which upsd serves the new sections, if any."""
    want = of_files(files.final, UPSD_FILES)
    if clear_fsd and actual.upsd is not None:
        # Why a restart: FSD lives only in upsd's memory, and NUT has no command to unset it.
        why = "FSD called off: every UPS on line without LB for the hold time"
        stop = b.add(StopUpsd(proc=actual.upsd.proc, reason=why), [written.get("upsd.conf")])
        return b.add(StartUpsd(loaded=want, reason=why), [stop, *written.values()])
    stranger = next((s for s in actual.strangers if s.key == "upsd"), None)
    if actual.upsd is None:
        if stranger is not None:
            b.blocked.append(
                f"upsd not started: {stranger.source} names pid {stranger.pid} (upsd), not started by nut-reconcile "
                "(never signalled; stop it or remove its PID file)"
            )
            return None
        return b.add(StartUpsd(loaded=want, reason="not running"), written.values())
    loaded = dict(actual.upsd.loaded)
    if loaded.get("upsd.conf") != digest(files.final["upsd.conf"]):
        if fsd:
            # A restart would drop the FSD flag that tells secondaries to shut down.
            b.warnings.append("upsd.conf changed, but a UPS is in FSD: upsd is not restarted until it is over")
        else:
            why = "upsd.conf changed (LISTEN needs a restart)"
            stop = b.add(StopUpsd(proc=actual.upsd.proc, reason=why), [written.get("upsd.conf")])
            return b.add(StartUpsd(loaded=want, reason=why), [stop, *written.values()])
    served = None if actual.served is None else set(actual.served)
    if actual.upsd.loaded != want or (served is not None and served != sections):
        if served is not None and served != sections:
            reason = "upsd does not serve exactly the sections of ups.conf"
        else:
            reason = "ups.conf or upsd.users changed"
        needs = [written.get("ups.conf"), written.get("upsd.users")]
        return b.add(ReloadUpsd(proc=actual.upsd.proc, loaded=want, reason=reason), needs)
    return None


def _upsmon(
    desired: Desired, actual: ActualState, files: _Files, upsd_step: int | None, fsd: bool, b: _Builder
) -> None:
    """Phase F: upsmon last: only now do the new UPSes exist in upsd."""
    write = files.writes.pop("upsmon.conf", None)
    write_step = b.add(write, [upsd_step]) if write is not None else None
    want = of_files(files.final, ("upsmon.conf",))
    if not desired.upsmon_enabled:
        if actual.upsmon is not None:
            b.add(StopUpsmon(proc=actual.upsmon.proc, reason="upsmon is disabled"))
        return
    if actual.upsmon is not None:
        now = b.upsmon_reloaded_to if b.upsmon_reloaded_to is not None else actual.upsmon.loaded
        if now != want:
            b.add(ReloadUpsmon(proc=actual.upsmon.proc, loaded=want, reason="upsmon.conf changed"), [write_step])
        return
    if fsd:
        # A new upsmon would see FSD at once and run the shutdown again, and again.
        b.warnings.append(
            "upsmon not started: a UPS is in FSD (a forced shutdown ran); it starts again once FSD is called off"
        )
        return
    stranger = next((s for s in actual.strangers if s.key == "upsmon"), None)
    if stranger is not None:
        b.blocked.append(
            f"upsmon not started: another upsmon (pid {stranger.pid}, {stranger.source}) is running and NUT allows one "
            "per PID file: stop it, or set [upsmon] enabled = false"
        )
        return
    b.add(StartUpsmon(loaded=want, reason="not running"), [write_step, upsd_step])


def make_plan(
    desired: Desired, actual: ActualState, restart: frozenset[str] = frozenset(), clear_fsd: bool = False
) -> Plan:
    """`restart`: UPS names whose driver must restart (its data has been stale too long).
    `clear_fsd`: call a forced shutdown off (decide/forced.py): upsd is restarted."""
    b = _Builder()
    files = _files(desired, actual)
    old_ups = actual.files["ups.conf"].content
    try:
        old_sections = set(section_drivers(old_ups))
    except NutSyntaxError:
        old_sections = set()
    final_ups = files.final["ups.conf"]
    wanted = _drivers_wanted(final_ups, b)
    try:
        final_sections = set(section_drivers(final_ups))
    except NutSyntaxError:
        final_sections = set()
    old_blocks, final_blocks = section_blocks(old_ups), section_blocks(final_ups)
    fsd = any("FSD" in s.flags for s in (actual.served or {}).values())

    gate = _monitors_out(desired, actual, files, old_sections - final_sections, b)
    stops = _drivers_down(actual, wanted, final_blocks, restart, desired.held, gate, b)
    changed = [step for ups, step in stops.items() if old_blocks.get(ups) != final_blocks.get(ups)]
    written = _write_configs(files, changed, gate[0], b)
    _drivers_up(actual, wanted, final_blocks, old_sections, stops, written, b)
    upsd_step = _upsd(actual, files, final_sections, written, fsd, clear_fsd, b)
    # Why upsmon waits for the pass after FSD is called off: a driver that reports FSD itself
    # (nutdrv_qx, blazer) keeps it through upsd's restart, and a upsmon started now would see
    # it and shut down again. The next pass starts it if FSD is gone (decide/forced.py).
    _upsmon(desired, actual, files, upsd_step, fsd, b)
    return Plan(steps=tuple(b.steps), skipped=files.skipped, warnings=tuple(b.warnings), blocked=tuple(b.blocked))


def drop(plan: Plan, indices: Iterable[int]) -> Plan:
    """The plan without these steps and every step that needs one of them (renumbered)."""
    gone = set(indices)
    for i, step in enumerate(plan.steps):
        if step.needs & gone:
            gone.add(i)
    new_index = {old: new for new, old in enumerate(i for i in range(len(plan.steps)) if i not in gone)}
    steps = tuple(
        replace(step, needs=frozenset(new_index[n] for n in step.needs))
        for i, step in enumerate(plan.steps)
        if i not in gone
    )
    return replace(plan, steps=steps)
