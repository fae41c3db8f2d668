"""The optional TOML file (RECONCILE_CONFIG): device rules and global settings.

Example:

    [upsd]
    listen = ["0.0.0.0:3493"]      # "address:port"; "[::1]:3493" for IPv6
    maxage = 15
    maxconn = 1024                 # upsd's MAXCONN (16 to 1048576): kept within the open-files limit
    synology_compat = false        # true: monuser's password is Synology DSM's fixed "secret"
                                   # (and UPS_NAME must be "ups"): see docs/fleet.md for the risk

    [upsmon]
    enabled = true
    shutdown_cmd = "/sbin/shutdown -h +0"
    pollfreq = 5                   # NUT's POLLFREQ and POLLFREQALERT
    deadtime = 15                  # NUT's DEADTIME: at least 3 x pollfreq

    [users.monuser]                # network dashboards log in as this (upsmon secondary)
    password_file = "/run/secrets/nut-monuser"

    [users.admin]                  # instant commands and settings; never given to dashboards
    password = "..."

    [users.pi-host]                # any other name: a network upsmon secondary (the Pi's own
    password_file = "/run/secrets/nut-pi-host"   # upsmon, a NAS): can watch, cannot force FSD

    [shutdown]
    ups_off_delay = 120            # seconds the UPS waits before it cuts the load (0: never cut)
    fsd_clear_after = 300          # seconds on line without LB before a forced shutdown is called off
    expect_secondaries = 1         # network upsmons that must be logged in for `health` (the Pi's own)

    [[device]]
    match = {vendorid = "051d", productid = "0002"}
    name = "rack-ups"              # optional: pin the NUT name
    driver = "usbhid-ups"          # optional: override the driver
    options = {pollinterval = 5}   # optional: more ups.conf options
    desc = "Rack UPS"
    ignore = false                 # true: never serve this device
    powers_host = true             # false: watched, but its low battery does not shut this host down
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconcile.model import DeviceRule
from reconcile.nutsyntax import (
    NutSyntaxError,
    encode,
    is_printable_ascii,
    validate_key,
    validate_name,
    validate_password,
    validate_user,
)

_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_DRIVER = re.compile(r"[a-z0-9][a-z0-9_-]{0,40}")
# usbhid-ups and friends already get these from the scan; pinning bus/device breaks replug.
_RESERVED_OPTIONS = {"driver", "bus", "device", "busport"}
ROLES = ("admin", "monuser")
# Why these names are taken: the upsmon inside the container logs in as the first, and the
# two roles above have their own meaning (upsd.users would get two sections of one name).
RESERVED_USERS = frozenset({"upsmon", *ROLES})
# What Synology DSM's "Network UPS server" client insists on, fixed in DSM: the UPS name
# `ups`, the user `monuser`, the password `secret`. Known to everyone: see upsd.synology_compat.
SYNOLOGY_UPS, SYNOLOGY_PASSWORD = "ups", "secret"
# upsd's MAXCONN unless upsd.maxconn says otherwise: the Home Assistant NUT add-on's and
# instantlinux/nut-upsd's figure, far more than a Pi's dashboards and upsmons. Never left
# out: without it upsd sizes its table from the open-files limit (decide/limits.py).
DEFAULT_MAXCONN = 1024
# Why at most 2^20: the kernel's default ceiling of open files per process (fs.nr_open), so a
# larger MAXCONN could never be met. Why at least 16 (decide/limits.LOWEST): every UPS,
# LISTEN address and client takes one; fewer starves the clients.
MAXCONN_RANGE = (16, 1 << 20)


def reachable(host: str) -> str:
    """Where a local client reaches upsd listening on `host`: a wildcard is not a destination."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


class ConfigError(ValueError):
    """Bad TOML content; the message names the file and the key."""


@dataclass(frozen=True)
class UserConfig:
    listen: tuple[tuple[str, int], ...] = (("0.0.0.0", 3493),)
    maxage: int = 15
    maxconn: int = DEFAULT_MAXCONN  # upsd's MAXCONN as configured; the agent fits it to RLIMIT_NOFILE
    upsmon_enabled: bool = True
    shutdown_cmd: str = "/bin/echo nut-reconcile: upsmon asked for a system shutdown"
    pollfreq: int = 5
    deadtime: int = 15
    passwords: tuple[tuple[str, str], ...] = ()  # (role, password) given by the user
    rules: tuple[DeviceRule, ...] = ()
    secondaries: tuple[tuple[str, str], ...] = ()  # (user, password): network upsmon secondaries
    ups_off_delay: int = 120  # seconds between the power-cycle command and the UPS cutting its load; 0: never
    fsd_clear_after: int = 300  # seconds every UPS must be on line without LB before FSD is cleared
    expect_secondaries: int = 0  # network upsmons `health` wants logged in to every watched UPS
    synology_compat: bool = False  # monuser's password is SYNOLOGY_PASSWORD (Synology DSM asks for it)
    # upsmon's NOTIFYCMD: set by the agent when notifications are on (NOTIFY_URLS), never
    # from the file; upsmon then hands each notice to the agent (outputs/relay.py).
    notify_cmd: str | None = None

    def password_for(self, role: str) -> str | None:
        return dict(self.passwords).get(role)


