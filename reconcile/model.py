"""Plain data passed between observe, decide and act. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from reconcile.nutsyntax import NOTIFY_TYPES


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
class Thresholds:
    """When a UPS's owner wants this host down, beyond NUT's own low battery (LB): a
    [[device]] rule's low_battery_percent, low_runtime_seconds and on_battery_max_seconds.
    The first two reach the driver (ignorelb with override.battery.charge.low /
    override.battery.runtime.low: the driver raises LB itself), the last upssched (a timer
    from ONBATT, cancelled at ONLINE, that runs `upsmon -c fsd`)."""

    low_battery_percent: int | None = None
    low_runtime_seconds: int | None = None
    on_battery_max_seconds: int | None = None

    @property
    def sets_lb(self) -> bool:
        """Whether the driver decides LB from our values (ignorelb)."""
        return self.low_battery_percent is not None or self.low_runtime_seconds is not None

    def describe(self) -> str:
        """e.g. "shuts down at 50 % / at 300 s of runtime left / after 600 s on battery"; "" when none is set."""
        parts = [
            *([f"at {self.low_battery_percent} %"] if self.low_battery_percent is not None else []),
            *([f"at {self.low_runtime_seconds} s of runtime left"] if self.low_runtime_seconds is not None else []),
            *([f"after {self.on_battery_max_seconds} s on battery"] if self.on_battery_max_seconds is not None else []),
        ]
        return "shuts down " + " / ".join(parts) if parts else ""

    def as_dict(self) -> dict[str, int | None]:
        return {
            "low_battery_percent": self.low_battery_percent,
            "low_runtime_seconds": self.low_runtime_seconds,
            "on_battery_max_seconds": self.on_battery_max_seconds,
        }


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
    powers_host: bool = True  # False: watched for the network, but its low battery does not shut this host down
    # The power cycle after a forced shutdown (decide/forced.py): None, as powers_host says
    # (a UPS of this host: yes); True: also for powers_host = false; False: never.
    power_cycle: bool | None = None
    thresholds: Thresholds = Thresholds()  # low_battery_percent, low_runtime_seconds, on_battery_max_seconds

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
    # Set when another attached device reports the same VID:PID:serial: told apart by port.
    twin: bool = False

    @property
    def key(self) -> str:
        """The identity names are kept by: the fingerprint, plus the port for twins."""
        return f"{self.usb.fingerprint}:port={self.usb.port}" if self.twin and self.usb.serial else self.usb.fingerprint

    @property
    def powers_host(self) -> bool:
        """Whether this host runs on it (a [[device]] rule may say it does not)."""
        return self.rule is None or self.rule.powers_host


@dataclass(frozen=True)
class UpsSection:
    """One [name] section of ups.conf, ready to render."""

    name: str
    driver: str
    options: tuple[tuple[str, str | None], ...]  # None for a bare flag
    comment: str  # which device it was made for: changes on replug, so the driver restarts
    no_driver: str | None = None  # why the section is served with no driver (written into ups.conf)


@dataclass(frozen=True)
class User:
    name: str
    password: str
    role: Literal["admin", "upsmon-primary", "upsmon-secondary"]


@dataclass(frozen=True)
class Secrets:
    admin: str | None  # None: no admin user (it exists only when asked for)
    monuser: str
    upsmon: str
    secondaries: tuple[tuple[str, str], ...] = ()  # (user, password) from the config: network upsmons

    def values(self) -> tuple[str, ...]:
        given = tuple(password for _, password in self.secondaries)
        return tuple(s for s in (self.admin, self.monuser, self.upsmon, *given) if s)


@dataclass(frozen=True)
class Monitor:
    """A MONITOR line of upsmon.conf."""

    name: str
    power: int  # NUT's power value: how many of this host's power supplies the UPS feeds (0 or 1)


@dataclass(frozen=True)
class Upssched:
    """Where upssched's parts are, for on_battery_max_seconds (set by the agent from its
    settings, never from the config file)."""

    relay: str  # upsmon's NOTIFYCMD: the relay (outputs/relay.py), which runs upssched at ONBATT/ONLINE
    upsmon: str  # the upsmon program: CMDSCRIPT is `<upsmon> -c fsd`
    pipe: str  # PIPEFN and LOCKFN: in the agent's own dir (root only); why: upssched.conf.j2
    lock: str


@dataclass(frozen=True)
class Timer:
    """An upssched timer: `ups` on battery for `seconds` runs `upsmon -c fsd`."""

    ups: str
    seconds: int

    @property
    def name(self) -> str:
        return f"onbatt-{self.ups}"


# Only these two reach upssched: its timer starts at ONBATT and is cancelled at ONLINE.
UPSSCHED_NOTICES = ("ONBATT", "ONLINE")


# upsmon's notices written to NOTIFYCMD when notifications are on: each one NUT 2.8.0
# (Debian's) knows too. The agent chooses which it sends (NOTIFY_EVENTS).
UPSMON_NOTICES = ("ONBATT", "ONLINE", "LOWBATT", "FSD", "COMMBAD", "COMMOK", "SHUTDOWN", "REPLBATT", "NOCOMM")


@dataclass(frozen=True)
class NutConfig:
    """Everything the five files are rendered from."""

    sections: tuple[UpsSection, ...]
    listen: tuple[tuple[str, int], ...]
    users: tuple[User, ...]
    monitors: tuple[Monitor, ...]
    monitor_host: str  # host:port upsmon uses to reach upsd
    upsmon_enabled: bool
    shutdown_cmd: str
    statepath: str
    run_user: str
    maxage: int
    maxconn: int  # upsd's MAXCONN, already fitted to the open-files limit (decide/limits.py)
    pollfreq: int = 5
    deadtime: int = 15
    notify_cmd: str | None = None  # upsmon's NOTIFYCMD (notifications on), else none written
    upssched: Upssched | None = None  # upssched's parts (the agent's), used when there is a timer
    timers: tuple[Timer, ...] = ()  # one per UPS with on_battery_max_seconds

    @property
    def driverless(self) -> tuple[str, ...]:
        """Sections served with no driver started ("Driver not connected"): a placeholder
        for each name clients watch that no UPS has now (the primary name, host_ups, each
        expected secondary's UPS), and a UPS held after it vanished on battery."""
        return tuple(s.name for s in self.sections if s.no_driver)

    notices = UPSMON_NOTICES

    @property
    def sched(self) -> Upssched | None:
        """upssched's parts when it has a timer to run, else None."""
        return self.upssched if self.timers else None

    @property
    def notify_program(self) -> str | None:
        """upsmon's NOTIFYCMD: the relay, when notifications are on or upssched has a timer.
        Why the relay for upssched too: NUT takes one NOTIFYCMD, and the relay runs upssched."""
        sched = self.sched
        return self.notify_cmd or (sched.relay if sched else None)

    @property
    def notify_flags(self) -> tuple[tuple[str, bool], ...]:
        """(notify type, EXEC) for a NOTIFYFLAG line each: every type NUT knows, each with
        SYSLOG and never WALL (NUT's default when a type has no line: nutsyntax.NOTIFY_TYPES),
        and EXEC only for our notices while notifications are on, and for ONBATT and ONLINE
        while upssched has a timer. Why only those: their text is NUT's own with our UPS's
        name; ALARM's and OTHER's carry what the UPS server sent, which NUT 2.8.3-2.8.5
        hand to a shell (CVE-2026-54161)."""
        sched = self.sched is not None
        return tuple(
            (t, (self.notify_cmd is not None and t in self.notices) or (sched and t in UPSSCHED_NOTICES))
            for t in NOTIFY_TYPES
        )

    @property
    def minsupplies(self) -> int:
        """This host needs every UPS that feeds it: any one going critical shuts it down.
        0 when none is watched, so upsmon still starts and reloads (NUT refuses a total
        power value below MINSUPPLIES)."""
        return sum(m.power for m in self.monitors)


@dataclass(frozen=True)
class FileState:
    name: str
    content: str | None  # None: absent
    managed: bool  # carries our header (or is absent)
    writable: bool
    mtime: float | None = None  # wall clock; None when absent


# --- processes -------------------------------------------------------------------


@dataclass(frozen=True)
class ProcId:
    """A process, told apart from a later one with the same PID by its start time."""

    pid: int
    start: int  # /proc/<pid>/stat starttime: clock ticks after boot


@dataclass(frozen=True)
class ProcFact:
    """What /proc says about the process a PID file (or our record) names."""

    key: str  # "upsd", "upsmon" or "driver:<ups>"
    program: str  # the command name it must have
    proc: ProcId
    source: str  # the PID file (or "record") it was found through
    marked: bool | None  # its environment points at our NUT dirs; None: unreadable


@dataclass(frozen=True)
class Owned:
    """A process the agent started (or adopted), and the configuration it runs with."""

    program: str
    pid: int | None  # None: being started, not confirmed yet
    start: int  # its start time; while pending, the earliest start time it can have
    loaded: tuple[tuple[str, str], ...] = ()  # (file name or "section", sha256) as it last (re)loaded

    @property
    def proc(self) -> ProcId | None:
        return None if self.pid is None else ProcId(self.pid, self.start)


Ledger = dict[str, Owned]  # "upsd", "upsmon", "driver:<ups>" -> what the agent owns


@dataclass(frozen=True)
class DriverProc:
    ups: str
    driver: str
    proc: ProcId
    loaded: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Daemon:
    proc: ProcId
    loaded: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Stranger:
    """A live process at one of our PID files that the agent did not start: never signalled."""

    key: str
    program: str
    pid: int
    source: str


@dataclass(frozen=True)
class Served:
    """What upsd answers for one UPS."""

    state: str  # "ok", or NUT's error: DRIVER-NOT-CONNECTED, DATA-STALE, UNKNOWN-UPS, ...
    status: str | None  # ups.status when ok, e.g. "OL", "OB LB", "FSD OB LB"

    @property
    def flags(self) -> frozenset[str]:
        return frozenset((self.status or "").split())


# The power cycle after a forced shutdown: the instant command, and the UPS's delays set
# before it. Why here: decide/forced.py decides and checks them, act/powercycle.py sends
# them, and act/ never imports decide/.
POWER_CYCLE_COMMAND = "shutdown.return"
START_DELAY, OFF_DELAY = "ups.delay.start", "ups.delay.shutdown"


@dataclass(frozen=True)
class Verdict:
    """The agent's health in one line: "healthy: ..." or "unhealthy: ..." (decided in
    decide/health.py, recorded by act/verdict.py). Whoever reads it back (the image's
    HEALTHCHECK, docker/nut-health.sh) goes by that first word, so `text` starts with it;
    `healthy` says the same."""

    healthy: bool
    text: str


@dataclass(frozen=True)
class ActualState:
    files: dict[str, FileState]
    drivers: dict[str, DriverProc]  # ours, running, by UPS name
    upsd: Daemon | None  # ours and running
    upsmon: Daemon | None
    served: dict[str, Served] | None = None  # None: upsd did not answer
    strangers: tuple[Stranger, ...] = ()


# --- the plan: one typed value per kind of step --------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Step:
    kind: ClassVar[str]
    reason: str
    needs: frozenset[int] = frozenset()  # indices of earlier steps that must have succeeded


@dataclass(frozen=True, kw_only=True)
class WriteFile(_Step):
    kind = "write"
    name: str
    content: str
    old: str | None


@dataclass(frozen=True, kw_only=True)
class StartDriver(_Step):
    kind = "start_driver"
    ups: str
    driver: str
    loaded: tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class StopDriver(_Step):
    kind = "stop_driver"
    ups: str
    driver: str
    proc: ProcId


@dataclass(frozen=True, kw_only=True)
class StartUpsd(_Step):
    kind = "start_upsd"
    loaded: tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class StopUpsd(_Step):
    kind = "stop_upsd"
    proc: ProcId


@dataclass(frozen=True, kw_only=True)
class ReloadUpsd(_Step):
    kind = "reload_upsd"
    proc: ProcId
    loaded: tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class StartUpsmon(_Step):
    kind = "start_upsmon"
    loaded: tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class ReloadUpsmon(_Step):
    kind = "reload_upsmon"
    proc: ProcId
    loaded: tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class StopUpsmon(_Step):
    kind = "stop_upsmon"
    proc: ProcId


Action = StartDriver | StopDriver | StartUpsd | StopUpsd | ReloadUpsd | StartUpsmon | ReloadUpsmon | StopUpsmon
Step = WriteFile | Action


def start_key(step: Step) -> str | None:
    """The process a start step starts, as the ledger and backoff name it: "driver:<ups>",
    "upsd", "upsmon"; None for any other step."""
    if isinstance(step, StartDriver):
        return f"driver:{step.ups}"
    if isinstance(step, StartUpsd):
        return "upsd"
    if isinstance(step, StartUpsmon):
        return "upsmon"
    return None


def describe(step: Step) -> str:
    """One line for plans and logs, e.g. 'write ups.conf (update)', 'start driver my-ups (usbhid-ups)'."""
    if isinstance(step, WriteFile):
        return f"write {step.name} ({step.reason})"
    if isinstance(step, StartDriver | StopDriver):
        return f"{step.kind.replace('_', ' ')} {step.ups} ({step.driver})"
    return step.kind.replace("_", " ")


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    blocked: tuple[str, ...] = ()  # what cannot converge: a process that is not ours is in the way

    @property
    def in_sync(self) -> bool:
        return not self.steps

    @property
    def writes(self) -> tuple[WriteFile, ...]:
        return tuple(s for s in self.steps if isinstance(s, WriteFile))
