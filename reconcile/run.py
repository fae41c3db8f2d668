"""`nut-reconcile run`: the container's main process, the loop and nothing else.

A tick (ticker.py) scans the bus and runs one reconcile pass, the same pass `apply` runs.
The `schedule` package runs the ticks (timers.py; the rules in decide/wake.py):
- every RESCAN_INTERVAL, for what no uevent announces (a dead driver, stale data, a
  changed file, a lost uevent), or every SCAN_INTERVAL when uevents are off or cannot be
  heard: then the bus is polled, and a change is acted on once stable for SETTLE_TIME;
- at once when the kernel says a USB device came, went or changed (a uevent, wakeups.py),
  and again once the change has settled (decide/settle.py: read the same twice SETTLE_MIN
  apart, or stable for SETTLE_TIME), so a plug is served within about SETTLE_MIN plus the
  time to start its driver;
- the moment a forced shutdown may be called off (decide/forced.py).
With SIMULATE, the simulator's clock is a job of its own. Between jobs the loop sleeps on
the uevent socket and the signals. A tick that raises is logged and the loop goes on.
SIGTERM/SIGINT stop upsmon, the drivers and upsd, only the agent's own (stopping.py).
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

from reconcile import events, logfmt, persist, stopping
from reconcile.act import daemons
from reconcile.cycle import Agent, simulator_for
from reconcile.decide import wake
from reconcile.outputs import start as outputs
from reconcile.ticker import Ticker
from reconcile.timers import Timers
from reconcile.wakeups import Wakeups


def admin_login(agent: Agent) -> tuple[str, str] | None:
    """upsd's admin login, when one is configured (NUT_ADMIN_PASSWORD_FILE): for the
    instant commands an output may offer. None without it: no output sends commands."""
    last = agent.last
    return ("admin", last.secrets.admin) if last is not None and last.secrets.admin else None


class Runner:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.settings = agent.settings
        self.ticker = Ticker(agent)
        self.timers = Timers()
        self.stopping = threading.Event()
        self.started = time.monotonic()
        self.simulator = simulator_for(self.settings) if self.settings.simulate else None
        self.outputs: list[outputs.Output] = []  # started outputs, stopped last at shutdown

    def _tick(self) -> None:
        """The pass job: one tick, then the one-shot passes it asks for."""
        self.timers.cancel(wake.NUDGE)  # this tick reads what a uevent announced
        self.ticker.safe_tick()
        for name, delay in self.ticker.asks().items():
            if delay is None:
                self.timers.cancel(name)
            else:
                self.timers.once(name, delay, self._tick_now)

    def _tick_now(self) -> None:
        """A tick now, before its time: the periodic pass's period starts again from here."""
        self.timers.run_now(wake.PASS)

    def _nudge(self) -> None:
        """Something changed on the bus: a tick soon (decide/wake.py: MIN_GAP after the last)."""
        if self.timers.pending(wake.NUDGE) is None:
            delay = wake.nudge_delay(time.monotonic(), self.ticker.last_pass)
            self.timers.once(wake.NUDGE, delay, self._tick_now)

    def _simulate(self) -> None:
        """The simulator's clock (SIMULATE): the simulated UPS moves on; a plug or an unplug
        brings the tick forward, as the kernel's uevent does for a real one."""
        assert self.simulator is not None
        before = self.simulator.plugged
        state = self.simulator.step(time.monotonic() - self.started)
        logfmt.debug("simulate", plugged=state.plugged, status=dict(state.values).get("ups.status"))
        if state.plugged != before:
            self._nudge()

    def _install(self, listening: bool) -> float:
        """The periodic jobs (decide/wake.py), for uevents heard or not; returns the pass interval."""
        self.ticker.settle_min = self.settings.settle_min if listening else None
        every = wake.interval(listening, self.settings.scan_interval, self.settings.rescan_interval)
        run = {wake.PASS: self._tick, wake.SIMULATE: self._simulate}
        for job in wake.jobs(every, self.simulator is not None):
            self.timers.every(job.name, job.every, run[job.name])
        return every

    def _loop(self, wakeups: Wakeups) -> None:
        """Run the jobs that are due, sleep on the wake-ups until the next one."""
        listening = wakeups.listening  # uevents are heard: settle early, rescan at RESCAN_INTERVAL
        every = self._install(listening)
        pollfreq = self.agent.inputs.user.pollfreq
        if wake.too_slow(every, pollfreq):
            why = "a UPS that goes on battery and vanishes between two passes is let go, not held"
            logfmt.warning("interval.slow", interval=f"{every:g}s", pollfreq=f"{pollfreq:g}s", why=why)
        if self.simulator is not None:
            self.simulator.step(0.0)  # the simulated UPS is there for the first tick
        self._tick_now()  # the first tick at once: serve NUT before the first period ends
        while not self.stopping.is_set():
            self.timers.run_pending()
            if self.stopping.is_set():
                break
            if wakeups.wait(self.timers.idle()).nudge:
                self._nudge()
            if listening and not wakeups.listening:  # the socket broke: poll from now on
                listening = False
                self._install(listening)
                self._nudge()  # and look now: what the socket lost, this tick sees

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        logfmt.info("signal", name=signal.Signals(signum).name)
        self.stopping.set()

    def run(self) -> int:
        daemons.become_subreaper()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        s = self.settings
        logfmt.info(
            "start",
            scan_interval=f"{s.scan_interval:g}s",
            rescan_interval=f"{s.rescan_interval:g}s",
            settle_time=f"{s.settle_time:g}s",
            settle_min=f"{s.settle_min:g}s",
            ups_name=s.ups_name,
            confpath=s.confpath,
            statepath=s.statepath,
            agent_dir=s.agent_dir,
            usb=s.usb_sysfs_root,
            drivers_known=len(self.agent.table.by_vidpid),
        )
        # recent.json: the last notable event and the heals, for `status` and the fleet's table.
        events.subscribe(persist.Recent(self.agent.store).consume)
        # The outputs (metrics, MQTT, notifications): each only when its setting is on, each
        # one that fails to start logged, never a reason to stop serving NUT.
        self.outputs = outputs.start(
            s, self.agent.inputs.user, self.agent.observer.listen, lambda: admin_login(self.agent)
        )
        wakeups = Wakeups.open(s.uevents, s.uevent_subsystem)
        try:
            self._loop(wakeups)
        finally:
            wakeups.close()
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        stopping.stop(self.agent, self.ticker.supervision.power_cycled, self.ticker.verdicts, self.outputs)