def load(path: Path | None, ups_name: str = "my-ups") -> UserConfig:
    """The config file at `path` (none: the defaults), for a first UPS named `ups_name`
    (UPS_NAME). Raises ConfigError naming the file and the key."""
    if path is None:
        return UserConfig()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        user = parse(data)
    except (ConfigError, NutSyntaxError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if user.synology_compat and ups_name != SYNOLOGY_UPS:
        raise ConfigError(
            f"{path}: upsd.synology_compat: Synology DSM watches the UPS named {SYNOLOGY_UPS!r}, "
            f"but UPS_NAME is {ups_name!r}: set UPS_NAME={SYNOLOGY_UPS}"
        )
    return user


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}{key} must be a table")
    return value


def _unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})")


def address(item: Any, where: str) -> tuple[str, int]:
    """An "address:port" ("[v6]:port" for IPv6) with a real IP address; ConfigError naming `where`."""
    m = re.fullmatch(r"(\[[^\]]*\]|[^:\[\]]*):([0-9]{1,5})", item, re.ASCII) if isinstance(item, str) else None
    host = m.group(1).strip("[]") if m else ""
    try:
        # ipaddress, not a regex: it knows 999.999.999.999 is no address.
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if not m or ip is None or (ip.version == 6) != m.group(1).startswith("[") or not 1 <= int(m.group(2)) <= 65535:
        raise ConfigError(
            f"{where}: {item!r} is not 'address:port' with an IP address and a port from 1 to 65535 "
            "(e.g. 0.0.0.0:3493, 192.168.1.10:3493 or [::]:3493)"
        )
    return str(ip), int(m.group(2))


def _listen(value: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError('upsd.listen must be a non-empty list such as ["0.0.0.0:3493"]')
    out = [address(item, "upsd.listen") for item in value]
    if len(set(out)) != len(out):
        raise ConfigError("upsd.listen: the same address:port is listed twice")
    return tuple(out)


def _password(role: str, entry: Any) -> str:
    where = f"users.{role}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table")
    _unknown(entry, {"password", "password_file"}, where)
    if ("password" in entry) == ("password_file" in entry):
        raise ConfigError(f"{where}: give exactly one of password, password_file")
    if "password_file" in entry:
        try:
            secret = Path(str(entry["password_file"])).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}.password_file: cannot read {entry['password_file']!r}: {exc}") from None
    else:
        secret = entry["password"]
        if not isinstance(secret, str):
            raise ConfigError(f"{where}.password must be a string")
    return validate_password(secret, where)


def _rule(index: int, entry: Any) -> DeviceRule:
    where = f"device[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table")
    _unknown(entry, {"match", "name", "driver", "options", "desc", "ignore", "powers_host"}, where)
    match = entry.get("match")
    if not isinstance(match, dict) or not match:
        raise ConfigError(f"{where}.match must be a table with vendorid, productid and/or serial")
    _unknown(match, {"vendorid", "productid", "serial"}, f"{where}.match")
    ids = {key: _usb_id(match[key], f"{where}.match.{key}") for key in ("vendorid", "productid") if key in match}
    serial = match.get("serial")
    if serial is not None and (not isinstance(serial, str) or not is_printable_ascii(serial)):
        raise ConfigError(f"{where}.match.serial must be a printable ASCII string")
    name = entry.get("name")
    if name is not None:
        validate_name(str(name), f"{where}.name")
    driver = entry.get("driver")
    if driver is not None and (not isinstance(driver, str) or not _DRIVER.fullmatch(driver)):
        raise ConfigError(f"{where}.driver: {driver!r} is not a NUT driver name")
    options = entry.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{where}.options must be a table")
    opts: list[tuple[str, str | bool]] = []
    for key, value in options.items():
        validate_key(key, f"{where}.options")
        if key in _RESERVED_OPTIONS:
            raise ConfigError(f"{where}.options.{key} is not allowed (it is set by the agent or breaks replug)")
        if key == "desc":
            # Why: the rule's own `desc` (or the device's name) is always written, and two
            # desc lines would both reach ups.conf.
            raise ConfigError(f"{where}.options.desc duplicates the section's desc: use desc = ... on the rule")
        if isinstance(value, bool):
            opts.append((key, value))
        elif isinstance(value, (str, int, float)):
            encode(str(value), f"{where}.options.{key}")  # refuse what cannot be written safely
            opts.append((key, str(value)))
        else:
            raise ConfigError(f"{where}.options.{key} must be a string, number or boolean")
    desc = entry.get("desc")
    if desc is not None:
        encode(str(desc), f"{where}.desc")
    ignore = entry.get("ignore", False)
    if not isinstance(ignore, bool):
        raise ConfigError(f"{where}.ignore must be true or false")
    powers_host = entry.get("powers_host", True)
    if not isinstance(powers_host, bool):
        raise ConfigError(f"{where}.powers_host must be true or false")
    return DeviceRule(
        index=index,
        vendorid=ids.get("vendorid"),
        productid=ids.get("productid"),
        serial=serial,
        name=None if name is None else str(name),
        driver=driver,
        options=tuple(opts),
        desc=None if desc is None else str(desc),
        ignore=ignore,
        powers_host=powers_host,
    )


