"""Host data for the rollout: every key has a default here (DEFAULTS, given to pyinfra as
the deploy's data_defaults), so any inventory works, one outside inventory/ included, and
group_data/ only overrides. Each host's data is validated before anything on it changes.

The agent's own settings are validated by the agent's own code (reconcile.settings for
the env file, reconcile.userconfig for its TOML), so a value the fleet accepts is one the
agent on the Pi accepts too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fleet import render
from reconcile.nutsyntax import NutSyntaxError, validate_password

DEFAULTS: dict[str, Any] = {
    "ups_name": "my-ups",
    "scan_interval": 2,
    "settle_time": 2,
    "tz": "UTC",
    "debug": False,
    "simulate": False,
    "nut_port": 3493,
    "nut_listen": "0.0.0.0",
    "image": "ups-nut-smart:latest",
    "image_source": "load",
    "install_docker": True,
    "project_dir": "/opt/ups-nut-smart",
    "monuser_password": None,
    "admin_password": None,
    "devices": [],
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
    nut_port: int
    nut_listen: str
    image: str
    image_source: str
    install_docker: bool
    project_dir: str
    monuser_password: str | None = field(repr=False)
    admin_password: str | None = field(repr=False)
    devices: tuple[dict[str, Any], ...]
    nut_source: str = "tarball"

    @property
    def secrets(self) -> dict[str, str]:
        """Docker secrets file name -> content (only the passwords given)."""
        out = {}
        if self.monuser_password is not None:
            out["nut_monuser_password"] = self.monuser_password
        if self.admin_password is not None:
            out["nut_admin_password"] = self.admin_password
        return out

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
        }


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float | str):
        return str(value)
    raise TypeError(type(value).__name__)


def _bool(host: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise DataError(host, key, f"{value!r} must be true or false")
    return value


def load(host: str, get: Callable[[str], Any], environ: Mapping[str, str]) -> HostConfig:
    """Validate one host's data. `get(key)` returns the host's value (or the default)."""
    from reconcile import settings  # the agent's own rules for its env

    unknown_types = {}
    for key in ("scan_interval", "settle_time", "tz", "ups_name"):
        try:
            unknown_types[key] = _text(get(key))
        except TypeError as exc:
            raise DataError(host, key, f"a {exc} is not a value") from None
    env = {
        "UPS_NAME": unknown_types["ups_name"],
        "SCAN_INTERVAL": unknown_types["scan_interval"],
        "SETTLE_TIME": unknown_types["settle_time"],
        "TZ": unknown_types["tz"],
    }
    variable_key = {"UPS_NAME": "ups_name", "SCAN_INTERVAL": "scan_interval", "SETTLE_TIME": "settle_time", "TZ": "tz"}
    try:
        settings.load(env)
    except settings.SettingsError as exc:
        key = variable_key.get(exc.variable, exc.variable)
        raise DataError(host, key, str(exc).split(": ", 1)[-1]) from None
    if not env["TZ"]:
        raise DataError(host, "tz", "must not be empty (e.g. UTC or Europe/Berlin)")

    port = get("nut_port")
    if isinstance(port, str) and port.isascii() and port.isdigit():
        port = int(port)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise DataError(host, "nut_port", f"{port!r} is not a port from 1 to 65535")
    listen = get("nut_listen")
    try:
        listen = str(ipaddress.ip_address(listen if isinstance(listen, str) else ""))
    except ValueError:
        raise DataError(host, "nut_listen", f"{listen!r} is not an IP address (e.g. 0.0.0.0 or 192.168.1.10)") from None

    image = get("image")
    if not isinstance(image, str) or not _IMAGE.fullmatch(image):
        raise DataError(host, "image", f"{image!r} is not a Docker image reference (e.g. ups-nut-smart:latest)")
    source = get("image_source")
    if source not in IMAGE_SOURCES:
        raise DataError(host, "image_source", f"{source!r} is not one of {', '.join(IMAGE_SOURCES)}")
    last = image.rsplit("/", 1)[-1]
    if source == "pull" and "@" not in image and (":" not in last or last.endswith(":latest")):
        # Why: a pull happens when the Pi does not have the tag yet, so a moving tag would
        # never be updated (and pulling it every run would recreate the container every run).
        raise DataError(
            host,
            "image",
            f"{image!r}: with image_source = pull, give a version tag (e.g. ups-nut-smart:1.2.0) or a digest",
        )
    project_dir = get("project_dir")
    if not isinstance(project_dir, str) or not _PROJECT_DIR.fullmatch(project_dir) or "/." in project_dir:
        raise DataError(host, "project_dir", f"{project_dir!r} is not an absolute path (letters, digits, _ . -)")

    passwords: dict[str, str | None] = {}
    for key, variable in PASSWORD_ENV.items():
        value = get(key)
        if value is None:
            value = environ.get(variable) or None
        if value is not None:
            try:
                validate_password(value if isinstance(value, str) else "", key)
            except NutSyntaxError as exc:
                # Never the password itself: only what is wrong with it.
                raise DataError(host, key, str(exc).split(": ", 1)[-1]) from None
        passwords[key] = value

    nut_source = environ.get("NUT_SOURCE") or "tarball"
    if nut_source not in NUT_SOURCES:
        raise DataError(host, "image_source", f"NUT_SOURCE={nut_source!r} is not one of {', '.join(NUT_SOURCES)}")

    devices = get("devices")
    if not isinstance(devices, list | tuple) or not all(isinstance(d, dict) for d in devices):
        raise DataError(host, "devices", "must be a list of [[device]] tables (dicts)")

    config = HostConfig(
        host=host,
        ups_name=env["UPS_NAME"],
        scan_interval=env["SCAN_INTERVAL"],
        settle_time=env["SETTLE_TIME"],
        tz=env["TZ"],
        debug=_bool(host, "debug", get("debug")),
        simulate=_bool(host, "simulate", get("simulate")),
        nut_port=port,
        nut_listen=listen,
        image=image,
        image_source=source,
        install_docker=_bool(host, "install_docker", get("install_docker")),
        project_dir=project_dir,
        monuser_password=passwords["monuser_password"],
        admin_password=passwords["admin_password"],
        devices=tuple(dict(d) for d in devices),
        nut_source=nut_source,
    )
    try:
        render.check_agent_config(config)
    except ValueError as exc:
        raise DataError(host, "devices", str(exc)) from None
    return config
