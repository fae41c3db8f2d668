"""One host's data, validated (fleet/data.py makes it; fleet/render.py and the steps read it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# The user the Pi's own upsmon (a secondary of the container's upsd) logs in as.
HOST_USER = "pi-host"
HOST_SECRET = "nut_host_password"  # its Docker secret: /run/secrets/<this> in the container
# The agent's outputs' secrets (reconcile/settings.py reads /run/secrets/<name>): they hold
# tokens and passwords, so they travel as Docker secrets, never in the env file.
NOTIFY_SECRET = "notify_urls"
MQTT_SECRET = "mqtt_url"
_HOST_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# Where a Pi publishes /metrics without metrics_listen: the Pi itself only. Why not the
# LAN, as upsd: /metrics needs no login, and says which UPS feeds what, and how full it is.
METRICS_LOOPBACK = "127.0.0.1"


def host_name(inventory_name: str) -> str:
    """The agent's HOST_NAME for an inventory host: what its notifications and MQTT topics
    call the Pi (else the container's ID). The agent takes [A-Za-z0-9._-], a letter or
    digit first, at most 63: anything else becomes "-" ("@local" -> "local")."""
    text = _HOST_NAME.sub("-", inventory_name).lstrip("._-")[:63]
    return text or "pi"


def client_secret(user: str) -> str:
    """The Docker secret of a NUT client host's user on the Pi: nut_<user>, _ for the rest."""
    return "nut_" + "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in user)


# The agent's [[shutdown.secondary]] `from` for the Pi's own upsmon: the container's own host.
FROM_HOST = "host"


@dataclass(frozen=True)
class Secondary:
    """A network upsmon the Pi's agent expects logged in ([[shutdown.secondary]] in its
    config.toml): `name` for messages, `ups` the UPS it watches, `origin` where it logs in
    from (FROM_HOST, its IP addresses, or None: any address but ours), `halt_seconds` how
    long that host takes to halt (the UPS's off-delay must cover it); `own`: the Pi's own
    upsmon (else a nut_clients host's)."""

    name: str
    ups: str
    origin: str | tuple[str, ...] | None
    halt_seconds: int = 60
    own: bool = False


@dataclass(frozen=True)
class HostConfig:
    """One host's data, validated."""

    host: str
    ups_name: str
    scan_interval: str  # as the env file says it (the agent's own parser accepted it)
    settle_time: str
    tz: str
    debug: bool
    simulate: bool
    simulate_cycle: str
    nut_port: int
    nut_listen: str
    image: str
    image_source: str
    install_docker: bool
    project_dir: str
    monuser_password: str | None = field(repr=False)
    admin_password: str | None = field(repr=False)
    devices: tuple[dict[str, Any], ...]
    host_shutdown: bool = True
    host_shutdown_cmd: str = "/sbin/shutdown -h +0"
    host_password: str | None = field(default=None, repr=False)
    ups_off_delay: int = 120
    fsd_clear_after: int = 300
    clients: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (user, password): nut_clients hosts
    # The UPSes that power the Pi (fleet/hostups.py): its own upsmon's MONITOR lines.
    host_ups: tuple[str, ...] = ("my-ups",)
    host_minsupplies: int = 1
    host_halt_seconds: int = 60
    client_secondaries: tuple[Secondary, ...] = ()  # its nut_clients hosts' logins
    nut_source: str = "tarball"
    synology_compat: bool = False
    nut_maxconn: int | None = None  # upsd's MAXCONN; None: the agent's default (1024)
    gate_timeout: int = 120
    metrics_port: int | None = None
    metrics_listen: str | None = None  # where metrics_port is published (None: METRICS_LOOPBACK)
    notify_urls: tuple[str, ...] = field(default=(), repr=False)  # Apprise URLs: they hold tokens
    notify_events: str | None = None
    mqtt_url: str | None = field(default=None, repr=False)  # may hold the broker's password
    uevents: bool | None = None  # None: the image's default (on)
    rescan_interval: str | None = None
    settle_min: str | None = None

    @property
    def secrets(self) -> dict[str, str]:
        """Docker secrets file name -> content (only the passwords given)."""
        out = {}
        if self.monuser_password is not None:
            out["nut_monuser_password"] = self.monuser_password
        if self.admin_password is not None:
            out["nut_admin_password"] = self.admin_password
        if self.host_shutdown and self.host_password is not None:
            out[HOST_SECRET] = self.host_password
        for user, password in self.clients:
            out[client_secret(user)] = password
        if self.notify_urls:
            out[NOTIFY_SECRET] = "".join(f"{url}\n" for url in self.notify_urls)  # one URL a line
        if self.mqtt_url is not None:
            out[MQTT_SECRET] = self.mqtt_url + "\n"
        return out

    @property
    def secondaries(self) -> tuple[Secondary, ...]:
        """Every network upsmon the agent expects logged in: the Pi's own (host_shutdown),
        one per UPS that powers it, then its nut_clients hosts'."""
        own = tuple(Secondary(self.host, ups, self.host_origin, self.host_halt_seconds, True) for ups in self.host_ups)
        return (own if self.host_shutdown else ()) + self.client_secondaries

    @property
    def host_origin(self) -> str | tuple[str, ...]:
        """Where the Pi's own upsmon arrives from, as the container's upsd sees it. Dialling
        the loopback, it comes through Docker's proxy: from the container's gateway (the
        agent's "host"). Dialling the one LAN address nut_listen publishes the port on, it is
        Docker's DNAT of a local connection, which keeps its source: that address itself."""
        if self.nut_listen in ("0.0.0.0", "::", "127.0.0.1", "::1"):
            return FROM_HOST
        return (self.nut_listen,)

    @property
    def monitor_address(self) -> str:
        """Where the Pi's own upsmon reaches the container's upsd: the Pi's loopback when
        nut_listen is a wildcard, else that one address (the port is published there only:
        the loopback would not answer). IPv6 in brackets, as MONITOR wants it."""
        if self.nut_listen in ("0.0.0.0", "::"):
            return "127.0.0.1"
        return f"[{self.nut_listen}]" if ":" in self.nut_listen else self.nut_listen

    @property
    def metrics_address(self) -> str:
        """The Pi's address metrics_port is published on (compose.yaml's ports)."""
        return self.metrics_listen or METRICS_LOOPBACK

    @property
    def outputs(self) -> bool:
        """Whether an output that names the Pi is on (notifications, MQTT, /metrics)."""
        return bool(self.notify_urls) or self.mqtt_url is not None or self.metrics_port is not None

    @property
    def env(self) -> dict[str, str]:
        """The container's environment (no secret ever: those are files)."""
        return {
            "UPS_NAME": self.ups_name,
            "SCAN_INTERVAL": self.scan_interval,
            "SETTLE_TIME": self.settle_time,
            "TZ": self.tz,
            "DEBUG": "1" if self.debug else "0",
            "SIMULATE": "1" if self.simulate else "0",
            "SIMULATE_CYCLE": self.simulate_cycle,
            # Only when asked for: the env file of a Pi without metrics stays as it was. Every
            # address inside the container, so that Docker's published port reaches it: which
            # of the Pi's addresses serve it is compose.yaml's (metrics_address).
            **({"METRICS_LISTEN": f"0.0.0.0:{self.metrics_port}"} if self.metrics_port else {}),
            # The same for these: a Pi without outputs keeps its env file byte for byte (no
            # recreate on upgrade). HOST_NAME: messages name the Pi, not the container's ID.
            **({"HOST_NAME": host_name(self.host)} if self.outputs else {}),
            **({"NOTIFY_EVENTS": self.notify_events} if self.notify_events is not None else {}),
            # And for the wake-ups: only what the host's data sets.
            **({"UEVENTS": "1" if self.uevents else "0"} if self.uevents is not None else {}),
            **({"RESCAN_INTERVAL": self.rescan_interval} if self.rescan_interval is not None else {}),
            **({"SETTLE_MIN": self.settle_min} if self.settle_min is not None else {}),
        }
