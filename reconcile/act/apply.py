"""Carry a plan out, step by step, in the plan's order.

A step that fails is logged and recorded; the steps after it still run, so one UPS
that cannot be served does not keep the others from converging.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reconcile import logfmt
from reconcile.act import daemons
from reconcile.act.files import nut_gid, write_atomic
from reconcile.model import Action, Plan, WriteFile
from reconcile.nutsyntax import NutSyntaxError, section_drivers
from reconcile.observe import upsd_client
from reconcile.settings import Settings
from reconcile.waiting import await_true

UPSD_SERVE_TIMEOUT = 5.0


@dataclass
class Outcome:
    errors: list[str] = field(default_factory=list)
    started: dict[str, int] = field(default_factory=dict)  # "driver:<ups>", "upsd", "upsmon" -> pid
    stopping: dict[str, tuple[str, int]] = field(default_factory=dict)  # ups -> (driver, pid) signalled

    @property
    def ok(self) -> bool:
        return not self.errors


def _await_upsd_serves(settings: Settings, listen: tuple[str, int]) -> None:
    """After a (re)load, wait until upsd lists exactly the sections of ups.conf."""
    try:
        expected = set(section_drivers((settings.confpath / "ups.conf").read_text(encoding="utf-8")))
    except (OSError, NutSyntaxError):
        return

    def serves() -> bool:
        try:
            with upsd_client.Connection(*listen, timeout=1.0) as conn:
                return set(conn.list_ups()) == expected
        except upsd_client.UpsdError:
            return False

    if not await_true(serves, UPSD_SERVE_TIMEOUT, 0.05):
        logfmt.warning("upsd.slow", why=f"upsd does not list {sorted(expected)} {UPSD_SERVE_TIMEOUT:g}s after reload")


def _write(settings: Settings, step: WriteFile) -> None:
    write_atomic(Path(settings.confpath) / step.name, step.content, group=nut_gid())


def _finish_stop(settings: Settings, outcome: Outcome, ups: str) -> None:
    driver, pid = outcome.stopping.pop(ups)
    daemons.stop_driver(settings, ups, driver, pid)


def _act(settings: Settings, step: Action, outcome: Outcome, listen: tuple[str, int]) -> None:
    if step.kind == "start_driver":
        assert step.ups and step.driver
        if step.ups in outcome.stopping:
            _finish_stop(settings, outcome, step.ups)  # two drivers for one UPS fight
        outcome.started[f"driver:{step.ups}"] = daemons.start_driver(settings, step.ups, step.driver)
    elif step.kind == "stop_driver":
        assert step.ups and step.driver and step.pid
        # Signalled now, awaited later: the driver is found by PID, so its section may
        # leave ups.conf and upsd may reload while it exits.
        daemons.signal_stop(step.pid)
        outcome.stopping[step.ups] = (step.driver, step.pid)
    elif step.kind == "start_upsd":
        outcome.started["upsd"] = daemons.start_upsd(settings)
        _await_upsd_serves(settings, listen)
    elif step.kind == "stop_upsd":
        assert step.pid
        daemons.stop_upsd(settings, step.pid)
    elif step.kind == "reload_upsd":
        assert step.pid
        daemons.reload_upsd(settings, step.pid)
        _await_upsd_serves(settings, listen)
    elif step.kind == "start_upsmon":
        outcome.started["upsmon"] = daemons.start_upsmon(settings)
    elif step.kind == "reload_upsmon":
        assert step.pid
        daemons.reload_upsmon(settings, step.pid)
    elif step.kind == "stop_upsmon":
        assert step.pid
        daemons.stop_upsmon(settings, step.pid)


def execute(plan: Plan, settings: Settings, listen: tuple[str, int]) -> Outcome:
    outcome = Outcome()
    # Why here: a fresh volume (or ./dev.sh run) starts with neither; NUT needs both.
    for directory in (settings.confpath, settings.statepath):
        directory.mkdir(parents=True, exist_ok=True)
    for skipped in plan.skipped:
        logfmt.warning("file.skip", file=skipped.name, why=skipped.reason)
    for warning in plan.warnings:
        logfmt.warning("plan.warning", why=warning)
    for step in plan.steps:
        try:
            if isinstance(step, WriteFile):
                _write(settings, step)
                logfmt.info("file.write", file=step.name, why=step.reason)
            else:
                _act(settings, step, outcome, listen)
                pid = outcome.started.get(f"driver:{step.ups}" if step.ups else step.kind.split("_", 1)[1])
                logfmt.info(
                    step.kind.replace("_", "."),
                    ups=step.ups,
                    driver=step.driver,
                    why=step.reason,
                    pid=pid if step.kind.startswith("start") else step.pid,
                )
        except (daemons.DaemonError, OSError) as exc:
            message = f"{describe(step)}: {exc}"
            logfmt.error("step.failed", step=describe(step), error=str(exc))
            outcome.errors.append(message)
        daemons.reap()
    for ups in list(outcome.stopping):
        _finish_stop(settings, outcome, ups)
    return outcome


def describe(step: WriteFile | Action) -> str:
    if isinstance(step, WriteFile):
        return f"write {step.name} ({step.reason})"
    target = f" {step.ups} ({step.driver})" if step.ups else ""
    return f"{step.kind.replace('_', ' ')}{target}"
