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
    fsd_clear_after = 300          # seconds on line without LB before a forced shutdown is called
                                   # off (at least 60)
    host_ups = "cabin-ups"         # the UPS that powers this host, or a list (default: UPS_NAME)
    expect_secondaries = 1         # older files: one secondary from "host" on each host_ups

    [[shutdown.secondary]]         # a network upsmon that must be logged in for `health`
    name = "pi-cabin.lan"          # for messages only
    ups = "cabin-ups"              # the UPS it must be logged in to
    from = "host"                  # "host": this container's own host (the Pi's upsmon: from the
                                   # container's default gateway, or a second login from loopback
                                   # with host networking); a list of IP addresses; or left out:
                                   # any address that is neither ours nor the host's
    halt_seconds = 60              # how long it takes to halt (default 60): ups_off_delay, unless
                                   # 0, must be at least the largest halt_seconds + 30

    [[device]]
    match = {vendorid = "051d", productid = "0002"}
    name = "rack-ups"              # optional: pin the NUT name
    driver = "usbhid-ups"          # optional: override the driver
    options = {pollinterval = 5}   # optional: more ups.conf options
    desc = "Rack UPS"
    ignore = false                 # true: never serve this device
    powers_host = true             # false: watched, but its low battery does not shut this host down
    power_cycle = true             # after a forced shutdown, power-cycle it even with powers_host = false
    low_battery_percent = 50       # optional: LB (so this host's shutdown) at 50 % charge, not the UPS's own
    low_runtime_seconds = 300      # optional: ... or at 300 s of runtime left (both: whichever comes first)
    on_battery_max_seconds = 600   # optional: shut down after 600 s on battery, whatever the charge
                                   # (docs/reliability.md, "Your own thresholds")
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconcile import logfmt
from reconcile.model import DeviceRule, Thresholds, Upssched
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


# Why a margin: after a secondary logs out to halt, the primary waits out its own FINALDELAY
# and the power cycle is sent then; ups_off_delay must be at least the slowest secondary's
# halt_seconds + this (as the fleet's check, fleet/clients.py HALT_MARGIN).
HALT_MARGIN = 30
DEFAULT_HALT_SECONDS = 60
MIN_HALT_SECONDS, MAX_HALT_SECONDS = 1, 3600  # a host halts in no time at all, or an hour at most
# The secondary expect_secondaries stands for (files written by older rollouts).
HOST_UPSMON = "the host's own upsmon"


@dataclass(frozen=True)
class Secondary:
    """A network upsmon that must be logged in for `health` ([[shutdown.secondary]]):
    `name` for messages, `ups` the UPS it must be logged in to, and where from: the
    container's own host (`from_host`), one of `addresses`, or (neither) any address
    that is not ours and not the host's. decide/health.py says what that means.
    `this_host`: it is the upsmon that halts the container's own host (`this_host = true`;
    true whenever from = "host"): with one from its LAN address (nut_listen on that address)
    it is what makes this host's path armed, though upsd sees it as one address like any."""

    name: str
    ups: str
    from_host: bool = False
    addresses: tuple[str, ...] = ()
    halt_seconds: int = DEFAULT_HALT_SECONDS
    marked_this_host: bool = False  # `this_host = true` given (from addresses)

    @property
    def this_host(self) -> bool:
        return self.from_host or self.marked_this_host


# The container's SHUTDOWNCMD unless the owner gives one: it only logs (a container cannot
# halt its host: the host's own upsmon does, a [[shutdown.secondary]] from "host").
LOGGING_SHUTDOWN_CMD = "/bin/echo nut-reconcile: upsmon asked for a system shutdown"


