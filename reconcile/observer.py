"""The Observer: everything one pass reads, as one frozen Observation (reads only).

It holds the read caches a long-running agent keeps from tick to tick, so that a tick
with nothing new costs little: each is keyed on what tells a change (inode, mtime,
size; the set of VID:PIDs on the bus), never on time.
"""

from __future__ import annotations

import functools
import subprocess
import time
from dataclasses import dataclass, field

from reconcile import logfmt, store
from reconcile.decide import forced
from reconcile.decide.decision import Bus, Observation
from reconcile.decide.identity import NameBook
from reconcile.model import FileState, Ledger, Served
from reconcile.nutsyntax import NutSyntaxError, section_drivers
from reconcile.observe import (
    actual,
    driver_table,
    nut_scanner,
    processes,
    routes,
    running,
    upsd_client,
    usb_libusb,
    usb_sysfs,
)
from reconcile.settings import Settings
from reconcile.userconfig import UserConfig, reachable

SCANNER_TIMEOUT = 10.0


EMPTY_TRIES = 3  # passes an empty LIST CMD is asked again before it counts


@dataclass
class Observer:
    settings: Settings
    user: UserConfig
    table: driver_table.DriverTable
    store: store.Store
    seen: usb_sysfs.Seen = field(default_factory=dict)  # sysfs reads by device dir
    contents: actual.Contents = field(default_factory=dict)  # NUT's files
    session: upsd_client.Session | None = None  # one connection to upsd, kept open
    scanner_memo: tuple[tuple[str, ...], dict[str, str]] | None = None
    commands_memo: dict[tuple[str, int | None], tuple[frozenset[str], int]] = field(default_factory=dict)
    ask_commands: bool = True  # False: no LIST CMD (a `health` check needs none)
    alive: processes.Pidfds = field(default_factory=processes.Pidfds)  # confirmed processes, by pidfd

    @property
    def listen(self) -> tuple[str, int]:
        host, port = self.user.listen[0]
        return reachable(host), port

    def password_files(self) -> dict[str, str]:
        """Raises store.StoreError for a file that cannot be used (bad input)."""
        return {role: store.read_password_file(role, path) for role, path in self.settings.password_files}

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

    def running(self, ledger: Ledger, files: dict[str, FileState], scanner: dict[str, str]) -> running.Facts:
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
        binaries = {name: path for name, path in (("upsd", s.binaries.upsd), ("upsmon", s.binaries.upsmon)) if path}
        if self.session is None:
            self.session = upsd_client.Session(*self.listen)
        at = self.listen
        return running.gather(
            s.statepath, marker, ledger, drivers, at, session=self.session, binaries=binaries, alive=self.alive
        )

    def commands(self, served: dict[str, Served] | None, ledger: Ledger) -> dict[str, frozenset[str]]:
        """The instant commands each UPS with fresh data offers (upsd's LIST CMD). Asked
        once per driver process: what a driver supports does not change while it runs.
        Why an empty answer is asked again (EMPTY_TRIES passes) before it counts: a driver
        may register its commands just after its data (dummy-ups does), so the first
        answer can be empty for a driver that has some."""
        out: dict[str, frozenset[str]] = {}
        for name, state in (served or {}).items():
            if state.state != "ok" or self.session is None or not self.ask_commands:
                continue
            owned = ledger.get(f"driver:{name}")
            key = (name, owned.pid if owned else None)
            found, tries = self.commands_memo.get(key, (frozenset(), 0))
            if not found and tries < EMPTY_TRIES:
                answer = self.session.ask(functools.partial(upsd_client.commands, ups=name))
                if answer is None:
                    continue
                self.commands_memo = {k: v for k, v in self.commands_memo.items() if k[0] != name}
                found, tries = answer, tries + 1
                self.commands_memo[key] = (found, tries)
            if found or tries >= EMPTY_TRIES:
                out[name] = found
        return out

    def observe(self, bus: Bus, may_write: bool) -> Observation:
        """One pass's reads. `may_write`: a corrupt state file is set aside (else only
        read as empty)."""
        st = self.store
        st.set_aside = may_write
        scanner, ran = self.scanner_drivers(bus)
        ledger = st.load(store.PROCS) or {}
        files = actual.read_files(self.settings.confpath, self.contents)
        facts = self.running(ledger, files, scanner)
        logins = self.logins_of(facts.served)
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
            facts=facts,
            boot_wall=processes.boot_wall(),
            today=int(time.time() // 86400),
            # upsmon's POWERDOWNFLAG (upsmon.conf): written when, as primary, it ran SHUTDOWNCMD.
            shutdown_ran=(self.settings.statepath / forced.POWERDOWNFLAG).exists(),
            commands=self.commands(facts.served, ledger),
            logins=logins,
            # Where this container's own host arrives from (decide/health.py): read only
            # when the logins are, the only reader.
            gateways=routes.gateways() if logins is not None else (),
        )

    def logins_of(self, served: dict[str, Served] | None) -> dict[str, tuple[str, ...]] | None:
        """upsd's LIST CLIENT for every UPS it serves (the address of each login), asked
        only when a decision reads it: network secondaries are expected ([shutdown]), or a
        UPS is on battery or in FSD (whether a host is really halting decides the power
        cycle). None otherwise, or when upsd does not answer. Why not at every pass: one
        request per UPS per pass is idle CPU that a Pi with no secondaries never needs.
        The power-cycle gate (decide/forced.remember_logins) keeps the secondaries of the
        last pass before FSD that read them: with secondaries configured that is a pass
        on line too (a UPS may go from OL straight to FSD between two passes); with none
        configured, only a pass on battery is remembered."""
        if not served or self.session is None:
            return None
        wanted = bool(self.user.shutdown_secondaries) or any(s.flags & {"OB", "FSD"} for s in served.values())
        if not wanted:
            return None
        return self.session.ask(functools.partial(upsd_client.all_logins, upses=tuple(sorted(served))))

    def close(self) -> None:
        self.alive.close()
        if self.session is not None:
            self.session.close()
            self.session = None
