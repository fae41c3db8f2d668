"""Host data for the rollout: every key has a default here (DEFAULTS, given to pyinfra as
the deploy's data_defaults), so any inventory works, not only the example `inventory`, and
group_data/ only overrides. Each host's data is validated before anything on it changes.

The agent's own settings are validated by the agent's own code (reconcile.settings for
the env file, reconcile.userconfig for its TOML), so a value the fleet accepts is one the
agent on the Pi accepts too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fleet import clients as clients_mod
from fleet import hostups, keys, render
from fleet.config import HOST_USER, HostConfig
from reconcile import settings
from reconcile.nutsyntax import NutSyntaxError, encode, validate_password
from reconcile.userconfig import FSD_CLEAR_MIN, SYNOLOGY_UPS, ConfigError
from reconcile.userconfig import parse as parse_agent_config

DEFAULTS: dict[str, Any] = {
    "ups_name": "my-ups",
    "scan_interval": 2,
    "settle_time": 2,
    "tz": "UTC",
    "debug": False,
    "simulate": False,
    "simulate_cycle": 120,
    "nut_port": 3493,
    "nut_listen": "0.0.0.0",
    "nut_maxconn": None,  # upsd's MAXCONN ([upsd] maxconn); None: the agent's 1024, nothing written
    "image": "ups-nut-smart:latest",
    "image_source": "load",
    "install_docker": True,
    "project_dir": "/opt/ups-nut-smart",
    "monuser_password": None,
    "admin_password": None,
    "devices": [],
    # The power-failure chain (docs/fleet.md): the Pi's own upsmon, a secondary of the
    # container's upsd, halts the Pi on FSD; the UPS cuts its load ups_off_delay later.
    "host_shutdown": True,
    "host_shutdown_cmd": "/sbin/shutdown -h +0",
    "host_password": None,  # None: derived from the controller's fleet key (fleet/keys.py)
    # The UPS (or list of UPSes) that powers the Pi: its upsmon's MONITOR lines; None: the
    # one powers_host rule's pinned name, else ups_name (fleet/hostups.py).
    "host_ups": None,
    "host_minsupplies": None,  # with several host_ups: NUT's MINSUPPLIES (None: all of them)
    "host_halt_seconds": 60,  # how long the Pi takes to halt: ups_off_delay must cover it + 30 s
    "ups_off_delay": 120,
    "fsd_clear_after": 300,  # seconds on line without LB before the agent calls FSD off
    # Synology DSM's fixed client (UPS `ups`, monuser/secret): opt-in, see docs/fleet.md.
    "synology_compat": False,
    # Seconds the health gate waits for a healthy container (the image's start period is 30).
    "gate_timeout": 120,
    "metrics_port": None,  # a port: Prometheus /metrics there (METRICS_LISTEN), published on metrics_listen
    # Where the Pi publishes metrics_port: None is 127.0.0.1, the Pi itself only (config.py);
    # "0.0.0.0" (every address) or one of the Pi's addresses opens it to the LAN.
    "metrics_listen": None,
    # The agent's outputs, all off by default. The URLs are secrets (Docker secrets files).
    "notify_urls": None,  # Apprise URLs (a list, or one string): notifications (NOTIFY_URLS)
    "notify_events": None,  # which ones (NOTIFY_EVENTS), e.g. "default,-held"
    "mqtt_url": None,  # mqtt[s]://[user[:password]@]broker[:port]: MQTT with Home Assistant discovery
    # Wake-ups (README's settings): None keeps the image's defaults (uevents on, 4 s, 0.5 s).
    "uevents": None,
    "rescan_interval": None,
    "settle_min": None,
}
IMAGE_SOURCES = ("load", "build", "pull")
PASSWORD_ENV = {"monuser_password": "NUT_MONUSER_PASSWORD", "admin_password": "NUT_ADMIN_PASSWORD"}
# With image_source = build: which NUT the image on the Pi is built with (the controller's
# NUT_SOURCE; the Dockerfile's own default, the 2.8.4 release tarball, unless it says debian).
NUT_SOURCES = ("tarball", "debian")

# A Docker image reference: [registry[:port]/]name[/name...][:tag][@sha256:digest]
_IMAGE = re.compile(
    r"(?:[a-zA-Z0-9.-]+(?::[0-9]{1,5})?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?",
    re.ASCII,
)
_PROJECT_DIR = re.compile(r"(/[A-Za-z0-9_.-]+)+", re.ASCII)


class DataError(ValueError):
    """Bad host data: names the host and the key."""

    def __init__(self, host: str, key: str, message: str) -> None:
        super().__init__(f"host {host}: data {key}: {message}")
        self.host = host
        self.key = key


# --- one validator per key: (value) -> the value HostConfig holds; ValueError says what is wrong


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError(f"a {type(value).__name__} is not a value")


def _agent_env(variable: str) -> Callable[[Any], str]:
    """A value of the agent's env file, checked by the agent's own parser (reconcile.settings)."""

    def check(value: Any) -> str:
        text = _text(value)
        try:
            settings.load({variable: text})
        except settings.SettingsError as exc:
            raise ValueError(str(exc).split(": ", 1)[-1]) from None
        return text

    return check


def _tz(value: Any) -> str:
    text = _agent_env("TZ")(value)
    if not text:
        raise ValueError("must not be empty (e.g. UTC or Europe/Berlin)")
    return text


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} must be true or false")
    return value


def _port(value: Any) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ValueError(f"{value!r} is not a port from 1 to 65535")
    return value


def _ip(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(value if isinstance(value, str) else ""))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address (e.g. 0.0.0.0 or 192.168.1.10)") from None


def _metrics_port(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and ":" in value:
        # "0.0.0.0:9199", as METRICS_LISTEN says it: the fleet keeps the address apart.
        raise ValueError(f"{value!r} is not a port: give the port alone, and the address as metrics_listen")
    return _port(value)


def _image(value: Any) -> str:
    if not isinstance(value, str) or not _IMAGE.fullmatch(value):
        raise ValueError(f"{value!r} is not a Docker image reference (e.g. ups-nut-smart:latest)")
    return value


def _image_source(value: Any) -> str:
    if value not in IMAGE_SOURCES:
        raise ValueError(f"{value!r} is not one of {', '.join(IMAGE_SOURCES)}")
    return str(value)


def _project_dir(value: Any) -> str:
    if not isinstance(value, str) or not _PROJECT_DIR.fullmatch(value) or "/." in value:
        raise ValueError(f"{value!r} is not an absolute path (letters, digits, _ . -)")
    return value


def _password(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return validate_password(value if isinstance(value, str) else "", "password")
    except NutSyntaxError as exc:
        # Never the password itself: only what is wrong with it.
        raise ValueError(str(exc).split(": ", 1)[-1]) from None


def _command(value: Any) -> str:
    """A shell command line upsmon runs (SHUTDOWNCMD): one printable line NUT can quote."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty command line, e.g. /sbin/shutdown -h +0")
    try:
        encode(value, "command")
    except NutSyntaxError as exc:
        raise ValueError(str(exc).split(": ", 1)[-1]) from None
    return value


