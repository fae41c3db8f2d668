"""Other machines in the inventory: group `nut_clients` (a NAS, a Proxmox node, a desktop:
any Debian-family host). Each halts on its UPS's FSD or low battery, as a secondary of the
upsd on the Pi that UPS is plugged into, optionally earlier: `shutdown_after` seconds on
battery (NUT's upssched timer), so a NAS can go down after 5 minutes while the Pi waits for LB.

Host data of a client (every key but ups_server has a default):

  ups_server          the inventory name of the Pi whose UPS feeds it (required)
  ups_server_address  where this host reaches that Pi's upsd (default: that Pi's
                      ssh_hostname, else its inventory name)
  ups                 the UPS name there (default: that Pi's ups_name, else my-ups)
  host_shutdown_cmd   what halts this host (default /sbin/shutdown -h +0)
  shutdown_after      seconds on battery before it halts (default: none, only FSD or LB)

The Pi gets, for each client pointing at it, an upsd user `client-<host>` (upsmon
secondary) whose password is derived like the Pi's own (fleet/keys.py): the client's
upsmon.conf and the Pi's Docker secret hold the same one, and no output shows it. Two
clients of one Pi whose names give the same user (or the same secret's name) fail, the
Pi and those clients alike, naming both, before anything changes (`unique`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fleet import keys
from fleet.config import client_secret
from reconcile.nutsyntax import NutSyntaxError, encode, validate_name, validate_user

CLIENT_GROUP = "nut_clients"
CLIENT_DEFAULTS: dict[str, Any] = {
    "ups_server": None,
    "ups_server_address": None,
    "ups": None,
    "host_shutdown_cmd": "/sbin/shutdown -h +0",
    "shutdown_after": None,
}
_ADDRESS = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}", re.ASCII)


class ClientError(ValueError):
    def __init__(self, host: str, key: str, message: str) -> None:
        super().__init__(f"host {host}: data {key}: {message}")


class ClashError(ValueError):
    """Two nut_clients hosts of one Pi would be one upsd user (or one Docker secret) there."""


@dataclass(frozen=True)
class ClientConfig:
    host: str
    ups_server: str
    address: str
    port: int
    ups: str
    user: str
    password: str = field(repr=False)
    shutdown_cmd: str = "/sbin/shutdown -h +0"
    shutdown_after: int | None = None

    @property
    def target(self) -> str:
        """`ups@host:port` for upsmon.conf's MONITOR line (IPv6 in brackets)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.ups}@{host}:{self.port}"


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
) -> ClientConfig:
    """A client's data, validated (a key `raw` gives None for has its default).
    `server(key, default)`: the named Pi's host data, or None when ups_server names no
    host of the inventory. `members`: (name, ups_server) of every nut_clients host, for
    `unique`."""

    def get(key: str) -> Any:
        value = raw(key)
        return CLIENT_DEFAULTS[key] if value is None else value

    name = get("ups_server")
    if not isinstance(name, str) or not name:
        raise ClientError(host, "ups_server", "required: the inventory name of the Pi whose UPS feeds this host")
    if server is None:
        raise ClientError(host, "ups_server", f"{name!r} is not a host of this inventory")
    address = get("ups_server_address") or server("ssh_hostname", None) or name
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise ClientError(host, "ups_server_address", f"{address!r} is not a host name or IP address")
    ups = get("ups") or server("ups_name", "my-ups")
    port = server("nut_port", 3493)
    try:
        validate_name(str(ups), "ups")
        cmd = get("host_shutdown_cmd")
        encode(cmd if isinstance(cmd, str) and cmd.strip() else "", "host_shutdown_cmd")
    except NutSyntaxError as exc:
        raise ClientError(host, "ups" if "ups=" in str(exc) else "host_shutdown_cmd", str(exc)) from None
    if not isinstance(cmd, str) or not cmd.strip():
        raise ClientError(host, "host_shutdown_cmd", "must be a non-empty command line")
    after = get("shutdown_after")
    if after is not None and (not isinstance(after, int) or isinstance(after, bool) or not 1 <= after <= 86400):
        raise ClientError(host, "shutdown_after", f"{after!r} is not a whole number of seconds from 1 to 86400")
    try:
        unique(name, [*members, (host, name)], involving=host)
    except ClashError as exc:
        raise ClientError(host, "ups_server", str(exc)) from None
    user = client_user(host)
    try:
        password = keys.password(name, user)
    except keys.FleetKeyError as exc:
        raise ClientError(host, "ups_server", str(exc)) from None
    return ClientConfig(host, name, address, int(port), str(ups), user, password, cmd, after)


def users_for(pi: str, clients: Iterable[tuple[str, Any]]) -> tuple[tuple[str, str], ...]:
    """(user, password) for each client whose ups_server is `pi` (clients: (host name,
    its ups_server)), sorted: the Pi's upsd users and Docker secrets for them. Raises
    ClashError (`unique`)."""
    clients = list(clients)
    unique(pi, clients)
    return tuple(
        sorted((client_user(name), keys.password(pi, client_user(name))) for name, server in clients if server == pi)
    )
