"""One reconcile pass, wired together: observe -> decide -> (act, by the caller).

This module holds no policy of its own: it feeds observations to the pure functions
in reconcile.decide and hands their result to reconcile.act.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from dataclasses import dataclass
from functools import partial

from reconcile import logfmt, store
from reconcile.act import daemons
from reconcile.act.files import write_atomic
from reconcile.decide import classify, desired, identity, plan
from reconcile.decide.desired import Secrets
from reconcile.decide.render import render_all, render_upsmon_with
from reconcile.model import ActualState, NutConfig, Plan, Ups, UsbDevice
from reconcile.observe import actual, driver_table, nut_scanner, usb_libusb, usb_sysfs
from reconcile.settings import Settings
from reconcile.simulate import Simulator
from reconcile.userconfig import UserConfig
from reconcile.userconfig import load as load_user_config

SCANNER_TIMEOUT = 10.0


def simulator_for(settings: Settings) -> Simulator:
    return Simulator(settings.usb_sysfs_root.parent, settings.simulate_cycle)


@dataclass(frozen=True)
class Decision:
    bus: tuple[UsbDevice, ...]
    upses: tuple[Ups, ...]
    names: dict[str, str]  # fingerprint -> NUT name
    book: identity.NameBook
    config: NutConfig
    desired: plan.Desired
    secrets: Secrets


def device_views(decision: Decision) -> list[dict[str, str]]:
    """The UPSes of a decision as plain data, for `status` and status.json."""
    return [
        {
            "name": decision.names[u.usb.fingerprint],
            "driver": u.driver,
            "driver_from": u.driver_from,
            "port": u.usb.port,
            "address": u.usb.address,
            "vidpid": u.usb.vidpid,
            "serial": u.usb.serial,
            "fingerprint": u.usb.fingerprint,
        }
        for u in decision.upses
    ]


@dataclass
class Agent:
    settings: Settings
    user: UserConfig
    table: driver_table.DriverTable

    @classmethod
    def load(cls, settings: Settings) -> Agent:
        """Raises userconfig.ConfigError or OSError (driver table) with a clear message."""
        user = load_user_config(settings.config_file)
        if settings.simulate:
            user = dataclasses.replace(user, rules=(simulator_for(settings).rule(), *user.rules))
        return cls(settings, user, driver_table.load(settings.binaries.usb_rules))

    @property
    def listen(self) -> tuple[str, int]:
        return self.user.listen[0]

    # --- observe -------------------------------------------------------------

    def scan_bus(self) -> tuple[UsbDevice, ...]:
        root = self.settings.usb_sysfs_root
        if root.is_dir():
            return tuple(usb_sysfs.scan(root))
        try:
            # No sysfs (a container without /sys mounted): libusb still reads /dev/bus/usb.
            return tuple(usb_libusb.scan())
        except usb_libusb.LibusbUnavailable:
            return ()

    def scanner_drivers(self, bus: tuple[UsbDevice, ...]) -> dict[str, str]:
        """nut-scanner's view, re-run only when the set of VID:PIDs on the bus changed
        (cached in the state dir, so one-shot commands do not re-run it either)."""
        binary = self.settings.binaries.nut_scanner
        key = sorted({d.vidpid for d in bus})
        if binary is None or not key:
            return {}
        cache_path = self.settings.agent_dir / "nut-scanner.json"
        try:
            cached = json.loads(cache_path.read_text(encoding="utf-8"))
            if cached.get("bus") == key and isinstance(cached.get("drivers"), dict):
                return {str(k): str(v) for k, v in cached["drivers"].items()}
        except (OSError, ValueError, AttributeError):
            pass
        try:
            found = nut_scanner.run(binary, SCANNER_TIMEOUT, self.settings.nut_env())
        except (subprocess.TimeoutExpired, OSError) as exc:
            logfmt.warning("nut-scanner.failed", error=str(exc))
            return {}
        logfmt.info("nut-scanner.ran", devices=len(found))
        try:
            self.settings.agent_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(cache_path, json.dumps({"bus": key, "drivers": found}), mode=0o644)
        except OSError as exc:
            logfmt.debug("nut-scanner.cache", error=str(exc))
        return found

    def observe_actual(self, decision: Decision | None = None) -> ActualState:
        drivers = set(self.table.usb_drivers) | {"dummy-ups"}
        drivers |= {r.driver for r in self.user.rules if r.driver}
        if decision is not None:
            drivers |= {s.driver for s in decision.config.sections}
        return actual.observe(
            self.settings.confpath, self.settings.statepath, daemons.upsmon_pidfile(self.settings), drivers
        )

    # --- decide --------------------------------------------------------------

    def decide(self, bus: tuple[UsbDevice, ...], persist: bool) -> Decision:
        upses = classify.classify(bus, self.table, self.scanner_drivers(bus), self.user.rules)
        book = store.load_names(self.settings.agent_dir)
        names, new_book = identity.assign(upses, book, self.settings.ups_name)
        secrets = store.load_secrets(
            self.settings.agent_dir, self.user, create=persist, files=self.settings.password_files
        )
        config = desired.build(
            upses,
            names,
            self.settings.ups_name,
            self.user,
            secrets,
            str(self.settings.statepath),
            self.settings.run_user,
        )
        wanted = plan.Desired(
            files=render_all(config),
            upsmon_enabled=config.upsmon_enabled,
            placeholders=frozenset(config.placeholders),
            upsmon_with=partial(render_upsmon_with, config),
        )
        return Decision(tuple(bus), tuple(upses), names, new_book, config, wanted, secrets)

    def plan(self, decision: Decision, actual_state: ActualState, restart: frozenset[str] = frozenset()) -> Plan:
        return plan.make_plan(decision.desired, actual_state, restart)

    def remember(self, decision: Decision) -> None:
        store.save_names(self.settings.agent_dir, decision.book)
