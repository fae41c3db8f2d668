"""The one entry of decide/: `decide(observation, supervision, inputs) -> Decision`.

Pure: a function of what was observed (one frozen Observation), what the run loop
carries between passes (Supervision) and a few fixed inputs (the user's config, the
driver table, the settings that shape the files, a password generator). It calls each
decision in turn: which processes are ours, which devices are UPSes, which stay held,
their names, the passwords, the desired files, the plan, what backoff holds back, and
what to remember of the power state. The result is plain data for act/ to carry out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconcile.decide import classify, desired, forced, identity, logins, ownership, plan, power, supervision
from reconcile.decide.identity import NameBook
from reconcile.decide.render import render_all, render_upsmon_with
from reconcile.decide.secrets import choose_secrets
from reconcile.decide.supervision import Supervision
from reconcile.model import ActualState, FileState, Ledger, NutConfig, Plan, Secrets, Ups, UsbDevice
from reconcile.observe.driver_table import DriverTable
from reconcile.observe.running import Facts
from reconcile.userconfig import UserConfig

Bus = tuple[UsbDevice, ...]


@dataclass(frozen=True)
class Observation:
    """Everything one pass reads (observer.py), frozen: equal observations make equal decisions."""

    bus: Bus
    scanner: dict[str, str]
    scanner_ran: bool  # nut-scanner ran now: its cache is to be written
    book: NameBook
    stored_secrets: dict[str, str]
    password_files: dict[str, str]
    memory: power.Memory
    ledger: Ledger
    files: dict[str, FileState]
    facts: Facts
    boot_wall: float
    today: int  # days since 1970 (UTC): for names not seen in a long time
    shutdown_ran: bool = False  # upsmon's POWERDOWNFLAG exists
    commands: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)  # upsd's LIST CMD per UPS
    # upsd's LIST CLIENT per UPS it serves: the address of each login (observer.py says
    # when it is asked); None when not asked or upsd did not answer.
    logins: Mapping[str, tuple[str, ...]] | None = None
    # This namespace's default gateways (observe/routes.py), read with the logins: in a
    # container, the address its own host's clients arrive from (decide/health.py).
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inputs:
    """What a decision needs besides the observation; fixed for the life of the agent."""

    user: UserConfig
    table: DriverTable
    ups_name: str
    statepath: str
    run_user: str
    names_forget_days: int
    hz: int
    generate_password: Callable[[], str]


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
    healed: tuple[tuple[str, float], ...]  # (UPS, seconds stale) fresh again now
    held_back: tuple[str, ...]
    supervision: Supervision
    forced: forced.Forced = dataclasses.field(default_factory=forced.Forced)

    @property
    def primary_login(self) -> tuple[str, str]:
        """The user and password our upsmon logs in with (also the power cycle's login)."""
        return desired.LOCAL_UPSMON_USER, self.secrets.upsmon

    @property
    def power_cycle(self) -> dict[str, bool | None]:
        """Per UPS of ours (by name): whether its driver offers a power cycle; None while
        that is not known (no fresh data yet, or its commands not asked yet)."""
        offered = self.obs.commands
        names = [self.names[u.key] for u in self.attached]
        return {n: forced.can_power_cycle(offered[n]) if n in offered else None for n in names}

    @property
    def cannot_power_cycle(self) -> dict[str, frozenset[str]]:
        """The UPSes of ours whose driver offers no power cycle (by name: what it offers)."""
        return {n: self.obs.commands[n] for n, ok in self.power_cycle.items() if ok is False}


def reuse(last: Decision | None, obs: Observation, sup: Supervision) -> Decision | None:
    """The last decision again, when it was made from this very observation and had
    nothing to do, and no driver is due a stale restart now (only the stale clock moved).
    Why: a tick with nothing new must cost little (a Pi Zero runs this every 2 s)."""
    if last is None or last.obs != obs or not last.plan.in_sync or last.held_back or last.forced.active:
        # (In a forced shutdown the clock matters: the time on line calls FSD off.)
        return None
    restart, since = _stale(obs, last.names, last.attached, last.owned, sup)
    if restart:
        return None
    return dataclasses.replace(last, healed=(), supervision=dataclasses.replace(sup, stale_since=since))


def decide(obs: Observation, sup: Supervision, inputs: Inputs) -> Decision:
    owned = ownership.sort_out(obs.facts.procs, obs.ledger, obs.files, obs.boot_wall, inputs.hz)
    user = inputs.user
    attached = classify.classify(obs.bus, inputs.table, obs.scanner, user.rules)
    upsmon = owned.upsmon.proc if owned.upsmon else None
    upsd = owned.upsd.proc if owned.upsd else None
    holding = power.held(obs.memory, {u.key for u in attached}, upsmon, upsd) if user.upsmon_enabled else {}
    held = held_upses(holding, inputs)
    naming = (inputs.ups_name, obs.today, inputs.names_forget_days, user.rules)
    names, book = identity.assign([*attached, *held.values()], obs.book, *naming)
    seen_by_key = {seen.key: seen for seen in holding.values()}
    for key in [k for k in held if names[k] != seen_by_key[k].name]:
        del held[key]  # its name moved on (state set aside): upsmon watches another name now
        names, book = identity.assign([*attached, *held.values()], obs.book, *naming)
    secrets, keep = choose_secrets(user, obs.password_files, obs.stored_secrets, inputs.generate_password)
    config, problems = desired.build(
        list(attached), list(held.values()), names, inputs.ups_name, user, secrets, inputs.statepath, inputs.run_user
    )
    wanted = plan.Desired(
        files=render_all(config),
        upsmon_enabled=config.upsmon_enabled,
        held=frozenset(names[u.key] for u in held.values()),
        monitors=config.monitors,
        upsmon_with=lambda monitors: render_upsmon_with(config, monitors),
    )
    actual = ActualState(
        files=obs.files,
        drivers=owned.drivers,
        upsd=owned.upsd,
        upsmon=owned.upsmon,
        served=obs.facts.served,
        strangers=owned.strangers,
    )
    restart, since = _stale(obs, names, attached, owned, sup)
    began: Mapping[str, float] = sup.stale_began
    healed: tuple[tuple[str, float], ...] = ()
    if sup.stale_after is not None:
        began, healed = supervision.track_stale(obs.facts.served or {}, sup.stale_began, sup.now)
    upses = [*attached, *held.values()]
    fsd = forced.decide_forced(forced_pass(obs, sup, inputs, owned, upses, names, config), sup.fsd)
    the_plan = plan.make_plan(wanted, actual, restart, clear_fsd=fsd.clear)
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
        actual=actual,
        memory=memory,
        plan=the_plan,
        restart=restart,
        healed=healed,
        held_back=tuple(held_back),
        supervision=dataclasses.replace(
            sup,
            stale_since=since,
            stale_began=began,
            fsd=fsd.memory,
        ),
        forced=fsd,
    )