@dataclass(frozen=True)
class UserConfig:
    listen: tuple[tuple[str, int], ...] = (("0.0.0.0", 3493),)
    maxage: int = 15
    maxconn: int = DEFAULT_MAXCONN  # upsd's MAXCONN as configured; the agent fits it to RLIMIT_NOFILE
    upsmon_enabled: bool = True
    shutdown_cmd: str = LOGGING_SHUTDOWN_CMD
    pollfreq: int = 5
    deadtime: int = 15
    passwords: tuple[tuple[str, str], ...] = ()  # (role, password) given by the user
    rules: tuple[DeviceRule, ...] = ()
    secondaries: tuple[tuple[str, str], ...] = ()  # (user, password): network upsmon secondaries
    ups_off_delay: int = 120  # seconds between the power-cycle command and the UPS cutting its load; 0: never
    fsd_clear_after: int = 300  # seconds every UPS must be on line without LB before FSD is cleared
    expect_secondaries: int = 0  # as given (older files); read into shutdown_secondaries
    host_ups: tuple[str, ...] = ("my-ups",)  # the UPSes that power this host (default: UPS_NAME)
    # The network upsmons `health` wants logged in ([[shutdown.secondary]], and the one
    # expect_secondaries stands for): decide/health.py.
    shutdown_secondaries: tuple[Secondary, ...] = ()
    # Values an earlier release took, raised to the least that is safe (each a sentence,
    # logged at start): refusing them would leave an upgraded Pi without NUT.
    raised: tuple[str, ...] = ()
    synology_compat: bool = False  # monuser's password is SYNOLOGY_PASSWORD (Synology DSM asks for it)
    # upsmon's NOTIFYCMD: set by the agent when notifications are on (NOTIFY_URLS), never
    # from the file; upsmon then hands each notice to the agent (outputs/relay.py).
    notify_cmd: str | None = None
    # upssched's parts (on_battery_max_seconds): set by the agent from its settings, never
    # from the file (settings.upssched_for).
    upssched: Upssched | None = None

    def password_for(self, role: str) -> str | None:
        return dict(self.passwords).get(role)


def load(path: Path | None, ups_name: str = "my-ups") -> UserConfig:
    """The config file at `path` (none: the defaults), for a first UPS named `ups_name`
    (UPS_NAME). Raises ConfigError naming the file and the key."""
    if path is None:
        return UserConfig(host_ups=(ups_name,))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        user = parse(data, ups_name)
    except (ConfigError, NutSyntaxError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for note in user.raised:  # an older file's value, raised to the least that is safe
        logfmt.warning("config.raised", file=str(path), why=note)
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
    keys = {"match", "name", "driver", "options", "desc", "ignore", "powers_host", "power_cycle", *THRESHOLDS}
    _unknown(entry, keys, where)
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
    power_cycle = entry.get("power_cycle")
    if power_cycle is not None and not isinstance(power_cycle, bool):
        raise ConfigError(f"{where}.power_cycle must be true or false")
    thresholds = _thresholds(entry, where, dict(opts), ignore=ignore, powers_host=powers_host)
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
        power_cycle=power_cycle,
        thresholds=thresholds,
    )


# A [[device]] rule's own shutdown thresholds (model.Thresholds), each (low, high).
# Why these bounds: below 5 % (or 60 s of runtime) a battery may not carry the host through
# its halt; above 95 % a flicker of the mains would halt it at once. on_battery_max_seconds
# is upssched's timer: from 10 s (upsmon notices ONBATT at its next poll) to a day.
THRESHOLDS = {
    "low_battery_percent": (5, 95),
    "low_runtime_seconds": (60, 7200),
    "on_battery_max_seconds": (10, 86400),
}
# What the agent writes into ups.conf for the first two (desired.section): given in
# `options` too, the same section would get two values for one setting.
THRESHOLD_OPTIONS = ("ignorelb", "override.battery.charge.low", "override.battery.runtime.low")


