"""`nut-reconcile run`: the container's main process.

A tick scans the bus and runs one reconcile pass (cycle.Agent.reconcile_once, the same
pass `apply` runs), then updates the backoff (decide/supervision.after_pass). Ticks run
- when the kernel says a USB device came, went or changed (a uevent, wakeups.py), and
  again once the change has settled (decide/settle.py: read the same twice SETTLE_MIN
  apart, or stable for SETTLE_TIME), so a plug is served within about SETTLE_MIN plus
  the time to start its driver;
- every RESCAN_INTERVAL, for what no uevent announces (a dead driver, stale data, a
  changed file, a lost uevent);
- every SCAN_INTERVAL instead, when uevents are off or cannot be heard: then the bus is
  polled, and a change is acted on once it has been stable for SETTLE_TIME.
decide/wake.py says when the next tick is due. A tick that raises is logged and the loop
goes on. SIGTERM/SIGINT stop upsmon, the drivers and upsd (only the agent's own).
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
import traceback
from types import FrameType

from reconcile import events, logfmt, persist, store
from reconcile.act import daemons
from reconcile.act.verdict import VerdictFile
from reconcile.cycle import Agent, simulator_for
from reconcile.decide import forced, health, supervision, wake
from reconcile.decide.decision import Decision
from reconcile.decide.settle import Settle
from reconcile.decide.supervision import Supervision
from reconcile.model import UsbDevice
from reconcile.observe import usb_sysfs
from reconcile.outputs import start as outputs
from reconcile.wakeups import Wakeups


class Runner:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.settings = agent.settings
        self.settle = Settle()
        self.supervision = Supervision(
            stale_after=self.settings.stale_restart_after, fsd_clear_after=agent.inputs.user.fsd_clear_after
        )
        self.stopping = threading.Event()
        self.started = time.monotonic()
        self.simulator = simulator_for(self.settings) if self.settings.simulate else None
        self.last_bus: tuple[UsbDevice, ...] = ()
        self.last_scan: float | None = None
        self.outputs: list[outputs.Output] = []  # started outputs, stopped last at shutdown
        # SETTLE_MIN while uevents are heard (set by the loop); polling settles by SETTLE_TIME alone.
        self.settle_min: float | None = None
        self.lock = store.Lock(self.settings.agent_dir)  # each pass holds it; kept open between passes
        self.verdicts = VerdictFile(self.settings.health_file)  # health verdict: the image's HEALTHCHECK reads it

    # --- one tick ------------------------------------------------------------

    def tick(self) -> Decision:
        now = time.monotonic()
        if self.simulator is not None:
            state = self.simulator.step(now - self.started)
            logfmt.debug("simulate", plugged=state.plugged, status=dict(state.values).get("ups.status"))
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
        observer, expect = self.agent.observer, self.agent.inputs.user.expect_secondaries
        self.verdicts.record(health.verdict(d, self.settings.ups_name, observer.logins(d), expect))
        self.supervision = supervision.after_pass(
            d.supervision,
            on_bus=[d.names[u.key] for u in (*d.attached, *d.held)],
            stopped=outcome.stopping if outcome else (),
            started=outcome.started if outcome else (),
            failed=outcome.failed_starts if outcome else (),
        )
        if result.power_cycled:
            cycled = self.supervision.power_cycled | frozenset(result.power_cycled)
            self.supervision = dataclasses.replace(self.supervision, power_cycled=cycled)
        for ups in sorted(d.restart):
            events.emit(events.DriverStale(ups))
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

    # --- the loop --------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        logfmt.info("signal", name=signal.Signals(signum).name)
        self.stopping.set()

    def _admin_login(self) -> tuple[str, str] | None:
        """upsd's admin login, when one is configured (NUT_ADMIN_PASSWORD_FILE): for the
        instant commands an output may offer. None without it: no output sends commands."""
        last = self.agent.last
        return ("admin", last.secrets.admin) if last is not None and last.secrets.admin else None

    def _loop(self, wakeups: Wakeups) -> None:
        """Tick when due (decide/wake.py), sleep on the wake-ups in between."""
        listening = wakeups.listening  # uevents are heard: settle early, rescan at RESCAN_INTERVAL
        self.settle_min = self.settings.settle_min if listening else None
        timer = wake.Timer(wake.interval(listening, self.settings.scan_interval, self.settings.rescan_interval))
        if wake.too_slow(timer.interval, self.agent.inputs.user.pollfreq):
            logfmt.warning(
                "interval.slow",
                interval=f"{timer.interval:g}s",
                pollfreq=f"{self.agent.inputs.user.pollfreq:g}s",
                why="a UPS that goes on battery and vanishes between two passes is let go, not held",
            )
        while not self.stopping.is_set():
            now = time.monotonic()
            due = timer.due(self.settle.deadline(self.settings.settle_time, self.settle_min))
            if now >= due:
                timer = timer.passed(now)
                self.safe_tick()
                continue
            heard = wakeups.wait(due - now)
            if heard.nudge:
                timer = timer.nudge(time.monotonic())
            if listening and not wakeups.listening:  # the socket broke: poll from now on
                listening, self.settle_min = False, None
                timer = wake.Timer(self.settings.scan_interval, timer.last, timer.nudged)

    def run(self) -> int:
        daemons.become_subreaper()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        logfmt.info(
            "start",
            scan_interval=f"{self.settings.scan_interval:g}s",
            rescan_interval=f"{self.settings.rescan_interval:g}s",
            settle_time=f"{self.settings.settle_time:g}s",
            settle_min=f"{self.settings.settle_min:g}s",
            ups_name=self.settings.ups_name,
            confpath=self.settings.confpath,
            statepath=self.settings.statepath,
            agent_dir=self.settings.agent_dir,
            usb=self.settings.usb_sysfs_root,
            drivers_known=len(self.agent.table.by_vidpid),
        )
        # recent.json: the last notable event and the heals, for `status` and the fleet's table.
        events.subscribe(persist.Recent(self.agent.store).consume)
        # The outputs (metrics, MQTT, notifications): each only when its setting is on, each
        # one that fails to start logged, never a reason to stop serving NUT.
        self.outputs = outputs.start(
            self.settings, self.agent.inputs.user, self.agent.observer.listen, self._admin_login
        )
        wakeups = Wakeups.open(self.settings.uevents, self.settings.uevent_subsystem)
        try:
            self._loop(wakeups)
        finally:
            wakeups.close()
        self.shutdown()
        return 0

    def _power_cycle_on_the_way_down(self) -> None:
        """Stopped while a UPS is in FSD: the host is halting (its own upsmon, a secondary,
        saw FSD), so the UPS is told to cycle the power now, before upsd and the drivers
        go (decide/forced.py). Never raises: the stop must go on."""
        last = self.agent.last
        if last is None:
            return
        upses = forced.power_cycle_now(
            last.forced.fsd,
            last.forced.shutdown_ran,
            True,
            self.supervision.power_cycled,
            self.agent.inputs.user.ups_off_delay,
        )
        try:
            self.agent.power_cycle(last, upses)
        except Exception as exc:  # noqa: BLE001 - the daemons must still be stopped
            logfmt.error("power_cycle.failed", error=f"{type(exc).__name__}: {exc}")

    def shutdown(self) -> None:
        """upsmon first (it must not see the UPSes vanish and count them lost), then the
        drivers (all signalled at once: they take up to their poll interval), then upsd.
        Only the agent's own processes. The timeouts add up to less than Docker's 10 s
        before SIGKILL."""
        started = time.monotonic()
        self.verdicts.record(health.STOPPED)  # health verdict: a stopping container is not healthy
        self._power_cycle_on_the_way_down()
        try:
            owned = self.agent.processes()
            if owned.upsmon:
                daemons.stop_upsmon(owned.upsmon.proc, timeout=2.0)
            for proc in owned.drivers.values():
                daemons.signal_stop(proc.proc, proc.driver)
            for ups, proc in owned.drivers.items():
                daemons.stop_driver(self.settings, ups, proc.driver, proc.proc, timeout=4.0)
            if owned.upsd:
                daemons.stop_upsd(self.settings, owned.upsd.proc, timeout=2.0)
            self.agent.store.save(store.PROCS, {})
            self.agent.observer.close()
        except (daemons.DaemonError, OSError) as exc:
            logfmt.error("stop.failed", error=str(exc))
        daemons.reap()
        # Outputs last: what the stop did still reaches them (MQTT says offline after it).
        for output in self.outputs:
            try:
                output.stop()
            except Exception as exc:  # noqa: BLE001 - the stop must finish
                logfmt.error("output.stop", output=type(output).__name__, error=f"{type(exc).__name__}: {exc}")
        logfmt.info("stopped", seconds=f"{time.monotonic() - started:.2f}")
