"""Settings from the environment, validated before anything touches the disk.

A bad value raises SettingsError naming the variable; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import sysconfig
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconcile import notifycmd
from reconcile.model import UPSMON_NOTICES, DeviceRule, Upssched
from reconcile.nutsyntax import NutSyntaxError, validate_name
from reconcile.userconfig import ConfigError, address

DEFAULT_CONFIG = "/etc/nut-reconcile/config.toml"
DEFAULT_STATE = "/var/lib/nut-reconcile"
LOG_FILE_MAX = 1 << 20  # bytes; one rotated copy is kept beside it
HEALTH_FILE = "nut-reconcile.health"  # docker/nut-health.sh's default HEALTH_FILE names it too

# Where NUT's programs live. /opt/nut is the source build (our image); /lib/nut holds
# Debian's real upsd and upsmon (Debian's /sbin/upsd is a wrapper that refuses to run
# unless /etc/nut/nut.conf says standalone or netserver, so it must not be used).
_SEARCH = {
    "upsd": ["/opt/nut/sbin", "/lib/nut", "/usr/lib/nut", "/usr/sbin", "/sbin"],
    "upsmon": ["/opt/nut/sbin", "/lib/nut", "/usr/lib/nut", "/usr/sbin", "/sbin"],
    "upsdrvctl": ["/opt/nut/sbin", "/opt/nut/bin", "/usr/sbin", "/sbin", "/lib/nut", "/usr/lib/nut"],
    "upsc": ["/opt/nut/bin", "/usr/bin", "/bin"],
    "nut-scanner": ["/opt/nut/bin", "/usr/bin", "/bin"],
}
_RULES_SEARCH = [
    "/opt/nut/share/nut/62-nut-usbups.rules",
    "/etc/udev/rules.d/62-nut-usbups.rules",
    "/lib/udev/rules.d/62-nut-usbups.rules",
    "/usr/lib/udev/rules.d/62-nut-usbups.rules",
]


SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL


class SettingsError(ValueError):
    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass(frozen=True)
class Binaries:
    upsd: str | None
    upsmon: str | None
    upsdrvctl: str | None
    upsc: str | None
    nut_scanner: str | None
    usb_rules: str | None
    upssched: str | None = None  # on_battery_max_seconds (notifycmd.find_upssched: the relay's own lookup)


# The notifications one can choose (NOTIFY_EVENTS): upsmon's own (through NOTIFYCMD) and
# the agent's. Why COMMOK and COMMBAD are not sent by default: a UPS unplugged or back is
# told better by the agent's own `unplugged`/`plugged`/`held` (upsmon sees it only as lost
# communication); NOCOMM, a UPS silent for long, is.
AGENT_NOTICES = (
    "plugged",
    "unplugged",
    "swapped",
    "healed",
    "backoff",
    "held",
    "released",
    "fsd_cleared",
    "power_cycle",
    "no_power_cycle",
    "fsd_kept",
)
DEFAULT_NOTICES = frozenset(UPSMON_NOTICES + AGENT_NOTICES) - {"COMMBAD", "COMMOK"}
URL_SCHEME = r"[a-zA-Z][a-zA-Z0-9+.-]{0,31}"  # a URL scheme (RFC 3986), at most 32 long
_APPRISE_URL = re.compile(URL_SCHEME + r"://[^\s]+")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})")


@dataclass(frozen=True)
class Notify:
    """NOTIFY_URLS and its companions. Why repr=False on the URLs: they hold tokens and
    passwords (a Telegram bot token, an SMTP password), which never reach a log."""

    urls: tuple[str, ...] = field(repr=False)
    events: frozenset[str]
    debounce: float  # seconds: one message per UPS per window while a device flaps
    timeout: float  # seconds one message may take to every service before its sender is killed
    socket: Path  # where upsmon's notices reach the agent (outputs/notify.Relay)
    notify_cmd: str  # upsmon's NOTIFYCMD: the relay's program (outputs/relay.py), a bare path

    @property
    def schemes(self) -> str:
        """What may be logged of the URLs: their schemes (json, ntfy, mailto ...)."""
        return ",".join(sorted({u.split("://", 1)[0].lower() for u in self.urls}))


@dataclass(frozen=True)
class Mqtt:
    """MQTT_URL (mqtt://[user[:password]@]host[:port], mqtts:// for TLS) and its topics."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None = field(repr=False)
    prefix: str  # MQTT_PREFIX: the agent's own topics, <prefix>/<host>/...
    discovery_prefix: str  # MQTT_DISCOVERY_PREFIX: Home Assistant's (homeassistant)
    # MQTT_ALLOW_DEEP_TESTS=1: calibrate.* and test.battery.start.deep as buttons (off: they
    # run the battery down, and while CAL is set upsmon never shuts down on OB LB).
    allow_deep_tests: bool = False

    @property
    def where(self) -> str:
        """What may be logged: the broker's address, never the credentials."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    scan_interval: float  # SCAN_INTERVAL: the pass's interval when polling (no uevents)
    settle_time: float
    # UEVENTS=1 (default): wake on the kernel's uevents for UEVENT_SUBSYSTEM (usb) and run
    # the periodic pass every RESCAN_INTERVAL; where the socket cannot be opened, poll.
    uevents: bool
    uevent_subsystem: str
    rescan_interval: float
    settle_min: float  # SETTLE_MIN: a bus read the same twice this far apart has settled
    debug: bool
    tz: str | None
    ups_name: str
    usb_sysfs_root: Path
    config_file: Path | None
    confpath: Path
    statepath: Path
    agent_dir: Path  # the agent's own state: root only (0700), never inside NUT's state dir
    log_file: Path | None
    log_file_max: int
    run_user: str  # drivers run as this user
    upsd_user: str
    command_timeout: float
    stale_restart_after: float
    names_forget_days: int  # a fingerprint not seen this long loses its name (0: never)
    simulate: bool
    simulate_cycle: float
    password_files: tuple[tuple[str, Path], ...]  # (role, file) from *_FILE or Docker secrets
    metrics_listen: tuple[str, int] | None  # METRICS_LISTEN: where /metrics is served (None: off)
    host_name: str  # HOST_NAME: this host in notifications and MQTT (default: the host name)
    notify: Notify | None  # NOTIFY_URLS: Apprise notifications (None: off)
    mqtt: Mqtt | None  # MQTT_URL: MQTT with Home Assistant discovery (None: off)
    binaries: Binaries
    # For the fault tests: SIGKILL the agent itself just before this step of a plan (1-based).

    @property
    def legacy_agent_dir(self) -> Path:
        """Where earlier versions kept names and secrets: inside NUT's state dir, which
        group nut can write. Moved to agent_dir once, then removed."""
        return self.statepath / "reconcile"

    @property
    def health_file(self) -> Path:
        """Where `run` records its health verdict at every tick, for the image's HEALTHCHECK
        (docker/nut-health.sh reads it). In NUT's state dir: a tmpfs in compose, so the
        touch at every tick costs no disk write and a restarted container starts without one."""
        return self.statepath / HEALTH_FILE

    def nut_env(self) -> dict[str, str]:
        """Environment for every NUT program we run: points them at our dirs."""
        env = dict(os.environ)
        env["NUT_CONFPATH"] = str(self.confpath)
        env["NUT_STATEPATH"] = str(self.statepath)
        env["NUT_ALTPIDPATH"] = str(self.statepath)
        return env


# Why a regex and not float()/int() alone: those also take "1e3", "inf", "1_0" and
# non-ASCII digits (Arabic-Indic ten, say), none of which anyone means in an env file.
_DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?", re.ASCII)


def _number(env: Mapping[str, str], var: str, default: float, low: float, high: float, unit: str = "seconds") -> float:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    if not _DECIMAL.fullmatch(raw):
        raise SettingsError(var, f"{raw!r} is not a number of {unit} (ASCII digits, e.g. 2 or 0.5)")
    value = float(raw)
    if not (low <= value <= high):
        raise SettingsError(var, f"{raw!r} must be between {low:g} and {high:g} {unit}")
    return value


def _whole(env: Mapping[str, str], var: str, default: int, low: int, high: int, unit: str) -> int:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    if "." in raw:
        raise SettingsError(var, f"{raw!r} must be a whole number of {unit}")
    return int(_number(env, var, default, low, high, unit))


def _address(env: Mapping[str, str], var: str) -> tuple[str, int] | None:
    """An "address:port" ("[v6]:port"), or None when the variable is empty (off)."""
    raw = env.get(var, "").strip()
    if not raw:
        return None
    try:
        return address(raw, var)
    except ConfigError as exc:
        raise SettingsError(var, str(exc).split(": ", 1)[-1]) from None


_SUBSYSTEM = re.compile(r"[a-z0-9_]{1,32}", re.ASCII)


def _subsystem(env: Mapping[str, str]) -> str:
    # Why settable at all: the tests send real uevents through a virtual device of another
    # subsystem (mem), since this machine has no USB bus to make them on.
    raw = env.get("UEVENT_SUBSYSTEM", "").strip() or "usb"
    if not _SUBSYSTEM.fullmatch(raw):
        raise SettingsError("UEVENT_SUBSYSTEM", f"{raw!r} is not a kernel subsystem name (a-z, 0-9, _)")
    return raw


def _bool(env: Mapping[str, str], var: str, default: bool = False) -> bool:
    raw = env.get(var, "").strip().lower()
    if raw == "":
        return default
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(var, f"{raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def _path(env: Mapping[str, str], var: str, default: str) -> Path:
    raw = env.get(var, "") or default
    if "\n" in raw or "\x00" in raw or not raw.startswith("/"):
        raise SettingsError(var, f"{raw!r} must be an absolute path")
    return Path(raw)


def _tz(env: Mapping[str, str]) -> str | None:
    raw = env.get("TZ")
    if raw is None or raw == "":
        return None
    # Either an IANA name (Europe/Berlin), a ":path", or a POSIX rule (CET-1CEST,M3.5.0,M10.5.0/3).
    if not re.fullmatch(r"[A-Za-z0-9_+\-/:.,<>]{1,64}", raw) or ".." in raw:
        raise SettingsError("TZ", f"{raw!r} is not a time zone (e.g. Europe/Berlin or UTC)")
    return raw


_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def _user(env: Mapping[str, str], var: str, default: str) -> str:
    raw = env.get(var, "") or default
    if not _USER.fullmatch(raw):
        raise SettingsError(var, f"{raw!r} is not a user name")
    try:
        pwd.getpwnam(raw)
    except KeyError:
        raise SettingsError(var, f"user {raw!r} does not exist here") from None
    return raw


def _upsd_user(env: Mapping[str, str]) -> str:
    """upsd never touches a device, so it drops root for `nut` wherever that user exists."""
    if env.get("UPSD_USER"):
        return _user(env, "UPSD_USER", "")
    try:
        pwd.getpwnam("nut")
    except KeyError:
        return "root"
    return "nut"


def _binary(env: Mapping[str, str], var: str, program: str) -> str | None:
    override = env.get(var)
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise SettingsError(var, f"{override!r} is not an executable file")
        return override
    for directory in _SEARCH[program]:
        candidate = os.path.join(directory, program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(program)


def _rules(env: Mapping[str, str]) -> str | None:
    override = env.get("NUT_USB_RULES")
    if override:
        if not os.path.isfile(override):
            raise SettingsError("NUT_USB_RULES", f"{override!r} is not a file")
        return override
    return next((p for p in _RULES_SEARCH if os.path.isfile(p)), None)


# Docker secrets land in /run/secrets/<name>; *_FILE variables name any file.
_SECRET_ROLES = {"admin": "NUT_ADMIN_PASSWORD_FILE", "monuser": "NUT_MONUSER_PASSWORD_FILE"}
SECRETS_DIR = "/run/secrets"


def _password_files(env: Mapping[str, str]) -> tuple[tuple[str, Path], ...]:
    found = []
    for role, var in _SECRET_ROLES.items():
        raw = env.get(var, "")
        if raw:
            path = _path(env, var, "")
            if not path.is_file():
                raise SettingsError(var, f"{raw!r} is not a readable file")
            found.append((role, path))
        elif os.path.isfile(f"{SECRETS_DIR}/nut_{role}_password"):
            found.append((role, Path(f"{SECRETS_DIR}/nut_{role}_password")))
    return tuple(found)


def _secret_value(env: Mapping[str, str], var: str, secret: str) -> tuple[str, str] | None:
    """A value that may hold a secret: from `<var>_FILE`, the Docker secret `secret`, or
    `var` itself, in that order. Returns (value, where it came from) or None when unset."""
    file_var = f"{var}_FILE"
    raw = env.get(file_var, "")
    path = _path(env, file_var, "") if raw else Path(f"{SECRETS_DIR}/{secret}")
    if raw or path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(file_var if raw else var, f"{str(path)!r} cannot be read: {exc}") from None
        return text.strip(), file_var if raw else str(path)
    value = env.get(var, "").strip()
    return (value, var) if value else None


def notify_events(env: Mapping[str, str]) -> frozenset[str]:
    """NOTIFY_EVENTS: names (ONBATT, plugged ...), `default`, `all`, and -name to drop one."""
    raw = env.get("NOTIFY_EVENTS", "").strip() or "default"
    known = {n.lower(): n for n in (*UPSMON_NOTICES, *AGENT_NOTICES)}
    chosen: set[str] = set()
    for word in filter(None, (w.strip() for w in raw.replace(" ", ",").split(","))):
        drop = word.startswith("-")
        name = word[1:] if drop else word
        if name.lower() == "default":
            group = set(DEFAULT_NOTICES)
        elif name.lower() == "all":
            group = set(known.values())
        elif name.lower().replace("-", "_") in known:
            group = {known[name.lower().replace("-", "_")]}
        else:
            raise SettingsError(
                "NOTIFY_EVENTS", f"{name!r} is not an event (one of: default, all, {', '.join(sorted(known.values()))})"
            )
        chosen = chosen - group if drop else chosen | group
    if not chosen:
        raise SettingsError(
            "NOTIFY_EVENTS", f"{raw!r} chooses no event: leave NOTIFY_URLS empty to turn notifications off"
        )
    return frozenset(chosen)


def _notify(env: Mapping[str, str], settle_time: float, statepath: Path) -> Notify | None:
    found = _secret_value(env, "NOTIFY_URLS", "notify_urls")
    if found is None:
        return None
    text, source = found
    # Apprise's own list syntax: URLs separated by white space or commas. Why a comma
    # inside a URL still works: Apprise URLs escape their commas (%2C) in a list.
    urls = tuple(filter(None, re.split(r"[\s,]+", text)))
    for index, url in enumerate(urls, 1):
        if not _APPRISE_URL.fullmatch(url):
            # Never the URL itself: it may hold a token. Its position and scheme only.
            scheme = url.split("://", 1)[0] if "://" in url else "(none)"
            raise SettingsError(
                source,
                f"URL {index} (scheme {scheme[:32]!r}) is not an Apprise URL such as json://host/path or ntfy://topic",
            )
    if not urls:
        return None
    debounce = _number(env, "NOTIFY_DEBOUNCE", max(30.0, settle_time), 0, 86400)
    # Where the relay looks: from the NUT_STATEPATH upsmon runs with (nut_env, notifycmd.py).
    sock = Path(notifycmd.socket_path({"NUT_STATEPATH": str(statepath)}))
    if len(str(sock).encode()) > 107:
        raise SettingsError("NUT_STATEPATH", f"{str(sock)!r} is longer than a Unix socket's path may be (107 bytes)")
    timeout = _number(env, "NOTIFY_TIMEOUT", 30.0, 1, 600)
    cmd = check_notify_program(notify_program())
    return Notify(urls=urls, events=notify_events(env), debounce=debounce, timeout=timeout, socket=sock, notify_cmd=cmd)


def upssched_for(settings: Settings, rules: tuple[DeviceRule, ...]) -> Upssched | None:
    """upssched's parts when a rule has on_battery_max_seconds (else None), or ConfigError
    naming the rule: NUT's upssched and upsmon and the relay (which runs upssched) must be
    there, and upsmon's path fit a shell command (upssched runs CMDSCRIPT through system())."""
    wanting = [r for r in rules if r.thresholds.on_battery_max_seconds is not None]
    if not wanting:
        return None
    where = f"device[{wanting[0].index}].on_battery_max_seconds"
    b = settings.binaries
    if b.upssched is None:
        raise ConfigError(f"{where}: NUT's upssched is not installed (looked in {', '.join(notifycmd.UPSSCHED_DIRS)})")
    if b.upsmon is None or not _NOTIFY_PROGRAM.fullmatch(b.upsmon):
        raise ConfigError(f"{where}: upsmon's path {b.upsmon!r} cannot be upssched's CMDSCRIPT")
    relay = notify_program()
    if not (_NOTIFY_PROGRAM.fullmatch(str(relay)) and relay.is_file() and os.access(relay, os.X_OK)):
        raise ConfigError(f"{where}: the relay {str(relay)!r} that runs upssched is not an executable file")
    pipe, lock = settings.agent_dir / "upssched.pipe", settings.agent_dir / "upssched.lock"
    if len(os.fsencode(pipe)) > SOCKET_PATH_MAX:
        raise ConfigError(f"{where}: upssched's socket path {str(pipe)!r} is longer than {SOCKET_PATH_MAX} bytes")
    return Upssched(relay=str(relay), upsmon=b.upsmon, pipe=str(pipe), lock=str(lock))


def notify_program() -> Path:
    """The relay's console script (outputs/relay.py): pip installs it beside the agent's own
    `nut-reconcile`, in this Python's scripts dir (a venv's bin/; /usr/local/bin in the image)."""
    return Path(sysconfig.get_path("scripts")) / notifycmd.PROGRAM


# What upsmon.conf's NOTIFYCMD may be: an absolute path and nothing the shell or NUT's
# parser reads as more than one word. NUT 2.8.4 runs it through the shell, 2.8.6 execs it.
_NOTIFY_PROGRAM = re.compile(r"/[A-Za-z0-9/._+-]{1,400}")


def check_notify_program(path: Path) -> str:
    """upsmon's NOTIFYCMD, or SettingsError naming NOTIFY_URLS (what turned it on) and the path."""
    text = str(path)
    if not _NOTIFY_PROGRAM.fullmatch(text):
        raise SettingsError(
            "NOTIFY_URLS",
            f"upsmon's NOTIFYCMD would be {text!r}: it must be an absolute path of A-Z a-z 0-9 / . _ + - only "
            "(NUT 2.8.4 runs it through the shell, NUT 2.8.6 as one program path): install the agent where "
            "its path has no spaces or shell characters",
        )
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise SettingsError(
            "NOTIFY_URLS",
            f"upsmon's NOTIFYCMD {text!r} is not an executable file: install the package (pip install .), "
            f"which puts {notifycmd.PROGRAM} beside nut-reconcile",
        )
    return text


_TOPIC = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_/-]{0,63}")


