"""How `nut-reconcile run` stops (SIGTERM, SIGINT): the power cycle if the host is going
down in a forced shutdown, then upsmon, the drivers and upsd (only the agent's own), then
the outputs.
"""

from __future__ import annotations

import dataclasses
import time

from reconcile import events, logfmt, store
from reconcile.act import daemons
from reconcile.act.verdict import VerdictFile
from reconcile.cycle import Agent
from reconcile.decide import forced, health
from reconcile.decide.decision import forced_pass
from reconcile.outputs import start as outputs

# Seconds the power cycle may take on the way down. A UPS that answers takes well under
# one; this bounds one that does not. Why it may eat into the daemons' stop timeouts below
# (Docker kills after 10 s): a power cycle not sent leaves the hosts off for good, a daemon
# killed hard on a halting host costs nothing.
STOP_BUDGET = 4.0


def _power_cycle_on_the_way_down(agent: Agent, power_cycled: frozenset[str]) -> None:
    """Stopped while a UPS is in FSD: the host is halting (its own upsmon, a secondary,
    saw FSD), so the UPS is told to cycle the power now, before upsd and the drivers
    go (decide/forced.py), unless its rule or driver rules it out (logged as skipped).
    Never raises: the stop must go on."""
    last = agent.last
    if last is None or not last.forced.active:
        return
    try:
        upses = (*last.attached, *last.held)
        sup, names = last.supervision, last.names
        p = forced_pass(last.obs, sup, agent.inputs, last.owned, upses, names, last.config, stopping=True)
        memory = dataclasses.replace(last.supervision.fsd, power_cycled=power_cycled)
        cycle, skipped = forced.power_cycle_now(p, memory)
        for ups, why in sorted(skipped.items()):
            events.emit(events.PowerCycleSkipped(ups, why))
        agent.power_cycle(last, cycle, budget=STOP_BUDGET)
    except Exception as exc:  # noqa: BLE001 - the daemons must still be stopped
        logfmt.error("power_cycle.failed", error=f"{type(exc).__name__}: {exc}")


def stop(agent: Agent, power_cycled: frozenset[str], verdicts: VerdictFile, started: list[outputs.Output]) -> None:
    """upsmon first (it must not see the UPSes vanish and count them lost), then the
    drivers (all signalled at once: they take up to their poll interval), then upsd.
    Only the agent's own processes. The timeouts add up to less than Docker's 10 s
    before SIGKILL. `power_cycled`: the UPSes already sent the power cycle in this FSD."""
    began = time.monotonic()
    verdicts.record(health.STOPPED)  # health verdict: a stopping container is not healthy
    _power_cycle_on_the_way_down(agent, power_cycled)
    try:
        owned = agent.processes()
        if owned.upsmon:
            daemons.stop_upsmon(owned.upsmon.proc, timeout=2.0)
        for proc in owned.drivers.values():
            daemons.signal_stop(proc.proc, proc.driver)
        for ups, proc in owned.drivers.items():
            daemons.stop_driver(agent.settings, ups, proc.driver, proc.proc, timeout=4.0)
        if owned.upsd:
            daemons.stop_upsd(agent.settings, owned.upsd.proc, timeout=2.0)
        agent.store.save(store.PROCS, {})
        agent.observer.close()
    except (daemons.DaemonError, OSError) as exc:
        logfmt.error("stop.failed", error=str(exc))
    daemons.reap()
    # Outputs last: what the stop did still reaches them (MQTT says offline after it).
    for output in started:
        try:
            output.stop()
        except Exception as exc:  # noqa: BLE001 - the stop must finish
            logfmt.error("output.stop", output=type(output).__name__, error=f"{type(exc).__name__}: {exc}")
    logfmt.info("stopped", seconds=f"{time.monotonic() - began:.2f}")