def _thresholds(
    entry: dict[str, Any], where: str, options: dict[str, str | bool], ignore: bool, powers_host: bool
) -> Thresholds:
    values: dict[str, int] = {}
    for key, (low, high) in THRESHOLDS.items():
        if key not in entry:
            continue
        value = entry[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(f"{where}.{key}: {value!r} is not a whole number from {low} to {high}")
        values[key] = value
    if not values:
        return Thresholds()
    given = ", ".join(sorted(values))
    if ignore:
        raise ConfigError(f"{where}: {given} with ignore = true: an ignored device is never served or watched")
    taken = sorted(k for k in options if k in THRESHOLD_OPTIONS)
    if taken and ("low_battery_percent" in values or "low_runtime_seconds" in values):
        raise ConfigError(
            f"{where}.options.{taken[0]}: set by the agent from low_battery_percent / low_runtime_seconds; "
            "give one or the other"
        )
    if "on_battery_max_seconds" in values and not powers_host:
        # Why refused: the timer runs `upsmon -c fsd`, which shuts this host down (and sets
        # FSD on every UPS it watches), though this UPS does not power it.
        raise ConfigError(
            f"{where}.on_battery_max_seconds needs powers_host = true: its timer runs `upsmon -c fsd`, "
            "which shuts this host down"
        )
    return Thresholds(**values)


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


# --- [shutdown] ------------------------------------------------------------------------------

SHUTDOWN_KEYS = {"ups_off_delay", "fsd_clear_after", "expect_secondaries", "host_ups", "secondary"}
# Why at least 60 s: on FSD the primary waits HOSTSYNC (15 s) for the secondaries to log
# out, then FINALDELAY (5 s), and only then sends the power cycle; calling FSD off sooner
# could take it back from hosts that are halting.
FSD_CLEAR_MIN = 60


def canonical_ip(text: str) -> str | None:
    """An IP address as one spelling (IPv4 as upsd prints it, also from an IPv4-mapped
    IPv6 address: upsd listening on "::" lists IPv4 clients as ::ffff:a.b.c.d); None when
    `text` is not an address."""
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped or ip)


@dataclass(frozen=True)
class _Shutdown:
    ups_off_delay: int
    fsd_clear_after: int
    expect_secondaries: int
    host_ups: tuple[str, ...]
    secondaries: tuple[Secondary, ...]
    raised: tuple[str, ...] = ()


def _host_ups(value: Any, ups_name: str) -> tuple[str, ...]:
    where = "shutdown.host_ups"
    if value is None:
        return (ups_name,)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f'{where} must be a UPS name or a non-empty list of UPS names (e.g. "cabin-ups")')
    for name in names:
        validate_name(name, where)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{where}: {', '.join(twice)} listed twice")
    return tuple(names)


def _secondary(index: int, entry: Any) -> Secondary:
    where = f"shutdown.secondary[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table")
    _unknown(entry, {"name", "ups", "from", "halt_seconds", "this_host"}, where)
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or not is_printable_ascii(name):
        raise ConfigError(f"{where}.name must be a non-empty printable ASCII string (the host's name, for messages)")
    where = f"{where} ({name})"
    ups = entry.get("ups")
    if not isinstance(ups, str):
        raise ConfigError(f"{where}: ups must be the name of the UPS it must be logged in to")
    validate_name(ups, f"{where}: ups")
    origin = entry.get("from")
    addresses: list[str] = []
    if isinstance(origin, list) and origin:
        for item in origin:
            ip = canonical_ip(item) if isinstance(item, str) else None
            if ip is None:
                raise ConfigError(f"{where}: from: {item!r} is not an IP address")
            addresses.append(ip)
    elif origin is not None and origin != "host":
        raise ConfigError(
            f'{where}: from must be "host" (this container\'s own host), a non-empty list of IP addresses '
            '(e.g. ["192.168.1.20"]), or left out (any address that is neither ours nor the host\'s)'
        )
    halt = entry.get("halt_seconds", DEFAULT_HALT_SECONDS)
    if not isinstance(halt, int) or isinstance(halt, bool) or not MIN_HALT_SECONDS <= halt <= MAX_HALT_SECONDS:
        raise ConfigError(
            f"{where}: halt_seconds must be a whole number from {MIN_HALT_SECONDS} to {MAX_HALT_SECONDS} "
            "(seconds it takes to halt)"
        )
    this_host = entry.get("this_host", origin == "host")
    if not isinstance(this_host, bool) or (origin == "host" and not this_host):
        raise ConfigError(f'{where}: this_host must be true or false (and true with from = "host")')
    return Secondary(name, ups, origin == "host", tuple(dict.fromkeys(addresses)), halt, this_host and origin != "host")