def _topic(env: Mapping[str, str], var: str, default: str) -> str:
    raw = env.get(var, "").strip() or default
    # Why this narrow set: + and # are MQTT wildcards, and Home Assistant's discovery
    # prefix is one level of [A-Za-z0-9_-]; a slash at either end makes an empty level.
    if not _TOPIC.fullmatch(raw) or raw.endswith("/") or "//" in raw:
        raise SettingsError(var, f"{raw!r} is not a topic prefix (letters, digits, _ - and inner /)")
    return raw


def broker_url(text: str) -> urllib.parse.SplitResult:
    """An MQTT broker URL: mqtt:// or mqtts://, a host, maybe user, password and port, no path
    or query. The one check for the agent's MQTT_URL and the fleet's host data mqtt_url, so
    what one takes the other takes too. Raises ValueError; its message never shows the URL (it
    may hold a password), at most its scheme."""
    bad = "not a broker URL such as mqtt://user:password@broker:1883 (or mqtts:// for TLS)"
    # Why reject white space inside: urlsplit() silently drops tabs and newlines, so
    # "mqtt://broker\n:1883" would reach a broker other than the one written.
    if not text.isprintable() or any(ch.isspace() for ch in text):
        raise ValueError(bad)
    try:
        url = urllib.parse.urlsplit(text)
        url.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise ValueError(bad) from None
    if url.scheme not in ("mqtt", "mqtts"):
        # The scheme alone may be shown, when it is one (before "://"), never other text.
        shown = f", not {url.scheme!r}" if re.fullmatch(URL_SCHEME, url.scheme) and "://" in text else ""
        raise ValueError(f"the scheme must be mqtt or mqtts{shown}")
    # A fragment too: the client would drop it, so the URL would not be the one written.
    if not url.hostname or url.path not in ("", "/") or url.query or url.fragment:
        raise ValueError(bad)
    return url


