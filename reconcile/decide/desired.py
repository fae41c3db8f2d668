"""The desired NUT configuration, from the UPSes found, their names and the settings."""

from __future__ import annotations

from dataclasses import dataclass

from reconcile.model import NutConfig, Ups, UpsSection, User
from reconcile.nutsyntax import ere_escape, printable_ascii
from reconcile.userconfig import UserConfig, reachable

DESC_MAX = 120
LOCAL_UPSMON_USER = "upsmon"
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL


class DesiredError(ValueError):
    pass


@dataclass(frozen=True)
class Secrets:
    admin: str
    monuser: str
    upsmon: str


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
        # the driver from finding the UPS again, so they are never pinned.
        options += [("port", "auto"), ("vendorid", usb.vendorid), ("productid", usb.productid)]
        if usb.serial and usb.serial_raw_ok:
            # NUT compiles match values as anchored extended regexes: escape the literal.
            options.append(("serial", ere_escape(usb.serial)))
    for key, value in ups.rule.options if ups.rule else ():
        if value is True:
            options.append((key, None))
        elif value is not False:
            options = [(k, v) for k, v in options if k != key] + [(key, str(value))]
    options.append(("desc", _desc(ups)))
    comment = f"USB {usb.vidpid} at {usb.address} port {usb.port}; driver from {ups.driver_from}"
    return UpsSection(name=name, driver=ups.driver, options=tuple(options), comment=comment)


def placeholder(name: str) -> UpsSection:
    return UpsSection(
        name=name,
        driver="usbhid-ups",
        options=(("port", "auto"), ("desc", "No UPS attached")),
        comment="no UPS attached: nut-reconcile starts no driver, so clients read 'Driver not connected'",
    )


def build(
    upses: list[Ups],
    names: dict[str, str],
    primary_name: str,
    user: UserConfig,
    secrets: Secrets,
    statepath: str,
    run_user: str,
) -> NutConfig:
    sections = [section(u, names[u.usb.fingerprint]) for u in upses]
    placeholders: tuple[str, ...] = ()
    if primary_name not in {s.name for s in sections}:
        sections.append(placeholder(primary_name))
        placeholders = (primary_name,)
    sections.sort(key=lambda s: s.name)
    for s in sections:
        sock = f"{statepath}/{s.driver}-{s.name}"
        if len(sock.encode()) > SOCKET_PATH_MAX:
            raise DesiredError(f"NUT_STATEPATH: driver socket path {sock!r} is longer than {SOCKET_PATH_MAX} bytes")
    host, port = user.listen[0]
    host = reachable(host)
    monitor_host = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return NutConfig(
        sections=tuple(sections),
        listen=user.listen,
        users=(
            User("admin", secrets.admin, "admin"),
            User("monuser", secrets.monuser, "upsmon-secondary"),
            User(LOCAL_UPSMON_USER, secrets.upsmon, "upsmon-primary"),
        ),
        # Never watch a placeholder: upsmon would count a UPS it cannot reach, last seen
        # on battery, as critical and could shut the host down.
        monitors=tuple(s.name for s in sections if s.name not in placeholders),
        monitor_host=monitor_host,
        upsmon_enabled=user.upsmon_enabled,
        shutdown_cmd=user.shutdown_cmd,
        statepath=statepath,
        run_user=run_user,
        maxage=user.maxage,
        placeholders=placeholders,
    )
