"""nut-reconcile: command line.

  nut-reconcile scan [--json] [--all]   USB devices, which are UPSes, their driver and name
  nut-reconcile plan [--json]           what apply would change (passwords masked); exit 0 in sync, 2 pending
  nut-reconcile apply                   carry the plan out once
  nut-reconcile run                     the container's main process: reconcile every SCAN_INTERVAL
  nut-reconcile status [--json]         devices, names, drivers, data freshness, last reconcile
  nut-reconcile health                  exit 0 when upsd answers, attached UPSes have fresh data and
                                        the shutdown path is whole
  nut-reconcile drill on-battery|low-battery|on-line|auto [--charge PERCENT]
                                        SIMULATE=1 only: pin the simulated UPS (a drill of the chain)

Exit codes: 0 ok; 1 failure; 2 bad settings or config (nothing written), or `plan` with changes pending.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import os
import sys
import time
from typing import Any

from reconcile import __version__, logfmt, nofile, store
from reconcile.act.files import DirError
from reconcile.cycle import Agent, simulator_for
from reconcile.decide import health
from reconcile.decide.decision import Decision, device_views
from reconcile.decide.render import mask_secrets
from reconcile.model import Plan, Thresholds, WriteFile, describe
from reconcile.nutsyntax import NutSyntaxError
from reconcile.observe import container, upsd_client, usb_libusb
from reconcile.outputs import notify
from reconcile.run import Runner
from reconcile.settings import Settings, SettingsError
from reconcile.settings import load as load_settings
from reconcile.simulate import CHARGE_RANGE
from reconcile.store import StoreError
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
    sub.add_parser("health", help="exit 0 when upsd answers, UPSes have fresh data, the shutdown path is whole")
    drill = sub.add_parser("drill", help="SIMULATE=1 only: pin the simulated UPS at a state, or back to its cycle")
    drill.add_argument("state", choices=("on-battery", "low-battery", "on-line", "auto"))
    drill.add_argument(
        "--charge",
        type=int,
        metavar="PERCENT",
        help="on-battery only: the charge to pin (1-100; default 80), e.g. 45 to drill low_battery_percent = 50",
    )
    return parser


def _secrets(decision: Decision) -> tuple[str, ...]:
    return decision.secrets.values()


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
            proc = getattr(step, "proc", None)
            steps.append(
                {
                    "type": "action",
                    "action": step.kind,
                    "ups": getattr(step, "ups", None),
                    "driver": getattr(step, "driver", None),
                    "pid": proc.pid if proc else None,
                    "reason": step.reason,
                }
            )
        steps[-1]["needs"] = sorted(step.needs)
    return {
        "in_sync": plan.in_sync,
        "steps": steps,
        "skipped": [{"file": s.name, "reason": s.reason} for s in plan.skipped],
        "warnings": list(plan.warnings),
    }


def cmd_plan(agent: Agent, as_json: bool) -> int:
    decision = agent.reconcile_once(agent.observer.scan_bus(), act=False).decision
    plan = decision.plan
    secrets = _secrets(decision)
    if as_json:
        print(json.dumps(_plan_json(plan, secrets), indent=2))
    else:
        for write in plan.writes:
            print(_diff(write, secrets), end="")
        for skipped in plan.skipped:
            print(f"skipped: {skipped.name} {skipped.reason}")
        for warning in (*plan.warnings, *(str(p) for p in decision.problems)):
            print(f"warning: {warning}")
        for blocked in plan.blocked:
            print(f"blocked: {blocked}")
        if plan.in_sync:
            print("in sync: nothing to do")
        else:
            print("\nsteps, in order:")
            for n, step in enumerate(plan.steps, 1):
                why = "" if isinstance(step, WriteFile) else step.reason
                after = f" [after {', '.join(str(i + 1) for i in sorted(step.needs))}]" if step.needs else ""
                print(f"  {n}. {describe(step)}" + (f"  ({why})" if why else "") + after)
    return EXIT_OK if plan.in_sync else EXIT_PENDING


def cmd_apply(agent: Agent) -> int:
    with store.locked(agent.settings.agent_dir):
        store.prepare(agent.settings)
        result = agent.reconcile_once(agent.observer.scan_bus(), act=True)
    if result.outcome is None:
        logfmt.info("reconcile.in-sync")
    return EXIT_OK if result.ok else EXIT_FAIL


def cmd_scan(agent: Agent, as_json: bool, show_all: bool) -> int:
    bus = agent.observer.scan_bus()
    decision = agent.reconcile_once(bus, act=False).decision
    by_port = {u.usb.port: u for u in decision.attached}
    devices = []
    for dev in bus:
        ups = by_port.get(dev.port)
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
                "name": decision.names.get(ups.key) if ups else None,
                "fingerprint": dev.fingerprint,
            }
        )
    result: dict[str, Any] = {"devices": devices}
    if show_all:
        try:
            result["libusb"] = [f"{d.vidpid} bus {d.busnum} device {d.devnum}" for d in usb_libusb.scan()]
        except usb_libusb.LibusbUnavailable as exc:
            result["libusb"] = f"unavailable: {exc}"
        result["nut_scanner"] = decision.obs.scanner
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
    for warning in decision.warnings:
        print(f"warning: {warning}")
    if show_all:
        print(f"libusb: {result['libusb']}")
        print(f"nut-scanner: {result['nut_scanner']}")
        print(f"driver table: {result['driver_table']}")
    return EXIT_OK


def cmd_status(agent: Agent, as_json: bool) -> int:
    decision = agent.reconcile_once(agent.observer.scan_bus(), act=False).decision
    owned, served = decision.owned, decision.obs.facts.served
    last = agent.store.load(store.STATUS)
    devices = device_views(decision)
    problems = [str(p) for p in decision.problems] + list(decision.plan.warnings) + list(decision.plan.blocked)
    sd = shutdown_view(agent, decision)
    thresholds = thresholds_view(decision)
    nut_version, readings = ups_readings(agent, served)
    result = {
        "agent": {"version": __version__, "nut_version": nut_version, "host_name": agent.settings.host_name},
        "upsd": {
            "pid": owned.upsd.proc.pid if owned.upsd else None,
            "error": None if served is not None else "not answering",
        },
        "upsmon": {"pid": owned.upsmon.proc.pid if owned.upsmon else None},
        "devices": devices,
        "drivers": {ups: {"driver": p.driver, "pid": p.proc.pid} for ups, p in owned.drivers.items()},
        "served": {n: {"state": v.state, "status": v.status} for n, v in (served or {}).items()},
        "strangers": [{"program": s.program, "pid": s.pid, "source": s.source} for s in owned.strangers],
        "problems": problems,
        "shutdown": sd,
        "thresholds": thresholds,
        "upses": readings,
        "recent": agent.store.load(store.RECENT) or {"last_event": None, "heals": {}},
        "last_reconcile": last,
    }
    if as_json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    print(
        f"upsd: {'pid ' + str(owned.upsd.proc.pid) if owned.upsd else 'not running'}"
        + ("" if served is not None else " (not answering)")
    )
    print(f"upsmon: {'pid ' + str(owned.upsmon.proc.pid) if owned.upsmon else 'not running'}")
    for name, view in (served or {}).items():
        drv = owned.drivers.get(name)
        print(
            f"{name}: {view.state}{' ' + view.status if view.status else ''}"
            f"  driver={drv.driver + ' pid ' + str(drv.proc.pid) if drv else 'not running'}"
        )
    for d in devices:
        held = "  (held: vanished on battery)" if d["held"] else ""
        print(f"device {d['port']} {d['vidpid']} serial={d['serial'] or '-'} -> {d['name']} ({d['driver']}){held}")
    for name, t in thresholds.items():
        print(f"thresholds: {name} {t['text']}")
    for s in owned.strangers:
        print(f"stranger: {s.program} pid {s.pid} ({s.source}): not started by nut-reconcile, never signalled")
    for problem in problems:
        print(f"problem: {problem}")
    if sd["fsd"]:
        print(f"forced shutdown (FSD): {', '.join(sd['fsd'])}; upsmon ran the shutdown: {sd['shutdown_ran']}")
    for name, can in sorted(sd["power_cycle"].items()):
        if not can:
            print(f"power cycle: {name} cannot (its driver offers no shutdown.return): a halted host stays off")
    for s in sd["secondaries"]:
        said = {True: "logged in", False: "not logged in", None: "not known"}[s["logged_in"]]
        where = s["from"] if isinstance(s["from"], str) else ", ".join(s["from"] or ["any other address"])
        print(f"secondary: {s['name']} on {s['ups']} (from {where}): {said}")
    for why in sd["broken"]:
        print(f"shutdown path: {why}")
    if sd["unarmed"]:
        print(f"not armed: {sd['unarmed']}")
    last_event = result["recent"].get("last_event") if isinstance(result["recent"], dict) else None
    if isinstance(last_event, dict) and last_event.get("kind") in POWER_CYCLE_EVENTS:
        # (the run's power cycle, refused or skipped, outlives the pass that decided it)
        print(f"power cycle: {last_event['kind']} {last_event.get('ups') or ''} at {last_event.get('at')}")
    if isinstance(last, dict):
        print(f"last reconcile: {last.get('last_reconcile')} by {last.get('by')}: {last.get('outcome')}")
        for error in last.get("errors") or []:
            print(f"  error: {error}")
    return EXIT_OK


POWER_CYCLE_EVENTS = ("ups.power_cycle", "ups.no_power_cycle", "power_cycle.skipped", "fsd.kept")


def thresholds_view(decision: Decision) -> dict[str, dict[str, Any]]:
    """Each served UPS's shutdown thresholds ([[device]] rules), for `status`: the three
    values (null: not set) and in words when this host shuts down for it."""
    out: dict[str, dict[str, Any]] = {}
    for u in (*decision.attached, *decision.held):
        if u.key not in decision.names:
            continue
        t = u.rule.thresholds if u.rule else Thresholds()
        if not u.powers_host:
            text = "does not power this host; its secondaries: " + (t.describe() or "shut down at its low battery (LB)")
        else:
            text = t.describe() or "shuts down at the UPS's own low battery (LB)"
        out[decision.names[u.key]] = {**t.as_dict(), "text": text}
    return out


def shutdown_view(agent: Agent, decision: Decision) -> dict[str, Any]:
    """The forced-shutdown state and the shutdown path, for `status`. `armed`: upsmon runs
    and the path is whole (decide/health.shutdown_path, what `health` checks: each
    expected secondary logged in from where it must come), so a low battery halts the
    hosts; `secondaries`: each one, and whether it is logged in (null: not known)."""
    path = health.shutdown_path(decision, agent.inputs.user.shutdown_secondaries, container.inside())
    return {
        "fsd": sorted(decision.forced.fsd),
        "shutdown_ran": decision.forced.shutdown_ran,
        "power_cycle": decision.power_cycle,
        "broken": list(path.broken),
        "armed": path.armed,
        "unarmed": path.unarmed or None,
        "secondaries": [
            {
                "name": s.name,
                "ups": s.ups,
                "from": "host" if s.from_host else list(s.addresses) or None,
                "this_host": s.this_host,
                "logged_in": logged_in,
            }
            for s, logged_in in path.secondaries
        ],
    }


READINGS = {"status": "ups.status", "charge": "battery.charge", "runtime": "battery.runtime"}


def ups_readings(agent: Agent, served: dict[str, Any] | None) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """upsd's version, and what it serves now of each UPS (its state, and with fresh data
    its status, charge, runtime and model). (None, {}) when upsd does not answer."""
    session = agent.observer.session
    if session is None or served is None:
        return None, {}
    out: dict[str, dict[str, Any]] = {}
    for name, view in sorted(served.items()):
        values = session.ask(functools.partial(upsd_client.variables, ups=name)) if view.state == "ok" else None
        row: dict[str, Any] = {"state": view.state}
        for key, variable in READINGS.items():
            raw = (values or {}).get(variable)
            row[key] = upsd_client.number(raw) if key in ("charge", "runtime") else raw
        row["model"] = upsd_client.model_of(values or {})
        out[name] = row
    return session.ask(upsd_client.version) or None, out


def cmd_health(agent: Agent) -> int:
    """Healthy: upsd answers, every UPS on the bus has fresh data, and the shutdown path
    is whole (decide/health.py). A live pass of its own, for people: the image's
    HEALTHCHECK reads the verdict `run` records instead (docker/nut-health.sh)."""
    # Why no LIST CMD: health does not need the commands.
    agent.observer.ask_commands = False
    decision = agent.reconcile_once(agent.observer.scan_bus(), act=False).decision
    v = health.verdict(decision, agent.inputs.user.shutdown_secondaries)
    print(v.text)
    return EXIT_OK if v.healthy else EXIT_FAIL


def cmd_drill(agent: Agent, state: str, charge: int | None = None) -> int:
    """Pin the SIMULATE demo's UPS at a state (reconcile/simulate.py): a safe drill of the
    power-failure chain. Refused without SIMULATE=1: never a real UPS."""
    if not agent.settings.simulate:
        print("nut-reconcile: error: drill needs SIMULATE=1 (it drives the simulated UPS only)", file=sys.stderr)
        return EXIT_USAGE
    if charge is not None:
        low, high = CHARGE_RANGE
        if state != "on-battery" or not low <= charge <= high:
            print(f"nut-reconcile: error: drill --charge: on-battery only, from {low} to {high} %", file=sys.stderr)
            return EXIT_USAGE
        state = f"{state} {charge}"
    simulator_for(agent.settings).set_drill(state)
    print(f"drill: {state} (the running agent picks it up at its next tick)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings: Settings = load_settings()
        if settings.tz:
            os.environ["TZ"] = settings.tz
            time.tzset()
        acting = args.command in ("run", "apply")
        logfmt.setup(settings.debug, None, to_stderr=not acting)
        agent = Agent.load(settings)  # every input is validated before a file is touched
        if acting:
            warning = logfmt.setup(settings.debug, settings.log_file, max_bytes=settings.log_file_max)
            if warning:
                logfmt.warning("log.file", error=warning, why="logging to stdout only")
            nofile.log(agent.maxconn)
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
        if args.command == "drill":
            return cmd_drill(agent, args.state, args.charge)
        refused = None if settings.notify is None else notify.refusal(settings.notify)
        if refused:
            # Why not exit 2 as for a bad setting: which URLs Apprise takes is the image's
            # Apprise's say (an upgrade may drop or change a service), and no output may ever
            # stop NUT. All off, so that none is half-working unseen; loaded again without
            # them, so that upsmon.conf gets no NOTIFYCMD for a socket nobody opens.
            logfmt.error(
                "notify.off",
                refused=refused,
                why="notifications are off until NOTIFY_URLS is fixed; NUT is served all the same",
            )
            settings = dataclasses.replace(settings, notify=None)
            agent = Agent.load(settings)
        with store.locked(settings.agent_dir):
            store.prepare(settings)
        return Runner(agent).run()
    except (SettingsError, ConfigError, NutSyntaxError, StoreError) as exc:
        print(f"nut-reconcile: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (DirError, TimeoutError) as exc:
        print(f"nut-reconcile: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_FAIL