def forced_pass(
    obs: Observation,
    sup: Supervision,
    inputs: Inputs,
    owned: ownership.Ownership,
    upses: Sequence[Ups],
    names: Mapping[str, str],
    config: NutConfig,
    stopping: bool = False,
) -> forced.Pass:
    """What decide/forced.py reads of this pass: the shutdown flag, whether our upsmon
    runs, who is logged in, and why a UPS of ours is never power-cycled (its rule, the
    off-delay, what its driver offers)."""
    user = inputs.user
    never: dict[str, str] = {}
    for ups in upses:
        name = names.get(ups.key)
        if name is None:
            continue
        asked = ups.rule.power_cycle if ups.rule is not None else None
        why = forced.blocked(ups.powers_host, asked, obs.commands.get(name), user.ups_off_delay)
        if why is not None:
            never[name] = why
    return forced.Pass(
        served=obs.facts.served,
        shutdown_ran=obs.shutdown_ran,
        upsmon_running=owned.upsmon is not None,
        logins=obs.logins,
        # Where our upsmon's login comes from (the one answer `health` reads too).
        own_address=logins.own_address(config),
        now=sup.now,
        clear_after=sup.fsd_clear_after,
        may_send=sup.may_power_cycle,
        stopping=stopping,
        blocked=never,
        # Sections with no driver that are no UPS of ours (a held one is): placeholders.
        placeholders=frozenset(config.driverless) - {names[u.key] for u in upses if u.key in names},
    )


def held_upses(holding: power.Memory, inputs: Inputs) -> dict[str, Ups]:
    """The held UPSes as UPSes again (same rule, driver and section as before), by key."""
    out: dict[str, Ups] = {}
    for seen in holding.values():
        found = classify.classify([seen.device], inputs.table, {}, inputs.user.rules)
        if found:
            ups = dataclasses.replace(found[0], twin=seen.twin)
            # (powers_host: the rule may have changed since it was seen)
            if ups.key == seen.key and ups.powers_host:
                out[ups.key] = ups
    return out


def _stale(
    obs: Observation,
    names: Mapping[str, str],
    attached: Sequence[Ups],
    owned: ownership.Ownership,
    sup: Supervision,
) -> tuple[frozenset[str], dict[str, float]]:
    if sup.stale_after is None:
        return frozenset(), {}
    on_bus = {names[u.key] for u in attached} & set(owned.drivers)
    return supervision.stale_drivers(obs.facts.served or {}, sup.stale_since, on_bus, sup.now, sup.stale_after)


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
