"""Settings from the environment, validated before anything touches the disk.

A bad value raises SettingsError naming the variable; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconcile.nutsyntax import NutSyntaxError, validate_name
from reconcile.userconfig import ConfigError, address

DEFAULT_CONFIG = "/etc/nut-reconcile/config.toml"
DEFAULT_STATE = "/var/lib/nut-reconcile"
LOG_FILE_MAX = 1 << 20  # bytes; one rotated copy is kept beside it

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


@dataclass(frozen=True)
class Settings:
    scan_interval: float
    settle_time: float
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
    binaries: Binaries
    # For the fault tests: SIGKILL the agent itself just before this step of a plan (1-based).

    @property
    def legacy_agent_dir(self) -> Path:
        """Where earlier versions kept names and secrets: inside NUT's state dir, which
        group nut can write. Moved to agent_dir once, then removed."""
        return self.statepath / "reconcile"

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


def _bool(env: Mapping[str, str], var: str) -> bool:
    raw = env.get(var, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
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
    statepath = _path(env, "NUT_STATEPATH", "/var/run/nut")
    agent_dir = _path(env, "RECONCILE_STATE", DEFAULT_STATE)
    if agent_dir == statepath or statepath in agent_dir.parents:
        raise SettingsError(
            "RECONCILE_STATE", f"{str(agent_dir)!r} must not be inside NUT_STATEPATH (group nut writes there)"
        )
    usb_root = _path(env, "USB_SYSFS_ROOT", "/sys/bus/usb/devices")
    if simulate:
        # The demo plays the bus itself, under the agent's dir (see reconcile/simulate.py).
        usb_root = agent_dir / "simulate" / "sys"

    return Settings(
        scan_interval=_number(env, "SCAN_INTERVAL", 2.0, 0.2, 3600),
        settle_time=_number(env, "SETTLE_TIME", 2.0, 0, 600),
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
        binaries=Binaries(
            upsd=_binary(env, "NUT_UPSD", "upsd"),
            upsmon=_binary(env, "NUT_UPSMON", "upsmon"),
            upsdrvctl=_binary(env, "NUT_UPSDRVCTL", "upsdrvctl"),
            upsc=_binary(env, "NUT_UPSC", "upsc"),
            nut_scanner=_binary(env, "NUT_SCANNER", "nut-scanner"),
            usb_rules=_rules(env),
        ),
    )
