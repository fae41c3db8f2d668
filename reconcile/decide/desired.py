"""The desired NUT configuration, from the UPSes found, their names and the settings.

A UPS that cannot be served (its driver's socket path would be too long, a value NUT
cannot be given) is left out with a problem saying why; the others are still served.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from reconcile.decide.render import check_section
from reconcile.model import Monitor, NutConfig, Secrets, Thresholds, Timer, Ups, UpsSection, User
from reconcile.nutsyntax import NutSyntaxError, ere_escape, printable_ascii
from reconcile.userconfig import SYNOLOGY_PASSWORD, UserConfig, reachable

DESC_MAX = 120
LOCAL_UPSMON_USER = "upsmon"
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL


@dataclass(frozen=True)
class Problem:
    ups: str
    reason: str

    def __str__(self) -> str:
        return f"{self.ups}: {self.reason}"


def _desc(ups: Ups) -> str:
    if ups.rule is not None and ups.rule.desc:
        return ups.rule.desc
    usb = ups.usb
    text = " ".join(p for p in (usb.manufacturer, usb.product) if p) or f"USB UPS {usb.vidpid}"
    if usb.serial:
        text += f" (serial {usb.serial})"
    return printable_ascii(text)[:DESC_MAX]


def section(ups: Ups, name: str) -> UpsSection:
    usb = ups.usb
    options: list[tuple[str, str | None]] = []
    if ups.usb_driver:
        # Match by identity only. bus/device/busport change on replug and would stop
        # the driver from finding the UPS again, so they are never pinned...
        options += [("port", "auto"), ("vendorid", usb.vendorid), ("productid", usb.productid)]
        if usb.serial and usb.serial_raw_ok:
            # NUT compiles match values as anchored extended regexes: escape the literal.
            options.append(("serial", ere_escape(usb.serial)))
        if ups.twin:
            # ...except for twins (same VID:PID:serial), which nothing else tells apart.
            # A replug changes the address, so the section changes and the driver restarts.
            options += [("bus", f"{usb.busnum:03d}"), ("device", f"{usb.devnum:03d}")]
    for key, value in ups.rule.options if ups.rule else ():
        if value is True:
            options = [(k, v) for k, v in options if k != key] + [(key, None)]
        elif value is not False:
            options = [(k, v) for k, v in options if k != key] + [(key, str(value))]
    options += low_battery_options(ups.rule.thresholds if ups.rule else Thresholds())
    options.append(("desc", _desc(ups)))
    comment = f"USB {usb.vidpid} at {usb.address} port {usb.port}; driver from {ups.driver_from}"
    return UpsSection(name=name, driver=ups.driver, options=tuple(options), comment=comment)


def low_battery_options(t: Thresholds) -> list[tuple[str, str | None]]:
    """The owner's own low battery, as NUT documents it (ups.conf(5), usbhid-ups(8)): with
    `ignorelb` the driver drops the UPS's own LB and raises LB itself while battery.charge
    is below battery.charge.low or battery.runtime below battery.runtime.low; `override.*`
    pins those two at our values (the UPS's own can no longer change them). Any driver
    built on NUT's common code does this (drivers/dstate.c), dummy-ups too. A threshold
    left unset keeps the UPS's own low value, if it reports one."""
    if not t.sets_lb:
        return []
    options: list[tuple[str, str | None]] = [("ignorelb", None)]
    if t.low_battery_percent is not None:
        options.append(("override.battery.charge.low", str(t.low_battery_percent)))
    if t.low_runtime_seconds is not None:
        options.append(("override.battery.runtime.low", str(t.low_runtime_seconds)))
    return options


def placeholder(name: str) -> UpsSection:
    return UpsSection(
        name=name,
        driver="usbhid-ups",
        options=(("port", "auto"), ("desc", "No UPS attached")),
        comment="no UPS attached: clients read 'Driver not connected'",
        no_driver="no UPS attached",
    )


def _servable(s: UpsSection, statepath: str) -> str | None:
    """Why NUT could not serve this section, or None."""
    sock = f"{statepath}/{s.driver}-{s.name}"
    if len(sock.encode()) > SOCKET_PATH_MAX:
        return f"driver socket path {sock!r} is longer than {SOCKET_PATH_MAX} bytes (shorten NUT_STATEPATH or the name)"
    try:
        check_section(s)
    except NutSyntaxError as exc:
        return str(exc)
    return None


def build(
    attached: list[Ups],
    held: list[Ups],
    names: dict[str, str],
    primary_name: str,
    user: UserConfig,
    secrets: Secrets,
    statepath: str,
    run_user: str,
) -> tuple[NutConfig, tuple[Problem, ...]]:
    """`held`: UPSes gone from the bus that stay watched (see decide/power.py): their
    section stays, with no driver, and so does their MONITOR line."""
    problems: list[Problem] = []
    sections: list[UpsSection] = []
    power: dict[str, int] = {}
    timers: list[Timer] = []
    for ups, is_held in [(u, False) for u in attached] + [(u, True) for u in held]:
        s = section(ups, names[ups.key])
        why = _servable(s, statepath)
        if why is not None:
            problems.append(Problem(s.name, why))
            continue
        if is_held:
            # Why the section says so: a pass that cannot rewrite ups.conf (read-only, full
            # disk) still knows from the file which sections get no driver.
            s = dataclasses.replace(s, no_driver="vanished while on battery: watched until it returns")
        sections.append(s)
        power[s.name] = 0 if ups.rule is not None and not ups.rule.powers_host else 1
        limit = ups.rule.thresholds.on_battery_max_seconds if ups.rule else None
        if limit is not None:
            timers.append(Timer(s.name, limit))
    if timers and user.upssched is None:
        # Why a problem, not silence: the owner asked for it (the agent sets upssched up
        # whenever a rule has on_battery_max_seconds: this is a caller that did not).
        problems += [Problem(t.ups, "on_battery_max_seconds not enforced: upssched is not set up") for t in timers]
    # A placeholder for every name a client is told to watch that no UPS has now: UPS_NAME,
    # the UPSes that power this host (host_ups) and each expected secondary's. Why the
    # others too: a pinned name unplugged (pi-cabin's cabin-ups before it is plugged in, or
    # during a USB drop) would otherwise be "Unknown UPS", and upsd refuses a login to an
    # unknown UPS, so the Pi's upsmon could not log in; with a placeholder it reads
    # "Driver not connected", is logged in, and sees the UPS as soon as its driver starts.
    wanted = (primary_name, *user.host_ups, *(s.ups for s in user.shutdown_secondaries))
    sections += [placeholder(name) for name in dict.fromkeys(wanted) if name not in power]
    sections.sort(key=lambda s: s.name)
    host, port = user.listen[0]
    host = reachable(host)
    monitor_host = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # synology_compat: DSM logs in as monuser with its fixed password (userconfig.py).
    monuser = SYNOLOGY_PASSWORD if user.synology_compat else secrets.monuser
    users = [
        User("monuser", monuser, "upsmon-secondary"),
        User(LOCAL_UPSMON_USER, secrets.upsmon, "upsmon-primary"),
        *(User(name, password, "upsmon-secondary") for name, password in secrets.secondaries),
    ]
    if secrets.admin is not None:
        # Only when asked for: admin can switch the UPS's load off (instant commands).
        users.insert(0, User("admin", secrets.admin, "admin"))
    config = NutConfig(
        sections=tuple(sections),
        listen=user.listen,
        users=tuple(users),
        # Never watch a placeholder: there is no UPS behind it.
        monitors=tuple(Monitor(s.name, power[s.name]) for s in sections if s.name in power),
        monitor_host=monitor_host,
        upsmon_enabled=user.upsmon_enabled,
        shutdown_cmd=user.shutdown_cmd,
        statepath=statepath,
        run_user=run_user,
        maxage=user.maxage,
        maxconn=user.maxconn,
        pollfreq=user.pollfreq,
        deadtime=user.deadtime,
        notify_cmd=user.notify_cmd,
        upssched=user.upssched,
        timers=tuple(sorted(timers, key=lambda t: t.ups)),
    )
    return config, tuple(problems)
