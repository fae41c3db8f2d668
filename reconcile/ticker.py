"""One tick of `nut-reconcile run`: scan the bus, settle it (decide/settle.py), run one
reconcile pass (cycle.Agent.reconcile_once, the same pass `apply` runs), record the health
verdict, and carry the supervision (backoff, stale drivers, the forced shutdown) to the
next tick (decide/supervision.after_pass). run.py decides when; this module what.
"""

from __future__ import annotations

import dataclasses
import time
import traceback

from reconcile import events, logfmt, store
from reconcile.act import daemons
from reconcile.act.verdict import VerdictFile
from reconcile.cycle import Agent
from reconcile.decide import forced, health, supervision, wake
from reconcile.decide.decision import Decision
from reconcile.decide.settle import Settle
from reconcile.decide.supervision import Supervision
from reconcile.model import UsbDevice
from reconcile.observe import usb_sysfs


class Ticker:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.settings = agent.settings
        self.settle = Settle()
        self.supervision = Supervision(
            stale_after=self.settings.stale_restart_after,
            fsd_clear_after=agent.inputs.user.fsd_clear_after,
            may_power_cycle=True,  # (only the long-running agent: `apply` never sends it)
        )
        self.last_bus: tuple[UsbDevice, ...] = ()
        self.last_scan: float | None = None
        # SETTLE_MIN while uevents are heard (set by the loop); polling settles by SETTLE_TIME alone.
        self.settle_min: float | None = None
        self.lock = store.Lock(self.settings.agent_dir)  # each pass holds it; kept open between passes
        self.verdicts = VerdictFile(self.settings.health_file)  # health verdict: the image's HEALTHCHECK reads it
        self.last_pass: float | None = None  # when the last tick began (monotonic)

    def tick(self) -> Decision:
        now = self.last_pass = time.monotonic()
        bus = self.agent.observer.scan_bus()
        before = self.settle.settled
        pending_before = self.settle.pending
        self.settle = self.settle.observe(
            bus, now, self.settings.settle_time, self._changed_at(bus, now), self.settle_min
        )
        if self.settle.pending is not None and self.settle.pending != pending_before:
            logfmt.info(
                "bus.change",
                devices=len(bus),
                settle_left=f"{self.settle.since + self.settings.settle_time - now:.1f}s",
            )
        settled = self.settle.settled or ()
        if before is not None and settled != before:
            logfmt.info("bus.settled", devices=len(settled))
        with self.lock.held():
            result = self.agent.reconcile_once(settled, dataclasses.replace(self.supervision, now=now), by="run")
        d, outcome = result.decision, result.outcome
        # health verdict (docker/nut-health.sh reads it): what `nut-reconcile health` would say now
        self.verdicts.record(health.verdict(d, self.agent.inputs.user.shutdown_secondaries))
        self.supervision = supervision.after_pass(
            d.supervision,
            on_bus=[d.names[u.key] for u in (*d.attached, *d.held)],
            stopped=outcome.stopping if outcome else (),
            started=outcome.started if outcome else (),
            failed=outcome.failed_starts if outcome else (),
            power_cycled=result.power_cycled,
            power_cycle_tried=d.forced.power_cycle,
        )
        daemons.reap()
        return d

    def _changed_at(self, bus: tuple[UsbDevice, ...], now: float) -> float | None:
        """When the newest device appeared (monotonic), no earlier than the previous scan."""
        previous, floor = self.last_bus, self.last_scan
        self.last_bus, self.last_scan = bus, now
        before = set(previous)
        added = [d.port for d in bus if d not in before]
        if not added or floor is None:
            return None
        stamps = usb_sysfs.appeared(self.settings.usb_sysfs_root, added)
        if len(stamps) < len(added):
            return None
        # Wall-clock stamps to monotonic time; clamped to the previous scan, since the
        # device was not there then: a clock jump cannot skip the settle time.
        return max(floor, now - max(0.0, time.time() - max(stamps.values())))

    def safe_tick(self) -> None:
        began = time.monotonic()
        try:
            d = self.tick()
        except Exception as exc:  # noqa: BLE001 - the loop must survive one bad tick
            logfmt.error("tick.failed", error=f"{type(exc).__name__}: {exc}")
            logfmt.debug("tick.traceback", trace=traceback.format_exc())
            events.emit(events.Tick(round(time.monotonic() - began, 6), False, "", ""))
            self.verdicts.record(health.failed(f"{type(exc).__name__}: {exc}"))  # health verdict
            return
        attached, held = (",".join(d.names[u.key] for u in group) for group in (d.attached, d.held))
        events.emit(events.Tick(round(time.monotonic() - began, 6), True, attached, held))

    def asks(self) -> dict[str, float | None]:
        """The one-shot passes the last tick asks for (decide/wake.py): when the pending bus
        change settles, when FSD may be called off; as seconds from now."""
        deadline = self.settle.deadline(self.settings.settle_time, self.settle_min)
        clear_at = forced.clear_at(self.supervision.online_since, self.supervision.fsd_clear_after)
        return wake.one_shots(time.monotonic(), deadline, clear_at)