def _mqtt(env: Mapping[str, str]) -> Mqtt | None:
    found = _secret_value(env, "MQTT_URL", "mqtt_url")
    if found is None:
        return None
    text, source = found
    try:
        url = broker_url(text)
    except ValueError as exc:
        raise SettingsError(source, str(exc)) from None
    tls = url.scheme == "mqtts"
    return Mqtt(
        host=url.hostname or "",  # never empty: broker_url() checked it
        port=url.port or (8883 if tls else 1883),
        tls=tls,
        username=urllib.parse.unquote(url.username) if url.username else None,
        password=urllib.parse.unquote(url.password) if url.password else None,
        prefix=_topic(env, "MQTT_PREFIX", "ups-nut-smart"),
        discovery_prefix=_topic(env, "MQTT_DISCOVERY_PREFIX", "homeassistant"),
        allow_deep_tests=_bool(env, "MQTT_ALLOW_DEEP_TESTS"),
    )


def _host_name(env: Mapping[str, str]) -> str:
    raw = env.get("HOST_NAME", "").strip()
    if not raw:
        return socket.gethostname().split(".")[0] or "localhost"
    if not _HOST.fullmatch(raw):
        raise SettingsError("HOST_NAME", f"{raw!r} is not a host name (letters, digits, . _ -; at most 63)")
    return raw


