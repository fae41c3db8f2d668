"""One reconcile pass, the same for `apply` and for every tick of `run`:

    observe  observer.Observer.observe: the bus, nut-scanner, the state files, NUT's
             files, what runs and what upsd serves, as one frozen Observation
    decide   decide.decision.decide: pure, one entry, a Decision (names, passwords,
             the files, which processes are ours, which UPSes stay held, the plan)
    act      only when asked to: persist.save_state, act.apply.execute, act.powercycle
    events   decide.report turns the decision into typed events (reconcile/events.py)
             for the log and any other consumer

`plan`, `scan`, `status` and `health` observe and decide, and write nothing. This module
holds no policy: it is the wiring of one pass.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from reconcile import events, nofile, store
from reconcile.act import apply, powercycle
from reconcile.decide import forced, ownership, report
from reconcile.decide.decision import Bus, Decision, Inputs, decide, reuse
from reconcile.decide.secrets import generate_password
from reconcile.decide.supervision import Supervision
from reconcile.observe import actual, driver_table, processes
from reconcile.observer import Observer
from reconcile.persist import StatusFile, save_state
from reconcile.settings import Settings, upssched_for
from reconcile.simulate import Simulator
from reconcile.userconfig import load as load_user_config


def simulator_for(settings: Settings) -> Simulator:
    return Simulator(settings.usb_sysfs_root.parent, settings.simulate_cycle)


@dataclass(frozen=True)
class PassResult:
    decision: Decision
    outcome: apply.Outcome | None  # None: nothing was carried out (in sync, or not asked to act)
    power_cycled: tuple[str, ...] = ()  # UPSes the power cycle reached in this pass (of decision.forced's)

    @property
    def ok(self) -> bool:
        """Converged: every step succeeded and nothing was in the way."""
        return (self.outcome is None or self.outcome.ok) and not self.decision.plan.blocked


@dataclass
class Agent:
    settings: Settings
    observer: Observer
    inputs: Inputs
    status: StatusFile
    reported: frozenset[events.Event] = frozenset()  # the problems reported, while they last
    last: Decision | None = None
    maxconn: nofile.Fit | None = None  # upsd's MAXCONN against the open-files limit (nofile.log)

    @classmethod
    def load(cls, settings: Settings) -> Agent:
        """Raises userconfig.ConfigError, store.StoreError, SettingsError (nofile) or OSError (driver table)."""
        user = load_user_config(settings.config_file, settings.ups_name)
        maxconn = nofile.fit_maxconn(user.maxconn)  # before any NUT daemon starts: they inherit it
        user = dataclasses.replace(user, maxconn=maxconn.maxconn)
        if settings.simulate:
            user = dataclasses.replace(user, rules=(simulator_for(settings).rule(user.rules), *user.rules))
        if settings.notify is not None:  # upsmon hands its notices to the agent (outputs/relay.py)
            user = dataclasses.replace(user, notify_cmd=settings.notify.notify_cmd)
        # on_battery_max_seconds: upssched, run by the relay (settings.upssched_for; ConfigError)
        user = dataclasses.replace(user, upssched=upssched_for(settings, user.rules))
        table = driver_table.load(settings.binaries.usb_rules)
        st = store.Store(settings.agent_dir)
        observer = Observer(settings, user, table, st)
        observer.password_files()  # a bad password file is bad input: refused before anything runs
        s = settings
        hz = processes.hz()
        inputs = Inputs(
            user, table, s.ups_name, str(s.statepath), s.run_user, s.names_forget_days, hz, generate_password
        )
        return cls(settings, observer, inputs, StatusFile(st), maxconn=maxconn)

    @property
    def store(self) -> store.Store:
        return self.observer.store

    @property
    def table(self) -> driver_table.DriverTable:
        return self.inputs.table

    def processes(self) -> ownership.Ownership:
        """Only what runs, and which of it is ours (for stopping everything)."""
        ledger = self.store.load(store.PROCS) or {}
        files = actual.read_files(self.settings.confpath)
        procs = self.observer.running(ledger, files, {}).procs
        return ownership.sort_out(procs, ledger, files, processes.boot_wall(), processes.hz())

    def reconcile_once(
        self, bus: Bus, sup: Supervision | None = None, act: bool = True, by: str = "apply"
    ) -> PassResult:
        sup = sup or Supervision()
        obs = self.observer.observe(bus, may_write=act)
        decision = reuse(self.last, obs, sup) or decide(obs, sup, self.inputs)
        self._report(decision)
        self.last = decision
        if not act:
            return PassResult(decision, None)
        save_state(self.store, decision)
        outcome = None
        if not decision.plan.in_sync:
            # The ledger is saved before each start, best effort: one that cannot be saved
            # (a full disk) stays in memory, and the start goes on.
            save_ledger = functools.partial(self.store.save, store.PROCS)
            ledger = decision.owned.ledger
            outcome = apply.execute(decision.plan, self.settings, self.observer.listen, ledger, save_ledger)
            events.emit(events.PassDone(len(decision.plan.steps), len(outcome.errors), len(outcome.skipped)))
        sent, ok = self.power_cycle(decision, decision.forced.power_cycle), None if outcome is None else outcome.ok
        self.status.save(decision, ok, [] if outcome is None else outcome.errors + outcome.skipped, by)
        return PassResult(decision, outcome, sent)

    def power_cycle(self, d: Decision, upses: tuple[str, ...], budget: float = powercycle.BUDGET) -> tuple[str, ...]:
        """act/powercycle.py for `upses` (primary upsmon's login, forced.delays): those it reached."""
        plan = functools.partial(forced.delays, self.inputs.user.ups_off_delay)
        return powercycle.send_all(self.observer.listen, d.primary_login, upses, plan, d.obs.commands, budget)

    def _report(self, d: Decision) -> None:
        on_bus = frozenset(d.names[u.key] for u in d.attached)
        problems, self.reported = report.once(report.problems(d), self.reported, on_bus)
        for event in [
            *report.bus(self.last, d),
            *report.died(self.last, d),
            *problems,
            *report.power(d.obs.memory, d.memory),
            *report.healed(d.healed),
            *report.stale(d),
            *report.no_power_cycle(self.last, d),
            *report.forced(self.last, d),
        ]:
            events.emit(event)
