"""The agent's typed event stream: what each pass found, decided and did.

Every event is a small frozen dataclass with a `kind` (its name in the log, e.g.
`ups.held`), a `level` and its fields. The core only *emits* events; consumers
*subscribe*. The logfmt log is the first consumer (one line per event: `kind` is the
log's `event=`, the fields follow in order, a None field is left out). Notifications,
metrics and MQTT are further consumers: they import this module, never the core, and
the core never imports them.

A consumer runs on the emitting thread (the pass's, mostly), so it must be quick and must
not raise: one that raises is logged once (`events.consumer`) and the pass goes on. A
consumer with slow work (a webhook, a broker) hands the event to its own thread or
process. Any thread may emit (upsmon's notices arrive on the relay's): consumers see one
event at a time, in the order emitted.

The kinds, by what they are about (fields in brackets):

  the bus and names
    ups.plugged       a UPS is served for a device now on the bus [ups, port, vidpid, model]
    ups.unplugged     its device left the bus [ups, port]
    ups.swapped       another device took a name [ups, old, new] (fingerprints)
    ups.renamed       a device is served under another name now [old, new, fingerprint]
  power (what upsd reports of an attached UPS; the hold rule, decide/power.py)
    ups.power         on battery, status changes, back on line [ups, status]
    ups.held          a UPS gone while on battery stays watched [ups, why]   (a problem)
    ups.released      a held UPS is let go [ups, why]
  the forced shutdown (decide/forced.py)
    ups.power_cycle   the UPS was asked to cut its load after a delay and return with mains;
                      `answer` is the driver's (upsd's TRACKING: SUCCESS, ERR ..., PENDING
                      when it did not answer in time) [ups, off_delay, command, answer, ok, start_delay]
    ups.no_power_cycle  a UPS that cannot be power-cycled (no shutdown.return): when it is
                      first served, and again each time it is served anew [ups, commands, why];
                      and one that would not take the delays, so nothing was sent (a notice too)
    power_cycle.skipped  a UPS in FSD that is not power-cycled, and why (no host is halting,
                      powers_host = false ...): once per FSD and reason [ups, why]
    fsd.cleared       FSD called off: every UPS on line without LB for the hold time, this
                      host did not halt; upsd's restart follows [ups, on_line_seconds]
    fsd.kept          FSD stayed after that restart (the driver reports it itself): reported
                      once, upsd is not restarted for it again [ups, why]
  upsmon's own notices (NOTIFYCMD, relayed by outputs/upsmon_relay.py)
    upsmon.notice     ONBATT, LOWBATT, FSD, SHUTDOWN ... as upsmon saw it [type, ups, message]
  MQTT's buttons (outputs/mqtt.py, the rules in outputs/buttons.py)
    mqtt.command      an instant command from the command topic: sent with upsd's answer,
                      not taken by upsd (a warning), or refused and why (a warning)
                      [ups, command, answer, unreported]
  drivers and daemons
    driver.died       a driver of ours is gone, not stopped by us, its UPS still attached [ups, driver, pid]
    driver.stale      upsd reported its data stale too long: restarting it [ups, why]
    driver.healed     data fresh again after being stale [ups, stale_seconds]
    backoff.hold      a start held back by backoff [target]   (debug)
    start.driver, stop.driver, start.upsd, stop.upsd, reload.upsd,
    start.upsmon, stop.upsmon, reload.upsmon
                      a step of the plan carried out [ups, driver, why, pid]
    file.write        a NUT config file written [file, why]
    step.failed       a step failed [step, error]
    step.skipped      a step not run: one it needs failed [step, why]
    reconcile.done    a pass that carried out a plan [steps, errors, skipped]
  the loop (run.py)
    tick              one pass of `run` is over [seconds, ok, attached, held]   (debug: for metrics)
  state files (store.py)
    state.corrupt     a state file failed validation [file, why, moved_to | error, then]
    state.write       a state file could not be written, or is written again [file, error, then]
    state.leftover    a temp file a crash left, removed [file, why]
  problems (reported once while they last, then cleared)
    ups.unservable    [ups, why]      ups.twins [why]      plan.warning [why]
    plan.blocked      [why]           file.skip [file, why]
    process.stranger  [program, pid, source, why]      process.adopted [process, why]
    problem.cleared   a problem above is over [problem, about]
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from reconcile import logfmt


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    level: ClassVar[str] = "info"

    def fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# --- the bus and names ---------------------------------------------------------------


@dataclass(frozen=True)
class Plugged(Event):
    kind: ClassVar[str] = "ups.plugged"
    ups: str
    port: str
    vidpid: str
    model: str | None


@dataclass(frozen=True)
class Unplugged(Event):
    kind: ClassVar[str] = "ups.unplugged"
    ups: str
    port: str


@dataclass(frozen=True)
class Swapped(Event):
    kind: ClassVar[str] = "ups.swapped"
    ups: str
    old: str
    new: str


@dataclass(frozen=True)
class Renamed(Event):
    kind: ClassVar[str] = "ups.renamed"
    old: str
    new: str
    fingerprint: str


# --- power ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Power(Event):
    kind: ClassVar[str] = "ups.power"
    ups: str
    status: str


@dataclass(frozen=True)
class Held(Event):
    kind: ClassVar[str] = "ups.held"
    level: ClassVar[str] = "warning"
    ups: str
    why: str = "vanished while on battery: stays watched so upsmon's DEADTIME rule can act"


@dataclass(frozen=True)
class Released(Event):
    kind: ClassVar[str] = "ups.released"
    ups: str
    why: str


# --- the forced shutdown --------------------------------------------------------------


@dataclass(frozen=True)
class PowerCycled(Event):
    kind: ClassVar[str] = "ups.power_cycle"
    level: ClassVar[str] = "warning"
    ups: str
    off_delay: int
    command: str
    answer: str  # the driver's answer to the command, through upsd (or why it was not sent)
    ok: bool
    start_delay: int | None = None  # the UPS's ups.delay.start, read back before the command


@dataclass(frozen=True)
class NoPowerCycle(Event):
    kind: ClassVar[str] = "ups.no_power_cycle"
    level: ClassVar[str] = "warning"
    ups: str
    commands: str  # what the UPS offers instead (upsd's LIST CMD), space-separated
    why: str = "after a forced shutdown its load is not cut and restored: a halted host stays off until mains return"


@dataclass(frozen=True)
class PowerCycleRefused(NoPowerCycle):
    """The UPS would not take the delays the power cycle needs (ups.delay.start above
    ups.delay.shutdown): shutdown.return was not sent."""

    why: str = "it would not take the delays: shutdown.return was not sent"


@dataclass(frozen=True)
class PowerCycleSkipped(Event):
    kind: ClassVar[str] = "power_cycle.skipped"
    ups: str
    why: str


@dataclass(frozen=True)
class FsdKept(Event):
    kind: ClassVar[str] = "fsd.kept"
    level: ClassVar[str] = "warning"
    ups: str
    why: str = (
        "FSD stayed after upsd's restart: the driver reports it itself; upsd is not restarted for it "
        "again, and upsmon starts once the driver stops reporting it"
    )


@dataclass(frozen=True)
class FsdCleared(Event):
    kind: ClassVar[str] = "fsd.cleared"
    level: ClassVar[str] = "warning"
    ups: str  # the UPSes that were in FSD, comma-separated
    on_line_seconds: int


@dataclass(frozen=True)
class UpsmonNotice(Event):
    """What upsmon told its NOTIFYCMD: NOTIFYTYPE, UPSNAME (None for SHUTDOWN) and its text."""

    kind: ClassVar[str] = "upsmon.notice"
    type: str
    ups: str | None
    message: str


# --- MQTT's buttons ---------------------------------------------------------------------


@dataclass(frozen=True)
class CommandAnswer(Event):
    """An instant command from MQTT's command topic (a Home Assistant button press) and
    what became of it: one of the three kinds below."""

    kind: ClassVar[str] = "mqtt.command"
    ups: str
    command: str
    answer: str  # upsd's reply (OK, ERR ...), "refused: <why>", or "not sent: <why>"
    # Answers not reported before this one (a flood of presses: outputs/buttons.Reports).
    unreported: int | None = None


@dataclass(frozen=True)
class CommandSent(CommandAnswer):
    """upsd took it (OK)."""


@dataclass(frozen=True)
class CommandFailed(CommandAnswer):
    """Not taken: upsd refused the login or the command (ERR ...), or did not answer."""

    level: ClassVar[str] = "warning"


@dataclass(frozen=True)
class CommandRefused(CommandAnswer):
    """Refused by a rule (a retained message, no admin login, the allow-list, the opt-in,
    one command a minute, the UPS's state): nothing was sent."""

    level: ClassVar[str] = "warning"


# --- drivers and daemons -------------------------------------------------------------


@dataclass(frozen=True)
class DriverDied(Event):
    kind: ClassVar[str] = "driver.died"
    level: ClassVar[str] = "warning"
    ups: str
    driver: str
    pid: int


@dataclass(frozen=True)
class DriverStale(Event):
    kind: ClassVar[str] = "driver.stale"
    level: ClassVar[str] = "warning"
    ups: str
    why: str = "data stale too long: restarting the driver"


@dataclass(frozen=True)
class DriverHealed(Event):
    kind: ClassVar[str] = "driver.healed"
    ups: str
    stale_seconds: str


@dataclass(frozen=True)
class BackoffHold(Event):
    kind: ClassVar[str] = "backoff.hold"
    level: ClassVar[str] = "debug"
    target: str


@dataclass(frozen=True)
class StepDone(Event):
    """A start, stop or reload carried out; its kind is the step's (start.driver ...)."""

    step_kind: str  # the plan step's kind, e.g. start_driver
    ups: str | None
    driver: str | None
    why: str
    pid: int | None

    def fields(self) -> dict[str, Any]:
        return {"ups": self.ups, "driver": self.driver, "why": self.why, "pid": self.pid}

    @property
    def name(self) -> str:
        return self.step_kind.replace("_", ".")


@dataclass(frozen=True)
class FileWritten(Event):
    kind: ClassVar[str] = "file.write"
    file: str
    why: str


@dataclass(frozen=True)
class StepFailed(Event):
    kind: ClassVar[str] = "step.failed"
    level: ClassVar[str] = "error"
    step: str
    error: str


@dataclass(frozen=True)
class StepSkipped(Event):
    kind: ClassVar[str] = "step.skipped"
    level: ClassVar[str] = "warning"
    step: str
    why: str


@dataclass(frozen=True)
class PassDone(Event):
    kind: ClassVar[str] = "reconcile.done"
    steps: int
    errors: int
    skipped: int


# --- state files ---------------------------------------------------------------------


@dataclass(frozen=True)
class StateCorrupt(Event):
    kind: ClassVar[str] = "state.corrupt"
    level: ClassVar[str] = "error"
    file: str
    why: str
    moved_to: str | None = None
    error: str | None = None
    then: str | None = None


@dataclass(frozen=True)
class StateCorruptRead(StateCorrupt):
    """A corrupt state file a read-only command only reads as empty."""

    level: ClassVar[str] = "warning"


@dataclass(frozen=True)
class StateWrite(Event):
    kind: ClassVar[str] = "state.write"
    level: ClassVar[str] = "error"
    file: str
    error: str | None = None
    then: str | None = None


@dataclass(frozen=True)
class StateWritten(StateWrite):
    level: ClassVar[str] = "info"


@dataclass(frozen=True)
class StateLeftover(Event):
    kind: ClassVar[str] = "state.leftover"
    level: ClassVar[str] = "warning"
    file: str
    why: str = "a write was cut short: removed"


# --- problems (reported once while they last) ---------------------------------------


@dataclass(frozen=True)
class Unservable(Event):
    kind: ClassVar[str] = "ups.unservable"
    level: ClassVar[str] = "error"
    ups: str
    why: str


@dataclass(frozen=True)
class Twins(Event):
    kind: ClassVar[str] = "ups.twins"
    level: ClassVar[str] = "warning"
    why: str


@dataclass(frozen=True)
class PlanWarning(Event):
    kind: ClassVar[str] = "plan.warning"
    level: ClassVar[str] = "warning"
    why: str


@dataclass(frozen=True)
class PlanBlocked(Event):
    kind: ClassVar[str] = "plan.blocked"
    level: ClassVar[str] = "error"
    why: str


@dataclass(frozen=True)
class FileSkipped(Event):
    kind: ClassVar[str] = "file.skip"
    level: ClassVar[str] = "warning"
    file: str
    why: str


@dataclass(frozen=True)
class StrangerFound(Event):
    kind: ClassVar[str] = "process.stranger"
    level: ClassVar[str] = "error"
    program: str
    pid: int
    source: str
    why: str = "not started by nut-reconcile: never signalled"


@dataclass(frozen=True)
class Adopted(Event):
    kind: ClassVar[str] = "process.adopted"
    process: str
    why: str = "started for our NUT dirs"


@dataclass(frozen=True)
class Tick(Event):
    """One pass of `run` is over: how long it took, whether it ran to its end, and the
    UPSes it found attached and held (names, comma-separated)."""

    kind: ClassVar[str] = "tick"
    level: ClassVar[str] = "debug"
    seconds: float
    ok: bool
    attached: str
    held: str


@dataclass(frozen=True)
class ProblemCleared(Event):
    kind: ClassVar[str] = "problem.cleared"
    problem: str  # the kind of the problem event that is over
    about: str  # its fields, as the log showed them


def name_of(event: Event) -> str:
    """The event's name in the log (a step's own kind for StepDone)."""
    return event.name if isinstance(event, StepDone) else event.kind


# --- the stream ----------------------------------------------------------------------

Consumer = Callable[[Event], None]


def log(event: Event) -> None:
    """The first consumer: one logfmt line per event."""
    getattr(logfmt, event.level)(name_of(event), **event.fields())


_consumers: list[Consumer] = [log]
_failing: set[str] = set()
# Why reentrant: a consumer may emit itself (one that reports its own trouble).
_one_at_a_time = threading.RLock()


def subscribe(consumer: Consumer) -> Callable[[], None]:
    """Add a consumer; returns what removes it again."""
    _consumers.append(consumer)
    return lambda: _consumers.remove(consumer) if consumer in _consumers else None


def emit(event: Event) -> None:
    """Hand `event` to every consumer. A consumer that raises never stops the pass."""
    with _one_at_a_time:
        _deliver(event)


def _deliver(event: Event) -> None:
    for consumer in list(_consumers):
        try:
            consumer(event)
        except Exception as exc:  # noqa: BLE001 - a consumer must never break a pass
            name = getattr(consumer, "__qualname__", repr(consumer))
            if name not in _failing:
                _failing.add(name)
                logfmt.error("events.consumer", consumer=name, error=f"{type(exc).__name__}: {exc}")
