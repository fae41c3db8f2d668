"""Carry a plan out, step by step, in the plan's order.

A step that fails is logged and recorded. The steps that need it (see decide/plan.py)
are skipped and reported; the others still run, so one UPS that cannot be served does
not keep the rest from converging. Every process started is recorded (the ledger)
before it is started and again once it is confirmed, so a restart after a crash at any
instant knows which processes are its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import assert_never

from reconcile import events, logfmt
from reconcile.act import daemons
from reconcile.act.files import ensure_dir, ensure_nut_statepath, nut_gid, write_atomic
from reconcile.model import (
    Ledger,
    Owned,
    Plan,
    ProcId,
    ReloadUpsd,
    ReloadUpsmon,
    StartDriver,
    StartUpsd,
    StartUpsmon,
    Step,
    StopDriver,
    StopUpsd,
    StopUpsmon,
    WriteFile,
    describe,
    start_key,
)
from reconcile.nutsyntax import NutSyntaxError, section_drivers
from reconcile.observe import processes, upsd_client
from reconcile.settings import Settings
from reconcile.waiting import await_true

UPSD_SERVE_TIMEOUT = 5.0

# The fault tests' seam, set only by testbed/crashing.py (which then dies before step N, as
# a power cut or an OOM kill would): nothing in the product sets it, and no environment
# variable or file can, so a production agent never kills itself.
before_step: Callable[[int, Step], None] | None = None


@dataclass
class Outcome:
    ledger: Ledger
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # steps not run: a step they need failed
    started: list[str] = field(default_factory=list)  # backoff keys: "driver:<ups>", "upsd", "upsmon"
    failed_starts: list[str] = field(default_factory=list)  # the same keys, for starts that failed
    stopping: dict[str, tuple[str, ProcId]] = field(default_factory=dict)  # ups -> (driver, proc) signalled

    @property
    def ok(self) -> bool:
        return not self.errors and not self.skipped


@dataclass
class _Run:
    settings: Settings
    listen: tuple[str, int]
    outcome: Outcome
    save_ledger: Callable[[Ledger], object]

    def record(self, key: str, owned: Owned | None) -> None:
        ledger = dict(self.outcome.ledger)
        if owned is None:
            ledger.pop(key, None)
        else:
            ledger[key] = owned
        self.outcome.ledger = ledger
        self.save_ledger(ledger)

    def starting(self, key: str, program: str, loaded: tuple[tuple[str, str], ...]) -> int:
        """Record the intent before the start: a crash right after it leaves a process
        the next pass can still tell is ours (it started no earlier than this)."""
        not_before = processes.boot_ticks() - 1
        self.record(key, Owned(program, None, not_before, loaded))
        return not_before

    def started(self, key: str, program: str, proc: ProcId, loaded: tuple[tuple[str, str], ...]) -> None:
        self.record(key, Owned(program, proc.pid, proc.start, loaded))
        self.outcome.started.append(key)

    def reloaded(self, key: str, loaded: tuple[tuple[str, str], ...]) -> None:
        owned = self.outcome.ledger.get(key)
        if owned is not None:
            self.record(key, Owned(owned.program, owned.pid, owned.start, loaded))


def _await_upsd_serves(settings: Settings, listen: tuple[str, int]) -> None:
    """After a (re)load, wait until upsd lists exactly the sections of ups.conf."""
    try:
        expected = set(section_drivers((settings.confpath / "ups.conf").read_text(encoding="utf-8")))
    except (OSError, NutSyntaxError):
        return

    def serves() -> bool:
        try:
            with upsd_client.Connection(*listen, timeout=1.0) as conn:
                return set(upsd_client.ups_names(conn)) == expected
        except upsd_client.UpsdError:
            return False

    if not await_true(serves, UPSD_SERVE_TIMEOUT, 0.05):
        logfmt.warning("upsd.slow", why=f"upsd does not list {sorted(expected)} {UPSD_SERVE_TIMEOUT:g}s after reload")


def _finish_stop(run: _Run, ups: str) -> None:
    driver, proc = run.outcome.stopping.pop(ups)
    daemons.stop_driver(run.settings, ups, driver, proc)
    run.record(f"driver:{ups}", None)


def _do(run: _Run, step: Step) -> ProcId | None:
    """Carry out one step; returns the process it started, for the log."""
    settings = run.settings
    match step:
        case WriteFile():
            write_atomic(Path(settings.confpath) / step.name, step.content, group=nut_gid())
        case StartDriver():
            key = f"driver:{step.ups}"
            if step.ups in run.outcome.stopping:
                _finish_stop(run, step.ups)  # two drivers for one UPS fight
            proc = daemons.start_driver(settings, step.ups, step.driver, run.starting(key, step.driver, step.loaded))
            run.started(key, step.driver, proc, step.loaded)
            return proc
        case StopDriver():
            # Signalled now, awaited later: the driver is known by (PID, start time), so
            # its section may leave ups.conf and upsd may reload while it exits.
            daemons.signal_stop(step.proc, step.driver)
            run.outcome.stopping[step.ups] = (step.driver, step.proc)
        case StartUpsd():
            proc = daemons.start_upsd(settings, run.starting("upsd", "upsd", step.loaded))
            run.started("upsd", "upsd", proc, step.loaded)
            _await_upsd_serves(settings, run.listen)
            return proc
        case StopUpsd():
            daemons.stop_upsd(settings, step.proc)
            run.record("upsd", None)
        case ReloadUpsd():
            daemons.reload(step.proc, "upsd")
            run.reloaded("upsd", step.loaded)
            _await_upsd_serves(settings, run.listen)
        case StartUpsmon():
            run.starting("upsmon", "upsmon", step.loaded)
            proc = daemons.start_upsmon(settings)
            run.started("upsmon", "upsmon", proc, step.loaded)
            return proc
        case ReloadUpsmon():
            daemons.reload(step.proc, "upsmon")
            run.reloaded("upsmon", step.loaded)
        case StopUpsmon():
            daemons.stop_upsmon(step.proc)
            run.record("upsmon", None)
        case _:
            assert_never(step)
    return None


def _done(step: Step, started: ProcId | None) -> events.Event:
    if isinstance(step, WriteFile):
        return events.FileWritten(step.name, step.reason)
    ups = getattr(step, "ups", None)
    driver = getattr(step, "driver", None)
    proc = started if started is not None else getattr(step, "proc", None)
    return events.StepDone(step.kind, ups, driver, step.reason, proc.pid if proc else None)


def execute(
    plan: Plan,
    settings: Settings,
    listen: tuple[str, int],
    ledger: Ledger,
    save_ledger: Callable[[Ledger], object],
) -> Outcome:
    run = _Run(settings, listen, Outcome(ledger=dict(ledger)), save_ledger)
    # Why here: a fresh volume (or ./dev.sh run) starts with neither; NUT needs both.
    try:
        ensure_dir(settings.confpath)
        ensure_nut_statepath(settings.statepath)
    except OSError as exc:
        logfmt.error("dir.failed", error=str(exc), why="the steps that need it will fail and be retried")
    failed: set[int] = set()
    for index, step in enumerate(plan.steps):
        blocked = sorted(step.needs & failed)
        if blocked:
            failed.add(index)
            why = "; ".join(describe(plan.steps[i]) for i in blocked)
            events.emit(events.StepSkipped(describe(step), f"needs {why}, which did not succeed"))
            run.outcome.skipped.append(f"{describe(step)}: skipped (needs {why})")
            continue
        if before_step is not None:
            before_step(index + 1, step)
        try:
            events.emit(_done(step, _do(run, step)))
        except (daemons.DaemonError, OSError) as exc:
            failed.add(index)
            events.emit(events.StepFailed(describe(step), str(exc)))
            run.outcome.errors.append(f"{describe(step)}: {exc}")
            key = start_key(step)
            if key is not None:
                run.outcome.failed_starts.append(key)
        daemons.reap()
    for ups in list(run.outcome.stopping):
        try:
            _finish_stop(run, ups)
        except (daemons.DaemonError, OSError) as exc:
            run.outcome.errors.append(f"stop driver {ups}: {exc}")
            run.outcome.stopping.pop(ups, None)
    return run.outcome