def load(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    ups_name = env.get("UPS_NAME", "") or "my-ups"
    try:
        validate_name(ups_name, "UPS_NAME")
    except NutSyntaxError as exc:
        raise SettingsError("UPS_NAME", str(exc).split(": ", 1)[-1]) from None

    config_raw = env.get("RECONCILE_CONFIG", "")
    config_file: Path | None
    if config_raw:
        config_file = _path(env, "RECONCILE_CONFIG", "")
        if not config_file.is_file():
            raise SettingsError("RECONCILE_CONFIG", f"{config_raw!r} does not exist or is not a file")
    else:
        config_file = Path(DEFAULT_CONFIG) if os.path.isfile(DEFAULT_CONFIG) else None

    default_conf = "/opt/nut/etc" if os.path.isdir("/opt/nut/etc") else "/etc/nut"
    log_raw = env.get("LOG_FILE")
    log_file = None if log_raw == "" else _path(env, "LOG_FILE", "/var/log/nut/hotplug.log")

    simulate = _bool(env, "SIMULATE")
    statepath = _path(env, "NUT_STATEPATH", notifycmd.DEFAULT_STATEPATH)
    agent_dir = _path(env, "RECONCILE_STATE", DEFAULT_STATE)
    if agent_dir == statepath or statepath in agent_dir.parents:
        raise SettingsError(
            "RECONCILE_STATE", f"{str(agent_dir)!r} must not be inside NUT_STATEPATH (group nut writes there)"
        )
    usb_root = _path(env, "USB_SYSFS_ROOT", "/sys/bus/usb/devices")
    if simulate:
        # The demo plays the bus itself, under the agent's dir (see reconcile/simulate.py).
        usb_root = agent_dir / "simulate" / "sys"

    settle_time = _number(env, "SETTLE_TIME", 2.0, 0, 600)
    return Settings(
        scan_interval=_number(env, "SCAN_INTERVAL", 2.0, 0.2, 3600),
        settle_time=settle_time,
        uevents=_bool(env, "UEVENTS", True),
        uevent_subsystem=_subsystem(env),
        # Why 4 s and not longer: the pass also records each UPS's status, and a UPS that
        # vanishes on battery is held by what the last pass saw (decide/power.py). upsmon
        # polls every 5 s (POLLFREQ), so the agent must look at least as often, or a UPS
        # that went on battery and was unplugged between two passes would be let go.
        rescan_interval=_number(env, "RESCAN_INTERVAL", 4.0, 0.2, 3600),
        settle_min=_number(env, "SETTLE_MIN", 0.5, 0.05, 60),
        debug=_bool(env, "DEBUG"),
        tz=_tz(env),
        ups_name=ups_name,
        usb_sysfs_root=usb_root,
        config_file=config_file,
        confpath=_path(env, "NUT_CONFPATH", default_conf),
        statepath=statepath,
        agent_dir=agent_dir,
        log_file=log_file,
        log_file_max=_whole(env, "LOG_FILE_MAX", LOG_FILE_MAX, 65536, 1 << 30, "bytes"),
        run_user=_user(env, "NUT_USER", "root"),
        upsd_user=_upsd_user(env),
        command_timeout=_number(env, "NUT_TIMEOUT", 15.0, 1, 300),
        stale_restart_after=_number(env, "STALE_RESTART_AFTER", 30.0, 1, 86400),
        names_forget_days=_whole(env, "NAMES_FORGET_DAYS", 30, 0, 36500, "days"),
        simulate=simulate,
        simulate_cycle=_number(env, "SIMULATE_CYCLE", 120.0, 10, 86400),
        password_files=_password_files(env),
        metrics_listen=_address(env, "METRICS_LISTEN"),
        host_name=_host_name(env),
        notify=_notify(env, settle_time, statepath),
        mqtt=_mqtt(env),
        binaries=Binaries(
            upsd=_binary(env, "NUT_UPSD", "upsd"),
            upsmon=_binary(env, "NUT_UPSMON", "upsmon"),
            upsdrvctl=_binary(env, "NUT_UPSDRVCTL", "upsdrvctl"),
            upsc=_binary(env, "NUT_UPSC", "upsc"),
            nut_scanner=_binary(env, "NUT_SCANNER", "nut-scanner"),
            usb_rules=_rules(env),
            upssched=notifycmd.find_upssched(env),
        ),
    )