def _seconds(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 3600:
        raise ValueError(f"{value!r} is not a whole number of seconds from 0 to 3600")
    return value


def _agent_toml_int(table: str, key: str) -> Callable[[Any], int]:
    """A whole number of the agent's config.toml table `table`, checked by the agent's own parser."""

    def check(value: Any) -> int:
        try:
            parse_agent_config({table: {key: value}})
        except ConfigError as exc:
            # "shutdown.fsd_clear_after must be ..." -> "must be ...": DataError names the key.
            raise ValueError("must " + str(exc).split(" must ", 1)[-1]) from None
        return int(value)

    return check


# The agent's rule (userconfig.FSD_CLEAR_MIN, why there). Checked here too, strictly: the
# agent only raises an older file's value (so an upgrade keeps NUT), the fleet refuses it.
def _fsd_clear_after(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value < FSD_CLEAR_MIN:
        raise ValueError(
            f"{value} is less than {FSD_CLEAR_MIN} s: FSD could be called off while the hosts are still "
            f"halting, before the UPS's power cycle (give {FSD_CLEAR_MIN} or more)"
        )
    return _agent_toml_int("shutdown", "fsd_clear_after")(value)


def _gate_timeout(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 30 <= value <= 1800:
        raise ValueError(f"{value!r} is not a whole number of seconds from 30 to 1800")
    return value


def _devices(value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(d, dict) for d in value):
        raise ValueError("must be a list of [[device]] tables (dicts)")
    return tuple(dict(d) for d in value)


# What the agent takes as an Apprise URL (reconcile/settings.py), less the comma: the agent
# splits NOTIFY_URLS at commas and white space, so a URL holding one would arrive as two.
_APPRISE_URL = re.compile(settings.URL_SCHEME + r"://[^\s,]+")
_NOT_SHOWN = "the URL is not shown: it may hold a token or password"


def _notify_urls(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    urls = [value] if isinstance(value, str) else value
    if not isinstance(urls, list | tuple) or not all(isinstance(url, str) for url in urls):
        raise ValueError("must be an Apprise URL (a string) or a list of them, e.g. ['ntfy://my-topic']")
    for index, url in enumerate(urls):
        if not _APPRISE_URL.fullmatch(url):
            # Never the URL itself (nor its start): the index only.
            raise ValueError(
                f"[{index}] is not an Apprise URL such as ntfy://topic or json://host/path "
                f"(scheme://..., no white space or comma; {_NOT_SHOWN})"
            )
    return tuple(urls)


def _notify_events(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f'a {type(value).__name__} is not a list of events (e.g. "default,-held")')
    # The agent takes commas and spaces alike; the env file, commas only.
    text = ",".join(re.split(r"[\s,]+", value.strip()))
    try:
        # Why the agent's own parser (a private one: reconcile.settings has no public name
        # for it yet): a choice the fleet accepts must be one the agent accepts at start.
        settings.notify_events({"NOTIFY_EVENTS": text})
    except settings.SettingsError as exc:
        raise ValueError(str(exc).split(": ", 1)[-1]) from None
    return text


def _mqtt_url(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be a broker URL such as mqtt://user:password@broker:1883 (a string; {_NOT_SHOWN})")
    try:
        settings.broker_url(value)  # the agent's own check (MQTT_URL)
    except ValueError as exc:
        raise ValueError(f"{exc} ({_NOT_SHOWN})") from None
    return value


KEYS: dict[str, Callable[[Any], Any]] = {
    "ups_name": _agent_env("UPS_NAME"),
    "scan_interval": _agent_env("SCAN_INTERVAL"),
    "settle_time": _agent_env("SETTLE_TIME"),
    "tz": _tz,
    "debug": _bool,
    "simulate": _bool,
    "simulate_cycle": _agent_env("SIMULATE_CYCLE"),
    "nut_port": _port,
    "nut_listen": _ip,
    "nut_maxconn": lambda value: None if value is None else _agent_toml_int("upsd", "maxconn")(value),
    "image": _image,
    "image_source": _image_source,
    "install_docker": _bool,
    "project_dir": _project_dir,
    "monuser_password": _password,
    "admin_password": _password,
    "devices": _devices,
    "host_shutdown": _bool,
    "host_shutdown_cmd": _command,
    "host_password": _password,
    "ups_off_delay": _seconds,
    "fsd_clear_after": _fsd_clear_after,
    # Checked with the devices they depend on (fleet/hostups.py), in load().
    "host_ups": lambda value: value,
    "host_minsupplies": lambda value: value,
    "host_halt_seconds": lambda value: clients_mod.halt_seconds(value),
    "synology_compat": _bool,
    "gate_timeout": _gate_timeout,
    "metrics_port": _metrics_port,
    "metrics_listen": lambda value: None if value is None else _ip(value),
    "notify_urls": _notify_urls,
    "notify_events": _notify_events,
    "mqtt_url": _mqtt_url,
    "uevents": lambda value: None if value is None else _bool(value),
    "rescan_interval": lambda value: None if value is None else _agent_env("RESCAN_INTERVAL")(value),
    "settle_min": lambda value: None if value is None else _agent_env("SETTLE_MIN")(value),
}
assert set(KEYS) == set(DEFAULTS), "every key has a default and a validator"


def load(
    host: str,
    get: Callable[[str], Any],
    environ: Mapping[str, str],
    clients: Iterable[clients_mod.Member | tuple[str, Any]] = (),
    live_users: Callable[[str], Iterable[str]] | None = None,
) -> HostConfig:
    """Validate one host's data, key by key (KEYS), then what depends on several keys.
    `get(key)` returns the host's value (or the default); `clients`: the inventory's
    nut_clients hosts (fleet/clients.py Member, or (name, ups_server)), whose bad data
    fails this host too when its files depend on it; `live_users(project_dir)`: the upsd
    users of the config.toml that runs on the host (asked only when a client's ups_server
    names no Pi). Raises DataError."""
    values: dict[str, Any] = {}
    for key, check in KEYS.items():
        raw = get(key)
        if key in PASSWORD_ENV and raw is None:
            raw = environ.get(PASSWORD_ENV[key]) or None  # the controller's environment
        try:
            values[key] = check(raw)
        except ValueError as exc:
            raise DataError(host, key, str(exc)) from None
    image, last = values["image"], values["image"].rsplit("/", 1)[-1]
    if values["image_source"] == "pull" and "@" not in image and (":" not in last or last.endswith(":latest")):
        # Why: a pull happens when the Pi does not have the tag yet, so a moving tag would
        # never be updated (and pulling it every run would recreate the container every run).
        message = f"{image!r}: with image_source = pull, give a version tag (e.g. ups-nut-smart:1.2.0) or a digest"
        raise DataError(host, "image", message)
    nut_source = environ.get("NUT_SOURCE") or "tarball"
    if nut_source not in NUT_SOURCES:
        raise DataError(host, "image_source", f"NUT_SOURCE={nut_source!r} is not one of {', '.join(NUT_SOURCES)}")
    if values["synology_compat"]:
        # Why not rename the UPS silently: dashboards and clients by hand know it by name.
        if values["ups_name"] != SYNOLOGY_UPS:
            message = (
                f"true, but ups_name is {values['ups_name']!r}: Synology DSM watches {SYNOLOGY_UPS!r}, "
                f"so set ups_name = {SYNOLOGY_UPS!r} too"
            )
            raise DataError(host, "synology_compat", message)
        if values["monuser_password"] is not None:
            message = (
                "true, so monuser's password is Synology's fixed one: "
                "give no monuser_password (nor NUT_MONUSER_PASSWORD)"
            )
            raise DataError(host, "synology_compat", message)
    if values["metrics_port"] is not None and values["metrics_port"] == values["nut_port"]:
        raise DataError(
            host, "metrics_port", f"{values['metrics_port']} is nut_port already: choose another (e.g. 9199)"
        )
    if values["metrics_listen"] is not None and values["metrics_port"] is None:
        message = f"{values['metrics_listen']!r} given, but no metrics_port: /metrics is off (give both)"
        raise DataError(host, "metrics_listen", message)
    try:
        values["host_ups"], values["host_minsupplies"] = hostups.resolve(
            values["ups_name"], values["devices"], values["host_ups"], values["host_minsupplies"]
        )
    except hostups.SupplyError as exc:
        raise DataError(host, exc.key, str(exc)) from None
    if values["host_shutdown"] and values["host_password"] is None:
        try:
            values["host_password"] = keys.password(host, HOST_USER)
        except keys.FleetKeyError as exc:
            raise DataError(host, "host_password", f"none given, and {exc}") from None

    def server(key: str, default: Any) -> Any:
        """This host's data as its nut_clients hosts read it (fleet/clients.py)."""
        try:
            value = get(key)
        except KeyError:  # a getter of DEFAULTS alone (the unit tests'): not an inventory key
            return default
        return default if value is None else value

    project_dir = values["project_dir"]
    try:
        mine = clients_mod.of_pi(host, server, clients, None if live_users is None else lambda: live_users(project_dir))
    except (keys.FleetKeyError, clients_mod.ClashError) as exc:
        raise DataError(host, "nut_clients", str(exc)) from None
    except clients_mod.ClientError as exc:
        # Why this host fails too: its files would be made without that host's user, and the
        # host that was protected a minute ago could no longer log in.
        raise DataError(
            host, "nut_clients", f"{exc} (nothing is changed on {host} either: its files hold that host's user)"
        ) from None
    secondaries = tuple(s for client in mine for s in client.secondaries)
    config = HostConfig(
        host=host,
        nut_source=nut_source,
        clients=tuple((c.user, c.password) for c in mine),
        client_secondaries=secondaries,
        **values,
    )
    off_delay = config.ups_off_delay
    slowest = max(config.secondaries, key=lambda s: s.halt_seconds, default=None)
    if off_delay and slowest is not None and off_delay < slowest.halt_seconds + clients_mod.HALT_MARGIN:
        # Why: the UPS counts ups_off_delay down from the power-cycle command, sent once the
        # hosts log out; a host still halting then loses power with its disks mounted.
        who, key = (
            ("this Pi", "host_halt_seconds") if slowest.own else (f"nut_clients host {slowest.name}", "halt_seconds")
        )
        raise DataError(
            host,
            "ups_off_delay",
            f"{off_delay} s is less than {who}'s {key} ({slowest.halt_seconds} s) + {clients_mod.HALT_MARGIN} s: "
            f"the UPS would cut {slowest.name}'s power before it has halted; give ups_off_delay = "
            f"{slowest.halt_seconds + clients_mod.HALT_MARGIN} or more, or a smaller {key}",
        )
    try:
        render.check_agent_config(config)
    except ValueError as exc:
        # Named by the agent's table: device[0]... is the devices key; anything else (a
        # [shutdown] value the agent refuses) by its own name.
        table = re.split(r"[.\[ :]", str(exc), maxsplit=1)[0]
        raise DataError(host, "devices" if table == "device" else table, str(exc)) from None
    return config
