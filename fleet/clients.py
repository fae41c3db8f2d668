"""Other machines in the inventory: group `nut_clients` (a NAS, a Proxmox node, a desktop:
any Debian-family host). Each halts on its UPS's FSD or low battery, as a secondary of the
upsd on the Pi that UPS is plugged into, optionally earlier: `shutdown_after` seconds on
battery (NUT's upssched timer), so a NAS can go down after 5 minutes while the Pi waits for LB.

Host data of a client (every key but ups_server has a default):

  ups_server          the inventory name of the Pi whose UPS feeds it (required)
  ups_server_address  where this host reaches that Pi's upsd (default: that Pi's
                      ssh_hostname, else its inventory name)
  ups                 the UPS name there, or a list of them when several feed this host
                      (default: that Pi's host_ups, fleet/hostups.py)
  host_minsupplies    with several: how many must feed it (NUT's MINSUPPLIES; default all)
  host_shutdown_cmd   what halts this host (default /sbin/shutdown -h +0)
  shutdown_after      seconds on battery before it halts (default: none, only FSD or LB)
  halt_seconds        how long it takes to halt (default 60): the Pi's ups_off_delay must be
                      at least this + 30 s, or the UPS cuts its power mid-halt
  nut_address         its IP address(es) as the Pi's upsd sees them (default: none): the
                      Pi's agent then counts only a login from there as this host's

The Pi gets, for each client pointing at it, an upsd user `client-<host>` (upsmon
secondary) whose password is derived like the Pi's own (fleet/keys.py): the client's
upsmon.conf and the Pi's Docker secret hold the same one, and no output shows it. Two
clients of one Pi whose names give the same user (or the same secret's name) fail, the
Pi and those clients alike, naming both, before anything changes (`unique`).

Bad data never changes another host: a client with bad data fails its Pi too (`of_pi`: the
Pi's files would be made without its user), and a client fails when the Pi data its own
files are made of (address, port, UPS names) is bad.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fleet import hostups, keys
from fleet.config import Secondary, client_secret
from reconcile.nutsyntax import NutSyntaxError, encode, validate_name, validate_user
from reconcile.userconfig import HALT_MARGIN as AGENT_HALT_MARGIN
from reconcile.userconfig import MAX_HALT_SECONDS as MAX_HALT
from reconcile.userconfig import MIN_HALT_SECONDS as MIN_HALT

CLIENT_GROUP = "nut_clients"
CLIENT_DEFAULTS: dict[str, Any] = {
    "ups_server": None,
    "ups_server_address": None,
    "ups": None,
    "host_shutdown_cmd": "/sbin/shutdown -h +0",
    "shutdown_after": None,
    "halt_seconds": 60,
    "nut_address": None,
    "host_minsupplies": None,
}
# The Pi's data a client's files are made of, with fleet/data.py's defaults (a unit test
# holds them equal): another host's data has no deploy defaults in pyinfra.
SERVER_DEFAULTS: dict[str, Any] = {
    "ups_name": "my-ups",
    "nut_port": 3493,
    "ups_off_delay": 120,
    "devices": [],
    "host_ups": None,
}
# Seconds a host is given to halt after FSD before the UPS may cut it (NUT's HOSTSYNC,
# FINALDELAY and the system's own shutdown): ups_off_delay must exceed the slowest by this.
HALT_MARGIN = AGENT_HALT_MARGIN  # the agent's rule: ups_off_delay >= the slowest halt + this


def halt_seconds(value: Any) -> int:
    """A host's halt_seconds, in the agent's range ([[shutdown.secondary]] halt_seconds)."""
    if not isinstance(value, int) or isinstance(value, bool) or not MIN_HALT <= value <= MAX_HALT:
        raise ValueError(f"{value!r} is not a whole number of seconds from {MIN_HALT} to {MAX_HALT}")
    return value


_ADDRESS = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}", re.ASCII)


class ClientError(ValueError):
    def __init__(self, host: str, key: str, message: str) -> None:
        super().__init__(f"host {host}: data {key}: {message}")
        self.host, self.key, self.detail = host, key, message


class ClashError(ValueError):
    """Two nut_clients hosts of one Pi would be one upsd user (or one Docker secret) there."""


@dataclass(frozen=True)
class Member:
    """A host of group nut_clients, as the inventory has it: `get(key)` its host data (None
    when not given); `server_known`: its ups_server names a Pi of the inventory."""

    name: str
    get: Callable[[str], Any]
    server_known: bool = True

    @property
    def ups_server(self) -> Any:
        return self.get("ups_server")


def member(entry: Member | tuple[str, Any]) -> Member:
    """A Member, or (name, ups_server): a client with no other data (the tests' shorthand)."""
    if isinstance(entry, Member):
        return entry
    name, server = entry
    return Member(name, {"ups_server": server}.get)


def members(inventory: Any) -> list[Member]:
    """The nut_clients hosts of a pyinfra Inventory."""
    out = []
    for client in inventory.get_group(CLIENT_GROUP, []):
        name = client.data.get("ups_server")
        server = inventory.get_host(name, None) if isinstance(name, str) else None
        known = server is not None and CLIENT_GROUP not in server.groups
        out.append(Member(client.name, client.data.get, known))
    return out


@dataclass(frozen=True)
class ClientConfig:
    host: str
    ups_server: str
    address: str
    port: int
    upses: tuple[str, ...]  # the UPSes on that Pi that feed this host: one MONITOR line each
    user: str
    password: str = field(repr=False)
    shutdown_cmd: str = "/sbin/shutdown -h +0"
    shutdown_after: int | None = None
    minsupplies: int = 1
    halt_seconds: int = 60
    nut_address: tuple[str, ...] = ()

    @property
    def targets(self) -> tuple[str, ...]:
        """`ups@host:port` for each of upsmon.conf's MONITOR lines (IPv6 in brackets)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return tuple(f"{ups}@{host}:{self.port}" for ups in self.upses)

    @property
    def target(self) -> str:
        return ", ".join(self.targets)

    @property
    def secondaries(self) -> tuple[Secondary, ...]:
        """What its Pi's agent expects logged in for it: one login per UPS it watches."""
        return tuple(Secondary(self.host, ups, self.nut_address or None, self.halt_seconds) for ups in self.upses)


def client_user(host: str) -> str:
    """The upsd user of a client host: `client-<host>`, cut to NUT's 41 characters."""
    word = re.sub(r"[^a-z0-9_.-]+", "-", host.lower()).strip("-.") or "host"
    return validate_user(f"client-{word}"[:41].rstrip("-."), "user")


def unique(pi: str, clients: Iterable[tuple[str, Any]], involving: str | None = None) -> None:
    """Raises ClashError, naming both hosts, when two clients of `pi` (clients: (host name,
    its ups_server)) would log in to its upsd as one user (client_user folds case, makes
    "-" of other characters and cuts at 41: NAS and nas, nas+1 and nas-1), or would have
    one Docker secret (config.client_secret makes "_" of "." and "-": nas.lan and nas-lan).
    `involving`: only a clash of that host counts (a client fails for its own clash only).
    Why an error and not a suffix: a name that depends on the other hosts would change,
    with its password, when one of them is added or removed."""
    names = sorted({name for name, server in clients if server == pi})
    for what, key_of in (("upsd user", client_user), ("Docker secret", lambda n: client_secret(client_user(n)))):
        taken: dict[str, str] = {}
        for name in names:
            key = key_of(name)
            other = taken.setdefault(key, name)
            if other != name and involving in (None, other, name):
                raise ClashError(
                    f"nut_clients hosts {other!r} and {name!r} would both have the {what} {key!r} on {pi} "
                    "(case folded, characters other than letters, digits and _ . - made -, cut at 41; "
                    "a secret's name has _ for . and -): rename one in the inventory"
                )


def load_client(
    host: str,
    raw: Callable[[str], Any],
    server: Callable[[str, Any], Any] | None,
    members: Iterable[tuple[str, Any]] = (),
    off_delay_checked: bool = True,
) -> ClientConfig:
    """A client's data, validated (a key `raw` gives None for has its default).
    `server(key, default)`: the named Pi's host data, or None when ups_server names no
    host of the inventory. `members`: (name, ups_server) of every nut_clients host, for
    `unique`. `off_delay_checked`: halt_seconds against the Pi's ups_off_delay (the Pi's
    own validation checks that itself, naming its key)."""

    def get(key: str) -> Any:
        value = raw(key)
        return CLIENT_DEFAULTS[key] if value is None else value

    name = get("ups_server")
    if not isinstance(name, str) or not name:
        raise ClientError(host, "ups_server", "required: the inventory name of the Pi whose UPS feeds this host")
    if server is None:
        raise ClientError(host, "ups_server", f"{name!r} is not a host of this inventory (outside group nut_clients)")
    pi = server

    def of_pi(key: str) -> Any:
        value = pi(key, SERVER_DEFAULTS[key])
        return SERVER_DEFAULTS[key] if value is None else value

    address = get("ups_server_address") or server("ssh_hostname", None) or name
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise ClientError(host, "ups_server_address", f"{address!r} is not a host name or IP address")
    # What this host's files take from its Pi's data: bad there, nothing changes here either.
    port = of_pi("nut_port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ClientError(host, "ups_server", f"{name}'s data nut_port: {port!r} is not a port: fix {name}'s data")
    try:
        if raw("ups") is None:
            upses, _ = hostups.resolve(of_pi("ups_name"), of_pi("devices"), of_pi("host_ups"), None)
        else:
            upses = hostups.names(get("ups"), "ups")
            hostups.served(upses, of_pi("ups_name"), hostups.rules_of(of_pi("devices")), "ups")
    except hostups.SupplyError as exc:
        if raw("ups") is not None:
            raise ClientError(host, "ups", str(exc)) from None
        raise ClientError(
            host, "ups", f"none given, and {name}'s data {exc.key} (the UPS this host watches by default): {exc}"
        ) from None
    try:
        validate_name(upses[0], "ups")  # a bad ups_name of the Pi's
        cmd = get("host_shutdown_cmd")
        encode(cmd if isinstance(cmd, str) and cmd.strip() else "", "host_shutdown_cmd")
    except NutSyntaxError as exc:
        raise ClientError(host, "ups" if "ups=" in str(exc) else "host_shutdown_cmd", str(exc)) from None
    if not isinstance(cmd, str) or not cmd.strip():
        raise ClientError(host, "host_shutdown_cmd", "must be a non-empty command line")
    try:
        minsupplies = hostups.count(raw("host_minsupplies"), len(upses), "host_minsupplies")
    except hostups.SupplyError as exc:
        raise ClientError(host, exc.key, str(exc)) from None
    after = get("shutdown_after")
    if after is not None and (not isinstance(after, int) or isinstance(after, bool) or not 1 <= after <= 86400):
        raise ClientError(host, "shutdown_after", f"{after!r} is not a whole number of seconds from 1 to 86400")
    halt = get("halt_seconds")
    try:
        halt = halt_seconds(halt)
    except ValueError as exc:
        raise ClientError(host, "halt_seconds", str(exc)) from None
    off_delay = of_pi("ups_off_delay")
    if off_delay_checked and isinstance(off_delay, int) and 0 < off_delay < halt + HALT_MARGIN:
        raise ClientError(
            host,
            "halt_seconds",
            f"{halt} s + {HALT_MARGIN} s is more than {name}'s ups_off_delay ({off_delay} s): the UPS would cut "
            f"this host's power before it has halted; give {name} ups_off_delay = {halt + HALT_MARGIN} or more, "
            "or this host a smaller halt_seconds",
        )
    nut_address = addresses(host, get("nut_address"))
    try:
        unique(name, [*members, (host, name)], involving=host)
    except ClashError as exc:
        raise ClientError(host, "ups_server", str(exc)) from None
    user = client_user(host)
    try:
        password = keys.password(name, user)
    except keys.FleetKeyError as exc:
        raise ClientError(host, "ups_server", str(exc)) from None
    return ClientConfig(
        host, name, address, int(port), upses, user, password, cmd, after, minsupplies, halt, nut_address
    )


def addresses(host: str, value: Any) -> tuple[str, ...]:
    """nut_address: an IP address or a list of them (as the Pi's upsd sees this host)."""
    if value is None:
        return ()
    listed = [value] if isinstance(value, str) else value
    if not isinstance(listed, list | tuple) or not listed:
        raise ClientError(host, "nut_address", f"{value!r} is not an IP address or a list of them")
    out = []
    for item in listed:
        try:
            out.append(str(ipaddress.ip_address(item if isinstance(item, str) else "")))
        except ValueError:
            raise ClientError(host, "nut_address", f"{item!r} is not an IP address (e.g. 192.168.1.20)") from None
    return tuple(dict.fromkeys(out))


def of_pi(
    pi: str,
    server: Callable[[str, Any], Any],
    hosts: Iterable[Member | tuple[str, Any]],
    live_users: Callable[[], Iterable[str]] | None = None,
) -> tuple[ClientConfig, ...]:
    """The nut_clients hosts of `pi`, each validated as its own deploy validates it, so that
    bad data for any of them stops the Pi as well (its files would be made without that
    host's user, which then can no longer log in). Raises ClashError or ClientError.
    `server`: the Pi's own data (key, default). A client whose ups_server names no Pi of
    the inventory (a typo) could be any Pi's: `live_users()` (the users in the config.toml
    that runs on `pi`) tells whether it is this one's; called only for such a client."""
    found = [member(m) for m in hosts]
    pairs = [(m.name, m.ups_server) for m in found]
    unique(pi, pairs)
    out = [
        load_client(m.name, m.get, server, pairs, off_delay_checked=False)
        for m in found
        if m.server_known and m.ups_server == pi
    ]
    dangling = [m for m in found if not m.server_known]
    if dangling and live_users is not None:
        live = set(live_users())
        for m in dangling:
            if client_user(m.name) in live:
                try:
                    load_client(m.name, m.get, None, pairs)
                except ClientError as exc:
                    why = f"{exc.detail}; {pi} serves it now (its upsd has the user {client_user(m.name)})"
                    raise ClientError(exc.host, exc.key, why) from None
    return tuple(sorted(out, key=lambda c: c.user))