def _shutdown(table: dict[str, Any], ups_name: str, defaults: UserConfig) -> _Shutdown:
    """[shutdown], checked: each key named in its message (ConfigError)."""
    _unknown(table, SHUTDOWN_KEYS, "shutdown")
    # Why at most an hour: a UPS counts the delay down on battery; longer than its
    # runtime and the load is lost before the cut, which defeats the point of it.
    off_delay = _whole(table, "ups_off_delay", defaults.ups_off_delay, 0, 3600, "shutdown")
    clear_after = _whole(table, "fsd_clear_after", defaults.fsd_clear_after, 0, 86400, "shutdown")
    raised: list[str] = []
    if clear_after < FSD_CLEAR_MIN:
        # Raised, not refused: earlier releases took it, and a file an upgrade cannot read
        # would leave the Pi without NUT. The fleet refuses it (fleet/data.py) before writing.
        raised.append(
            f"shutdown.fsd_clear_after {clear_after} is raised to {FSD_CLEAR_MIN}: the primary waits HOSTSYNC "
            "(15 s) and FINALDELAY (5 s) before the power cycle, and FSD must not be called off sooner"
        )
        clear_after = FSD_CLEAR_MIN
    expect = _whole(table, "expect_secondaries", defaults.expect_secondaries, 0, 64, "shutdown")
    host_ups = _host_ups(table.get("host_ups"), ups_name)
    entries = table.get("secondary", [])
    if not isinstance(entries, list):
        raise ConfigError("shutdown.secondary must be an array of tables: [[shutdown.secondary]]")
    secondaries = [_secondary(i, entry) for i, entry in enumerate(entries)]
    for i, s in enumerate(secondaries):
        first = next(j for j, o in enumerate(secondaries) if (o.name, o.ups) == (s.name, s.ups))
        if first != i:
            raise ConfigError(
                f"shutdown.secondary[{i}] ({s.name}): {s.name} on {s.ups} is shutdown.secondary[{first}] already "
                "(one entry per host and UPS)"
            )
    if expect and not any(s.from_host for s in secondaries):
        # An older rollout's file: the Pi's own upsmon, from the host, on the UPS that
        # powers it. Never a bare count: any login would do (a NAS for the Pi).
        secondaries += [Secondary(HOST_UPSMON, ups, from_host=True) for ups in host_ups]
    if off_delay and secondaries:
        at, slowest = max(enumerate(secondaries), key=lambda pair: pair[1].halt_seconds)
        least = slowest.halt_seconds + HALT_MARGIN
        if off_delay < least and at >= len(entries):
            # Only expect_secondaries (an older file: no halt_seconds of its own) asks for
            # more: raised, not refused, as fsd_clear_after above. A longer off-delay only
            # gives the halting Pi more time.
            raised.append(
                f"shutdown.ups_off_delay {off_delay} is raised to {least}: the Pi's own upsmon "
                f"(shutdown.expect_secondaries) is given {slowest.halt_seconds} s to halt, + {HALT_MARGIN}"
            )
            off_delay = least
        elif off_delay < least:
            key = f"shutdown.secondary[{at}]"
            raise ConfigError(
                f"shutdown.ups_off_delay ({off_delay}) is less than {slowest.name}'s halt_seconds "
                f"({slowest.halt_seconds}, {key}) + {HALT_MARGIN}: the UPS would cut its power before it has "
                f"halted; give ups_off_delay = {least} or more (or 0: never cut the load)"
            )
    return _Shutdown(off_delay, clear_after, expect, host_ups, tuple(secondaries), tuple(raised))


def parse(data: dict[str, Any], ups_name: str = "my-ups") -> UserConfig:
    """The config's content, for a first UPS named `ups_name` (UPS_NAME: host_ups's default)."""
    _unknown(data, {"upsd", "upsmon", "users", "device", "shutdown"}, "top level")
    upsd = _table(data, "upsd", "")
    _unknown(upsd, {"listen", "maxage", "maxconn", "synology_compat"}, "upsd")
    upsmon = _table(data, "upsmon", "")
    _unknown(upsmon, {"enabled", "shutdown_cmd", "pollfreq", "deadtime"}, "upsmon")
    users = _table(data, "users", "")
    shutdown = _table(data, "shutdown", "")
    defaults = UserConfig()
    sd = _shutdown(shutdown, ups_name, defaults)
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
        ups_off_delay=sd.ups_off_delay,
        fsd_clear_after=sd.fsd_clear_after,
        expect_secondaries=sd.expect_secondaries,
        host_ups=sd.host_ups,
        shutdown_secondaries=sd.secondaries,
        raised=sd.raised,
        synology_compat=synology,
    )
