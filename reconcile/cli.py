"""nut-reconcile: command line.

  nut-reconcile scan [--json] [--all]   USB devices, which are UPSes, their driver and name
  nut-reconcile plan [--json]           what apply would change (passwords masked); exit 0 in sync, 2 pending
  nut-reconcile apply                   carry the plan out once
  nut-reconcile run                     the container's main process: reconcile every SCAN_INTERVAL
  nut-reconcile status [--json]         devices, names, drivers, data freshness, last reconcile
  nut-reconcile health                  exit 0 when upsd answers and attached UPSes have fresh data

Exit codes: 0 ok; 1 failure; 2 bad settings or config (nothing written), or `plan` with changes pending.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time
from typing import Any

from reconcile import __version__, logfmt, store
from reconcile.act import apply, daemons
from reconcile.cycle import Agent, Decision, device_views
from reconcile.decide.desired import DesiredError
from reconcile.decide.render import mask_secrets
from reconcile.model import Action, Plan, WriteFile
from reconcile.nutsyntax import NutSyntaxError
from reconcile.observe import upsd_client, usb_libusb
from reconcile.settings import Settings, SettingsError
from reconcile.settings import load as load_settings
from reconcile.store import StoreError, load_status
from reconcile.userconfig import ConfigError

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_PENDING = 0, 1, 2, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nut-reconcile", description="Keep NUT serving the USB UPSes attached now.")
    parser.add_argument("--version", action="version", version=f"nut-reconcile {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    scan = sub.add_parser("scan", help="list USB UPSes (--all: every USB device, libusb and nut-scanner views)")
    scan.add_argument("--json", action="store_true")
    scan.add_argument("--all", action="store_true")
    plan = sub.add_parser("plan", help="show what apply would change; exit 0 in sync, 2 when changes are pending")
    plan.add_argument("--json", action="store_true")
    sub.add_parser("apply", help="reconcile once")
    sub.add_parser("run", help="reconcile continuously (the container's main process)")
    status = sub.add_parser("status", help="devices, names, drivers, data freshness, last reconcile")
    status.add_argument("--json", action="store_true")
    sub.add_parser("health", help="exit 0 when upsd answers and attached UPSes have fresh data")
    return parser


def _secrets(decision: Decision) -> tuple[str, ...]:
    s = decision.secrets
    return (s.admin, s.monuser, s.upsmon)


def _diff(step: WriteFile, secrets: tuple[str, ...]) -> str:
    old = mask_secrets(step.old or "", secrets).splitlines(keepends=True)
    new = mask_secrets(step.content, secrets).splitlines(keepends=True)
    label = step.name
    return "".join(difflib.unified_diff(old, new, f"{label} (on disk)", f"{label} (desired)"))


def _plan_json(plan: Plan, secrets: tuple[str, ...]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for step in plan.steps:
        if isinstance(step, WriteFile):
            steps.append({"type": "write", "file": step.name, "reason": step.reason, "diff": _diff(step, secrets)})
        else:
            steps.append(
                {
                    "type": "action",
                    "action": step.kind,
                    "ups": step.ups,
                    "driver": step.driver,
                    "pid": step.pid,
                    "reason": step.reason,
                }
            )
    return {
        "in_sync": plan.in_sync,
        "steps": steps,
        "skipped": [{"file": s.name, "reason": s.reason} for s in plan.skipped],
        "warnings": list(plan.warnings),
    }


def cmd_plan(agent: Agent, as_json: bool) -> int:
    decision = agent.decide(agent.scan_bus(), persist=False)
    plan = agent.plan(decision, agent.observe_actual(decision))
    secrets = _secrets(decision)
    if as_json:
        print(json.dumps(_plan_json(plan, secrets), indent=2))
    else:
        for write in plan.writes:
            print(_diff(write, secrets), end="")
        for skipped in plan.skipped:
            print(f"skipped: {skipped.name} {skipped.reason}")
        for warning in plan.warnings:
            print(f"warning: {warning}")
        if plan.in_sync:
            print("in sync: nothing to do")
        else:
            print("\nsteps, in order:")
            for n, step in enumerate(plan.steps, 1):
                why = step.reason if isinstance(step, Action) else ""
                print(f"  {n}. {apply.describe(step)}" + (f"  ({why})" if why else ""))
    return EXIT_OK if plan.in_sync else EXIT_PENDING


def cmd_apply(agent: Agent) -> int:
    decision = agent.decide(agent.scan_bus(), persist=True)
    plan = agent.plan(decision, agent.observe_actual(decision))
    if plan.in_sync:
        logfmt.info("reconcile.in-sync")
        for skipped in plan.skipped:
            logfmt.warning("file.skip", file=skipped.name, why=skipped.reason)
        # Recorded only if it says something new: a no-op apply must write nothing.
        last = load_status(agent.settings.agent_dir) or {}
        if last.get("outcome") != "in sync":
            store.save_status(agent.settings.agent_dir, "apply", "in sync", [], {"devices": device_views(decision)})
        return EXIT_OK
    outcome = apply.execute(plan, agent.settings, agent.listen)
    agent.remember(decision)
    store.save_status(
        agent.settings.agent_dir,
        "apply",
        "ok" if outcome.ok else "errors",
        outcome.errors,
        {"devices": device_views(decision)},
    )
    logfmt.info("reconcile.done", steps=len(plan.steps), errors=len(outcome.errors))
    return EXIT_OK if outcome.ok else EXIT_FAIL


def cmd_scan(agent: Agent, as_json: bool, show_all: bool) -> int:
    bus = agent.scan_bus()
    decision = agent.decide(bus, persist=False)
    by_fp = {u.usb.fingerprint: u for u in decision.upses}
    devices = []
    for dev in bus:
        ups = by_fp.get(dev.fingerprint)
        if ups is None and not show_all:
            continue
        devices.append(
            {
                "port": dev.port,
                "vendorid": dev.vendorid,
                "productid": dev.productid,
                "address": dev.address,
                "serial": dev.serial,
                "manufacturer": dev.manufacturer,
                "product": dev.product,
                "ups": ups is not None,
                "driver": ups.driver if ups else None,
                "driver_from": ups.driver_from if ups else None,
                "name": decision.names.get(dev.fingerprint),
                "fingerprint": dev.fingerprint,
            }
        )
    result: dict[str, Any] = {"devices": devices}
    if show_all:
        try:
            result["libusb"] = [f"{d.vidpid} bus {d.busnum} device {d.devnum}" for d in usb_libusb.scan()]
        except usb_libusb.LibusbUnavailable as exc:
            result["libusb"] = f"unavailable: {exc}"
        result["nut_scanner"] = agent.scanner_drivers(bus)
        result["driver_table"] = {"source": agent.table.source, "entries": len(agent.table.by_vidpid)}
    if as_json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    if not devices:
        print("no USB UPS found" + ("" if show_all else " (--all lists every USB device)"))
    for d in devices:
        what = f"{d['name']} via {d['driver']} ({d['driver_from']})" if d["ups"] else "not a UPS"
        print(
            f"{d['port']:<10} {d['vendorid']}:{d['productid']} {d['manufacturer']} {d['product']}"
            f" serial={d['serial'] or '-'}  -> {what}"
        )
    if show_all:
        print(f"libusb: {result['libusb']}")
        print(f"nut-scanner: {result['nut_scanner']}")
        print(f"driver table: {result['driver_table']}")
    return EXIT_OK


def _upsd_view(agent: Agent) -> tuple[dict[str, dict[str, str | None]], str | None]:
    try:
        with upsd_client.Connection(*agent.listen, timeout=3.0) as conn:
            return {n: {"state": (f := conn.freshness(n)).state, "status": f.status} for n in conn.list_ups()}, None
    except upsd_client.UpsdError as exc:
        return {}, str(exc)


def cmd_status(agent: Agent, as_json: bool) -> int:
    actual = agent.observe_actual()
    upsd, upsd_error = _upsd_view(agent)
    bus = agent.scan_bus()
    devices = device_views(agent.decide(bus, persist=False))
    result = {
        "upsd": {"pid": actual.upsd_pid, "error": upsd_error},
        "upsmon": {"pid": actual.upsmon_pid},
        "devices": devices,
        "drivers": {ups: {"driver": p.driver, "pid": p.pid} for ups, p in actual.drivers.items()},
        "served": upsd,
        "last_reconcile": load_status(agent.settings.agent_dir),
    }
    if as_json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    print(
        f"upsd: {'pid ' + str(actual.upsd_pid) if actual.upsd_pid else 'not running'}"
        + (f" ({upsd_error})" if upsd_error else "")
    )
    print(f"upsmon: {'pid ' + str(actual.upsmon_pid) if actual.upsmon_pid else 'not running'}")
    for name, view in upsd.items():
        drv = actual.drivers.get(name)
        print(
            f"{name}: {view['state']}{' ' + str(view['status']) if view['status'] else ''}"
            f"  driver={drv.driver + ' pid ' + str(drv.pid) if drv else 'not running'}"
        )
    for d in devices:
        print(f"device {d['port']} {d['vidpid']} serial={d['serial'] or '-'} -> {d['name']} ({d['driver']})")
    last = result["last_reconcile"]
    if isinstance(last, dict):
        print(f"last reconcile: {last.get('last_reconcile')} by {last.get('by')}: {last.get('outcome')}")
        for error in last.get("errors") or []:
            print(f"  error: {error}")
    return EXIT_OK


def cmd_health(agent: Agent) -> int:
    """Healthy: upsd answers, and every UPS attached now has fresh data."""
    upsd, error = _upsd_view(agent)
    if error is not None:
        print(f"unhealthy: {error}")
        return EXIT_FAIL
    decision = agent.decide(agent.scan_bus(), persist=False)
    attached = {decision.names[u.usb.fingerprint] for u in decision.upses}
    bad = {n: str(upsd[n]["state"]) if n in upsd else "not served" for n in attached}
    bad = {n: s for n, s in bad.items() if s != "ok"}
    if bad:
        print("unhealthy: " + ", ".join(f"{n} {s}" for n, s in sorted(bad.items())))
        return EXIT_FAIL
    print(f"healthy: upsd serves {', '.join(sorted(upsd)) or 'no UPS'}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings: Settings = load_settings()
        if settings.tz:
            os.environ["TZ"] = settings.tz
            time.tzset()
        acting = args.command in ("run", "apply")
        warning = logfmt.setup(settings.debug, settings.log_file if acting else None, to_stderr=not acting)
        if warning:
            logfmt.warning("log.file", error=warning, why="logging to stdout only")
        agent = Agent.load(settings)
        if args.command == "plan":
            return cmd_plan(agent, args.json)
        if args.command == "apply":
            return cmd_apply(agent)
        if args.command == "scan":
            return cmd_scan(agent, args.json, args.all)
        if args.command == "status":
            return cmd_status(agent, args.json)
        if args.command == "health":
            return cmd_health(agent)
        from reconcile.act.supervise import Runner

        return Runner(agent).run()
    except (SettingsError, ConfigError, NutSyntaxError, DesiredError, StoreError) as exc:
        print(f"nut-reconcile: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except daemons.DaemonError as exc:
        print(f"nut-reconcile: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_FAIL