def _usb_id(value: Any, where: str) -> str:
    """A USB vendor or product ID: a string of 4 hex digits, as lsusb prints it."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFF:
        # TOML reads 0x051d as the number 1309: say exactly what to write instead.
        raise ConfigError(f'{where}: {value!r} is a number; write the ID as a string: "{value:04x}"')
    if not isinstance(value, str) or not _HEX4.fullmatch(value):
        raise ConfigError(f'{where}: {value!r} is not 4 hex digits in quotes (e.g. "051d")')
    return value.lower()


def _whole(table: dict[str, Any], key: str, default: int, low: int, high: int, where: str) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{where}.{key} must be a whole number from {low} to {high}")
    return value


def parse(data: dict[str, Any]) -> UserConfig:
    _unknown(data, {"upsd", "upsmon", "users", "device", "shutdown"}, "top level")
    upsd = _table(data, "upsd", "")
    _unknown(upsd, {"listen", "maxage", "maxconn", "synology_compat"}, "upsd")
    upsmon = _table(data, "upsmon", "")
    _unknown(upsmon, {"enabled", "shutdown_cmd", "pollfreq", "deadtime"}, "upsmon")
    users = _table(data, "users", "")
    shutdown = _table(data, "shutdown", "")
    _unknown(shutdown, {"ups_off_delay", "fsd_clear_after", "expect_secondaries"}, "shutdown")
    defaults = UserConfig()
    secondaries = []
    for name, entry in users.items():
        if name in ROLES:
            continue
        validate_user(name, "users")
        if name in RESERVED_USERS:
            raise ConfigError(f"users.{name}: the name is taken by the container's own upsmon; choose another")
        secondaries.append((name, _password(name, entry)))

    maxage = _whole(upsd, "maxage", defaults.maxage, 5, 3600, "upsd")
    maxconn = _whole(upsd, "maxconn", defaults.maxconn, *MAXCONN_RANGE, "upsd")
    pollfreq = _whole(upsmon, "pollfreq", defaults.pollfreq, 1, 60, "upsmon")
    deadtime = _whole(upsmon, "deadtime", defaults.deadtime, 3, 3600, "upsmon")
    if deadtime < 3 * pollfreq:
        # NUT's advice (upsmon.conf(5)): a UPS must miss several polls before it counts as dead.
        raise ConfigError(f"upsmon.deadtime ({deadtime}) must be at least 3 x upsmon.pollfreq ({3 * pollfreq})")
    enabled = upsmon.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError("upsmon.enabled must be true or false")
    shutdown_cmd = upsmon.get("shutdown_cmd", defaults.shutdown_cmd)
    if not isinstance(shutdown_cmd, str) or not shutdown_cmd.strip():
        raise ConfigError("upsmon.shutdown_cmd must be a non-empty string")
    encode(shutdown_cmd, "upsmon.shutdown_cmd")

    synology = upsd.get("synology_compat", False)
    if not isinstance(synology, bool):
        raise ConfigError("upsd.synology_compat must be true or false")
    if synology and "monuser" in users:
        # Why refused, not ignored: the owner would think the password given is the one in use.
        raise ConfigError(
            "users.monuser: with upsd.synology_compat = true, monuser's password is Synology's fixed one; "
            "remove users.monuser (or set synology_compat = false)"
        )

    devices = data.get("device", [])
    if not isinstance(devices, list):
        raise ConfigError("device must be an array of tables: [[device]]")
    rules = tuple(_rule(i, entry) for i, entry in enumerate(devices))
    pinned = [r.name for r in rules if r.name]
    dupes = sorted({n for n in pinned if pinned.count(n) > 1})
    if dupes:
        raise ConfigError(f"device: name(s) {', '.join(dupes)} pinned by more than one rule")

    return UserConfig(
        listen=_listen(upsd["listen"]) if "listen" in upsd else defaults.listen,
        maxage=maxage,
        maxconn=maxconn,
        upsmon_enabled=enabled,
        shutdown_cmd=shutdown_cmd,
        pollfreq=pollfreq,
        deadtime=deadtime,
        passwords=tuple((role, _password(role, entry)) for role, entry in users.items() if role in ROLES),
        rules=rules,
        secondaries=tuple(secondaries),
        # Why at most an hour: a UPS counts the delay down on battery; longer than its
        # runtime and the load is lost before the cut, which defeats the point of it.
        ups_off_delay=_whole(shutdown, "ups_off_delay", defaults.ups_off_delay, 0, 3600, "shutdown"),
        fsd_clear_after=_whole(shutdown, "fsd_clear_after", defaults.fsd_clear_after, 10, 86400, "shutdown"),
        expect_secondaries=_whole(shutdown, "expect_secondaries", defaults.expect_secondaries, 0, 64, "shutdown"),
        synology_compat=synology,
    )
