"""One reconcile pass, the same for `apply` and for every tick of `run`:

    observe  (the bus, nut-scanner, the agent's state files, NUT's files, what runs and
              what upsd serves: reads only)
    decide   (pure: names, passwords, the desired files, which processes are ours, which
              UPSes stay held, the plan)
    act      (only when asked to: state files, then the plan's steps)

`plan`, `scan`, `status` and `health` observe and decide, and write nothing.
This module holds no policy of its own: it feeds observations to reconcile.decide and
hands the plan to reconcile.act.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reconcile import logfmt, store
from reconcile.act import apply
from reconcile.act.files import write_atomic
from reconcile.decide import classify, desired, identity, ownership, plan, power, supervision
from reconcile.decide.identity import NameBook
from reconcile.decide.render import render_all, render_upsmon_with
from reconcile.decide.secrets import choose_secrets, generate_password
from reconcile.decide.supervision import Supervision
from reconcile.model import ActualState, FileState, Ledger, NutConfig, Plan, Secrets, Ups, UsbDevice
from reconcile.nutsyntax import NutSyntaxError, section_drivers
from reconcile.observe import actual, driver_table, nut_scanner, processes, running, upsd_client, usb_libusb, usb_sysfs
from reconcile.settings import Settings
from reconcile.simulate import Simulator
from reconcile.userconfig import UserConfig, reachable
from reconcile.userconfig import load as load_user_config

SCANNER_TIMEOUT = 10.0
Bus = tuple[UsbDevice, ...]


def simulator_for(settings: Settings) -> Simulator:
    return Simulator(settings.usb_sysfs_root.parent, settings.simulate_cycle)


@dataclass(frozen=True)
class Observation:
    bus: Bus
    scanner: dict[str, str]
    scanner_ran: bool  # nut-scanner ran now: its cache is to be written
    book: NameBook
    stored_secrets: dict[str, str]
    password_files: dict[str, str]
    memory: power.Memory
    ledger: Ledger
    files: dict[str, FileState]
    facts: running.Facts
    boot_wall: float
    today: int  # days since 1970 (UTC): for names not seen in a long time


@dataclass(frozen=True)
class Decision:
    obs: Observation
    attached: tuple[Ups, ...]
    held: tuple[Ups, ...]
    names: dict[str, str]  # Ups.key -> NUT name
    book: NameBook
    secrets: Secrets
    secrets_to_keep: dict[str, str]
    config: NutConfig
    problems: tuple[desired.Problem, ...]
    warnings: tuple[str, ...]
    owned: ownership.Ownership
    actual: ActualState
    memory: power.Memory
    plan: Plan
    restart: frozenset[str]  # drivers restarted for stale data
    held_back: tuple[str, ...]
    supervision: Supervision


@dataclass(frozen=True)
class PassResult:
    decision: Decision
    outcome: apply.Outcome | None  # None: nothing was carried out (in sync, or not asked to act)
    supervision: Supervision

    @property
    def ok(self) -> bool:
        """Converged: every step succeeded and nothing was in the way."""
        return (self.outcome is None or self.outcome.ok) and not self.decision.plan.blocked


def device_views(decision: Decision) -> list[dict[str, Any]]:
    """The UPSes of a decision as plain data, for `status` and status.json."""
    held = {u.key for u in decision.held}
    return [
        {
            "name": decision.names[u.key],
            "driver": u.driver,
            "driver_from": u.driver_from,
            "port": u.usb.port,
            "address": u.usb.address,
            "vidpid": u.usb.vidpid,
            "serial": u.usb.serial,
            "fingerprint": u.usb.fingerprint,
            "held": u.key in held,
        }
        for u in (*decision.attached, *decision.held)
        if u.key in decision.names
    ]


@dataclass
class Agent:
    settings: Settings
    user: UserConfig
    table: driver_table.DriverTable
    # The state files; what could not be written (a full disk) is kept there, in memory.
    store: store.Store
    # What was reported, so a lasting problem is logged once, not at every tick.
    reported: set[str] = field(default_factory=set)
    last_state: dict[str, Any] | None = None
    # What a long-running agent keeps from tick to tick so that a tick with nothing new
    # costs little: each cache is keyed on what tells a change (inode, mtime, size), and
    # a decision is reused only for an observation equal to the one it was made from.
    seen: usb_sysfs.Seen = field(default_factory=dict)
    contents: actual.Contents = field(default_factory=dict)
    session: upsd_client.Session | None = None
    scanner_memo: tuple[tuple[str, ...], dict[str, str]] | None = None
    last: Decision | None = None

    @classmethod
    def load(cls, settings: Settings) -> Agent:
        """Raises userconfig.ConfigError, store.StoreError or OSError (driver table) with a clear message."""
        user = load_user_config(settings.config_file)
        if settings.simulate:
            user = dataclasses.replace(user, rules=(simulator_for(settings).rule(), *user.rules))
        agent = cls(settings, user, driver_table.load(settings.binaries.usb_rules), store.Store(settings.agent_dir))
        agent.password_files()  # a bad password file is bad input: refused before anything runs
        return agent

    @property
    def listen(self) -> tuple[str, int]:
        host, port = self.user.listen[0]
        return reachable(host), port

    def password_files(self) -> dict[str, str]:
        return {role: store.read_password_file(role, path) for role, path in self.settings.password_files}

    # --- observe -------------------------------------------------------------

    def scan_bus(self) -> Bus:
        root = self.settings.usb_sysfs_root
        if root.is_dir():
            return tuple(usb_sysfs.scan(root, self.seen))
        try:
            # No sysfs (a container without /sys mounted): libusb still reads /dev/bus/usb.
            return tuple(usb_libusb.scan())
        except usb_libusb.LibusbUnavailable:
            return ()

    def scanner_drivers(self, bus: Bus) -> tuple[dict[str, str], bool]:
        """nut-scanner's view: from its cache, or run now (only when the set of VID:PIDs
        on the bus is not the cached one). (drivers, whether it ran)."""
        binary = self.settings.binaries.nut_scanner
        key = nut_scanner.cache_key({d.vidpid for d in bus})
        if binary is None or not key:
            return {}, False
        if self.scanner_memo is not None and self.scanner_memo[0] == key:
            return dict(self.scanner_memo[1]), False
        cached = nut_scanner.read_cache(self.settings.agent_dir / store.SCANNER, key)
        if cached is not None:
            self.scanner_memo = (key, cached)
            return dict(cached), False
        try:
            found = nut_scanner.run(binary, SCANNER_TIMEOUT, self.settings.nut_env())
        except (subprocess.TimeoutExpired, OSError) as exc:
            logfmt.warning("nut-scanner.failed", error=str(exc))
            return {}, False
        logfmt.info("nut-scanner.ran", devices=len(found))
        self.scanner_memo = (key, found)
        return dict(found), True

    def _running(self, ledger: Ledger, files: dict[str, FileState], scanner: dict[str, str]) -> running.Facts:
        """What runs: found through NUT's PID files (for every driver that may be in use)
        and the agent's record."""
        s = self.settings
        drivers = set(self.table.usb_drivers) | {"dummy-ups"} | set(scanner.values())
        drivers |= {r.driver for r in self.user.rules if r.driver}
        try:
            drivers |= set(section_drivers(files["ups.conf"].content).values())
        except NutSyntaxError:
            pass  # the plan reports an unparsable ups.conf
        marker = {"NUT_CONFPATH": str(s.confpath), "NUT_STATEPATH": str(s.statepath)}
        if self.session is None:
            self.session = upsd_client.Session(*self.listen)
        binaries = {name: path for name, path in (("upsd", s.binaries.upsd), ("upsmon", s.binaries.upsmon)) if path}
        return running.gather(
            s.statepath, marker, ledger, drivers, self.listen, session=self.session, binaries=binaries
        )

    def observe(self, bus: Bus, may_write: bool) -> Observation:
        s, st = self.settings, self.store
        st.set_aside = may_write
        scanner, ran = self.scanner_drivers(bus)
        ledger = st.load(store.PROCS) or {}
        files = actual.read_files(s.confpath, self.contents)
        return Observation(
            bus=bus,
            scanner=scanner,
            scanner_ran=ran,
            book=st.load(store.NAMES) or NameBook(),
            stored_secrets=st.load(store.SECRETS) or {},
            password_files=self.password_files(),
            memory=st.load(store.SEEN) or {},
            ledger=ledger,
            files=files,
            facts=self._running(ledger, files, scanner),
            boot_wall=processes.boot_wall(),
            today=int(time.time() // 86400),
        )

    def processes(self) -> ownership.Ownership:
        """Only what runs, and which of it is ours (for stopping everything)."""
        ledger = self.store.load(store.PROCS) or {}
        files = actual.read_files(self.settings.confpath)
        return ownership.sort_out(
            self._running(ledger, files, {}).procs, ledger, files, processes.boot_wall(), processes.hz()
        )

    # --- decide (pure, but for generating a missing password) ------------------------

    def decide(self, obs: Observation, sup: Supervision) -> Decision:
        """Pure (but for generating a missing password): a function of the observation and
        the supervision. So when the observation is the very one the last decision was
        made from, and that decision had nothing to do, it is that decision again: only
        the stale-data clock is looked at anew."""
        last = self.last
        if last is not None and last.obs == obs and last.plan.in_sync and not last.held_back:
            restart, since = self._stale(obs, last.names, last.attached, last.owned, sup)
            if not restart:
                return dataclasses.replace(last, supervision=dataclasses.replace(sup, stale_since=since))
        self.last = decision = self._decide(obs, sup)
        return decision

    def _stale(
        self,
        obs: Observation,
        names: dict[str, str],
        attached: Sequence[Ups],
        owned: ownership.Ownership,
        sup: Supervision,
    ) -> tuple[frozenset[str], dict[str, float]]:
        if sup.stale_after is None:
            return frozenset(), {}
        on_bus = {names[u.key] for u in attached} & set(owned.drivers)
        return supervision.stale_drivers(obs.facts.served or {}, sup.stale_since, on_bus, sup.now, sup.stale_after)

    def _decide(self, obs: Observation, sup: Supervision) -> Decision:
        s = self.settings
        owned = ownership.sort_out(obs.facts.procs, obs.ledger, obs.files, obs.boot_wall, processes.hz())
        attached = classify.classify(obs.bus, self.table, obs.scanner, self.user.rules)
        upsmon = owned.upsmon.proc if owned.upsmon else None
        upsd = owned.upsd.proc if owned.upsd else None
        holding = power.held(obs.memory, {u.key for u in attached}, upsmon, upsd) if self.user.upsmon_enabled else {}
        held = self._held_upses(holding)
        naming = (s.ups_name, obs.today, s.names_forget_days, self.user.rules)
        names, book = identity.assign([*attached, *held.values()], obs.book, *naming)
        seen_by_key = {seen.key: seen for seen in holding.values()}
        for key in [k for k in held if names[k] != seen_by_key[k].name]:
            del held[key]  # its name moved on (state set aside): upsmon watches another name now
            names, book = identity.assign([*attached, *held.values()], obs.book, *naming)
        secrets, keep = choose_secrets(self.user, obs.password_files, obs.stored_secrets, generate_password)
        config, problems = desired.build(
            list(attached), list(held.values()), names, s.ups_name, self.user, secrets, str(s.statepath), s.run_user
        )
        wanted = plan.Desired(
            files=render_all(config),
            upsmon_enabled=config.upsmon_enabled,
            held=frozenset(names[u.key] for u in held.values()),
            monitors=config.monitors,
            upsmon_with=lambda monitors: render_upsmon_with(config, monitors),
        )
        now_actual = ActualState(
            files=obs.files,
            drivers=owned.drivers,
            upsd=owned.upsd,
            upsmon=owned.upsmon,
            served=obs.facts.served,
            strangers=owned.strangers,
        )
        restart, since = self._stale(obs, names, attached, owned, sup)
        the_plan = plan.make_plan(wanted, now_actual, restart)
        held_back: list[str] = []
        if sup.stale_after is not None:
            the_plan, held_back = supervision.hold_back(the_plan, sup.backoff, sup.now)
        memory = power.remember(
            obs.memory,
            {u.key: u for u in attached},
            names,
            obs.facts.served,
            upsmon,
            upsd,
            {seen.name: seen for seen in holding.values() if seen.key in held},
        )
        return Decision(
            obs=obs,
            attached=tuple(attached),
            held=tuple(held.values()),
            names=names,
            book=book,
            secrets=secrets,
            secrets_to_keep=keep,
            config=config,
            problems=problems,
            warnings=tuple(classify.twin_warnings(attached)),
            owned=owned,
            actual=now_actual,
            memory=memory,
            plan=the_plan,
            restart=restart,
            held_back=tuple(held_back),
            supervision=dataclasses.replace(sup, stale_since=since),
        )

    def _held_upses(self, holding: power.Memory) -> dict[str, Ups]:
        """The held UPSes as UPSes again (same rule, driver and section as before), by key."""
        out: dict[str, Ups] = {}
        for seen in holding.values():
            found = classify.classify([seen.device], self.table, {}, self.user.rules)
            if found:
                ups = dataclasses.replace(found[0], twin=seen.twin)
                # (powers_host: the rule may have changed since it was seen)
                if ups.key == seen.key and ups.powers_host:
                    out[ups.key] = ups
        return out

    # --- the pass --------------------------------------------------------------------

    def reconcile_once(
        self, bus: Bus, sup: Supervision | None = None, act: bool = True, by: str = "apply"
    ) -> PassResult:
        sup = sup or Supervision()
        decision = self.decide(self.observe(bus, may_write=act), sup)
        self._report(decision)
        if not act:
            return PassResult(decision, None, decision.supervision)
        self._save_state(decision)
        outcome = None
        if not decision.plan.in_sync:
            outcome = apply.execute(
                decision.plan,
                self.settings,
                self.listen,
                decision.owned.ledger,
                # Best effort: a ledger that cannot be saved (a full disk) stays in memory,
                # and the start goes on; a daemon not started is worse than one unrecorded.
                lambda ledger: self.store.save(store.PROCS, ledger),
            )
            logfmt.info(
                "reconcile.done",
                steps=len(decision.plan.steps),
                errors=len(outcome.errors),
                skipped=len(outcome.skipped),
            )
        new_sup = decision.supervision
        backoff = new_sup.backoff
        # A driver the agent stopped, or whose UPS has left the bus, did not die: its next
        # start (the UPS plugged back) is a first start, not a retry held back by backoff.
        on_bus = {f"driver:{decision.names[u.key]}" for u in (*decision.attached, *decision.held)}
        for key in [k for k in backoff.entries if k.startswith("driver:") and k not in on_bus]:
            backoff = backoff.forget(key)
        if outcome is not None:
            for ups in outcome.stopping:
                backoff = backoff.forget(f"driver:{ups}")
            for key in outcome.started:
                backoff = backoff.started(key, sup.now)
            # A start that failed is retried ever more slowly, like one that died at once:
            # else a device that never opens is tried at every tick, the lock held each time.
            for key in outcome.failed_starts:
                backoff = backoff.failed(key, sup.now)
        if backoff is not new_sup.backoff:
            new_sup = dataclasses.replace(new_sup, backoff=backoff)
        self._save_status(decision, outcome, by)
        return PassResult(decision, outcome, new_sup)

    def _save_state(self, d: Decision) -> None:
        """The agent's state files, each only when it changed (the state dir may sit on
        an SD card), and each kept in memory when it cannot be written. Passwords first:
        upsd.users must never hold one that is not kept."""
        st = self.store
        st.retry_unsaved((store.SECRETS, store.NAMES, store.SEEN, store.PROCS))
        if d.secrets_to_keep != d.obs.stored_secrets:
            st.save(store.SECRETS, d.secrets_to_keep)
        if d.book != d.obs.book:
            st.save(store.NAMES, d.book)
        if d.memory != d.obs.memory:
            st.save(store.SEEN, d.memory)
        if d.owned.ledger != d.obs.ledger:
            st.save(store.PROCS, d.owned.ledger)
        if d.obs.scanner_ran:
            key = nut_scanner.cache_key({dev.vidpid for dev in d.obs.bus})
            try:
                text = nut_scanner.cache_text(key, d.obs.scanner)
                write_atomic(self.settings.agent_dir / store.SCANNER, text, mode=0o600)
            except OSError as exc:
                logfmt.debug("nut-scanner.cache", error=str(exc))

    def _save_status(self, d: Decision, outcome: apply.Outcome | None, by: str) -> None:
        # What the pass decided, not live readings (`status` shows those): so an unchanged
        # state is not written again.
        state = {
            "devices": device_views(d),
            "held_back": list(d.held_back),
            "problems": [str(p) for p in d.problems] + list(d.plan.warnings) + list(d.plan.blocked),
        }
        if self.last_state is None:
            last = self.store.load(store.STATUS) or {}
            self.last_state = last.get("state") if last.get("outcome") in ("in sync", "ok") else {}
        if outcome is None and state == self.last_state:
            return  # nothing new: no write (SD card)
        if outcome is None:
            result, errors = "in sync", []
        else:
            result, errors = ("ok" if outcome.ok else "errors"), outcome.errors + outcome.skipped
        try:
            self.store.write(store.STATUS, store.status_record(by, result, errors, state))
            self.last_state = state if outcome is None or outcome.ok else {}
        except OSError as exc:
            logfmt.debug("status.write", error=str(exc))

    def _report(self, d: Decision) -> None:
        """Each problem once while it lasts (a stranger, an unservable UPS, a held UPS)."""
        events: list[tuple[str, str, dict[str, Any]]] = []
        for p in d.problems:
            events.append(("error", "ups.unservable", {"ups": p.ups, "why": p.reason}))
        for w in d.warnings:
            events.append(("warning", "ups.twins", {"why": w}))
        for w in d.plan.warnings:
            events.append(("warning", "plan.warning", {"why": w}))
        for w in d.plan.blocked:
            events.append(("error", "plan.blocked", {"why": w}))
        for s in d.owned.strangers:
            events.append(
                (
                    "error",
                    "process.stranger",
                    {
                        "program": s.program,
                        "pid": s.pid,
                        "source": s.source,
                        "why": "not started by nut-reconcile: never signalled",
                    },
                )
            )
        for key in d.owned.adopted:
            events.append(("info", "process.adopted", {"process": key, "why": "started for our NUT dirs"}))
        for u in d.held:
            events.append(
                (
                    "warning",
                    "ups.held",
                    {
                        "ups": d.names[u.key],
                        "why": "vanished while on battery: stays watched so upsmon's DEADTIME rule can act",
                    },
                )
            )
        for skipped in d.plan.skipped:
            events.append(("warning", "file.skip", {"file": skipped.name, "why": skipped.reason}))
        for item in d.held_back:
            events.append(("debug", "backoff.hold", {"target": item}))
        now = set()
        for level, event, fields in events:
            key = f"{event} {sorted(fields.items())}"
            now.add(key)
            if key not in self.reported:
                getattr(logfmt, level)(event, **fields)
        self.reported = now
        for ups, what in power.changes(d.obs.memory, d.memory):
            logfmt.info("ups.power", ups=ups, status=what)
