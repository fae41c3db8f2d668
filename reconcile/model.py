"""Plain data passed between observe, decide and act. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class UsbDevice:
    """One USB device as seen on the bus (sysfs or libusb), never opened."""

    port: str  # sysfs name, e.g. "1-1.2": bus and port chain, stable for a physical port
    vendorid: str  # 4 lowercase hex digits
    productid: str
    busnum: int
    devnum: int  # changes on every (re)enumeration: a replug or USB reset
    serial: str = ""  # printable ASCII only; "" when the device has none
    manufacturer: str = ""
    product: str = ""
    serial_raw_ok: bool = True  # False when the serial had bytes we dropped

    @property
    def vidpid(self) -> str:
        return f"{self.vendorid}:{self.productid}"

    @property
    def fingerprint(self) -> str:
        """Identity across replugs: VID, PID and serial; the port path when there is no serial."""
        if self.serial:
            return f"{self.vidpid}:serial={self.serial}"
        return f"{self.vidpid}:port={self.port}"

    @property
    def address(self) -> str:
        return f"{self.busnum:03d}/{self.devnum:03d}"


@dataclass(frozen=True)
class DeviceRule:
    """A [[device]] table of the user's TOML file."""

    index: int
    vendorid: str | None = None
    productid: str | None = None
    serial: str | None = None
    name: str | None = None
    driver: str | None = None
    options: tuple[tuple[str, str | bool], ...] = ()
    desc: str | None = None
    ignore: bool = False

    def matches(self, dev: UsbDevice) -> bool:
        return (
            (self.vendorid is None or self.vendorid == dev.vendorid)
            and (self.productid is None or self.productid == dev.productid)
            and (self.serial is None or self.serial == dev.serial)
        )


@dataclass(frozen=True)
class Ups:
    """A USB device that was decided to be a UPS, with the driver to serve it."""

    usb: UsbDevice
    driver: str
    driver_from: str  # "rule", "nut-scanner" or "udev-rules": why this driver
    usb_driver: bool  # whether the driver matches USB devices (vendorid=, serial=, ...)
    rule: DeviceRule | None = None


@dataclass(frozen=True)
class UpsSection:
    """One [name] section of ups.conf, ready to render."""

    name: str
    driver: str
    options: tuple[tuple[str, str | None], ...]  # None for a bare flag
    comment: str  # which device it was made for: changes on replug, so the driver restarts


@dataclass(frozen=True)
class User:
    name: str
    password: str
    role: Literal["admin", "upsmon-primary", "upsmon-secondary"]


@dataclass(frozen=True)
class NutConfig:
    """Everything the five files are rendered from."""

    sections: tuple[UpsSection, ...]
    listen: tuple[tuple[str, int], ...]
    users: tuple[User, ...]
    monitors: tuple[str, ...]  # UPS names upsmon watches
    monitor_host: str  # host:port upsmon uses to reach upsd
    upsmon_enabled: bool
    shutdown_cmd: str
    statepath: str
    run_user: str
    maxage: int
    # Sections served with no driver started ("Driver not connected"): the primary
    # name while no UPS is attached, so clients and dashboards still find it.
    placeholders: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileState:
    name: str
    content: str | None  # None: absent
    managed: bool  # carries our header (or is absent)
    writable: bool


@dataclass(frozen=True)
class DriverProc:
    ups: str
    driver: str
    pid: int


@dataclass(frozen=True)
class ActualState:
    files: dict[str, FileState]
    drivers: dict[str, DriverProc]  # running drivers by UPS name
    upsd_pid: int | None  # None: not running
    upsmon_pid: int | None


@dataclass(frozen=True)
class WriteFile:
    name: str
    content: str
    old: str | None
    reason: str


ActionKind = Literal[
    "start_upsd",
    "stop_upsd",
    "reload_upsd",
    "start_upsmon",
    "reload_upsmon",
    "stop_upsmon",
    "start_driver",
    "stop_driver",
]


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    reason: str
    ups: str | None = None
    driver: str | None = None
    pid: int | None = None


Step = WriteFile | Action


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def in_sync(self) -> bool:
        return not self.steps

    @property
    def writes(self) -> tuple[WriteFile, ...]:
        return tuple(s for s in self.steps if isinstance(s, WriteFile))

    @property
    def actions(self) -> tuple[Action, ...]:
        return tuple(s for s in self.steps if isinstance(s, Action))
