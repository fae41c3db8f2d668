"""Prometheus `/metrics` (METRICS_LISTEN, e.g. 0.0.0.0:9199), through prometheus_client.

Two kinds of series, from two sources, neither of them the reconcile core:

- **The UPSes**, read from upsd at a scrape (LIST VAR, on the scrape's own thread and
  connection, with a timeout), at most once per second: the scrapes of that second (two
  Prometheus servers, a dashboard's refresh) share that read. Under DRuggeri's nut_exporter
  names so that its dashboards
  keep working: `network_ups_tools_<variable>` for every numeric variable (dots and dashes
  become underscores), `network_ups_tools_ups_status{flag}` with every flag of
  nut_exporter's default list present (0 when not set), and
  `network_ups_tools_device_info{model, mfr, serial, ...}`. Unlike that exporter, every
  series carries a `ups` label: one scrape serves every UPS. A UPS without fresh data has
  no variables then, and shows as `ups_nut_smart_ups_stale{ups} 1`.
- **The agent's own** (`ups_nut_smart_*`), fed by the typed event stream (events.py): a
  consumer counts plugs, restarts and heals, and each `tick` event gives the pass's
  duration, the UPSes on the bus and the held ones.

A scrape never waits on a reconcile pass, and a pass never waits on a scrape: the
consumer only updates prometheus_client's (thread-safe) values.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reconcile import __version__, events, logfmt
from reconcile.observe import upsd_client

NAMESPACE = "network_ups_tools"
OURS = "ups_nut_smart"
# nut_exporter's --nut.statuses default: each is always present, 0 when the UPS does not set it.
STATUS_FLAGS = (
    "OL",
    "OB",
    "LB",
    "HB",
    "RB",
    "CHRG",
    "DISCHRG",
    "BYPASS",
    "CAL",
    "OFF",
    "OVER",
    "TRIM",
    "BOOST",
    "FSD",
    "SD",
)
DEVICE_LABELS = ("model", "mfr", "serial", "type", "description", "contact", "location", "part", "macaddr")
SCRAPE_TIMEOUT = 3.0  # seconds for upsd's answers during one scrape
READ_EVERY = 1.0  # seconds one upsd read serves every scrape that comes in them
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
HOTPLUG = {"ups.plugged": "plugged", "ups.unplugged": "unplugged", "ups.swapped": "swapped", "ups.renamed": "renamed"}


def metric_name(variable: str) -> str | None:
    """nut_exporter's name for a NUT variable (battery.charge -> network_ups_tools_battery_charge),
    or None when it would not be a valid Prometheus name."""
    name = f"{NAMESPACE}_{variable.replace('.', '_').replace('-', '_')}"
    return name if _NAME.fullmatch(name) else None


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


def ups_samples(ups: str, variables: Mapping[str, str]) -> list[Sample]:
    """What one UPS's variables become (pure): numbers, status flags, device info."""
    out: list[Sample] = []
    for variable, value in sorted(variables.items()):
        if variable == "ups.status":
            continue
        name, numeric = metric_name(variable), upsd_client.number(value)
        if name is not None and numeric is not None:
            out.append(Sample(name, (("ups", ups),), numeric))
    flags = set(variables.get("ups.status", "").split())
    for flag in sorted(flags | set(STATUS_FLAGS)):
        out.append(Sample(f"{NAMESPACE}_ups_status", (("flag", flag), ("ups", ups)), 1.0 if flag in flags else 0.0))
    device = tuple((label, variables.get(f"device.{label}", "")) for label in DEVICE_LABELS)
    out.append(Sample(f"{NAMESPACE}_device_info", (*device, ("ups", ups)), 1.0))
    return out


@dataclass(frozen=True)
class UpsdReading:
    """What one read of upsd gave: NUT's version and each UPS's variables (None: no fresh
    data, or its driver not connected); answered False when upsd did not answer."""

    answered: bool
    nut_version: str = ""
    upses: tuple[tuple[str, Mapping[str, str] | None], ...] = ()


def read_upsd(host: str, port: int) -> UpsdReading:
    """One read of upsd: a connection, VER, LIST UPS and each UPS's LIST VAR."""
    upses: list[tuple[str, Mapping[str, str] | None]] = []
    try:
        with upsd_client.Connection(host, port, timeout=SCRAPE_TIMEOUT) as conn:
            nut_version = upsd_client.version(conn)
            for ups in upsd_client.ups_names(conn):
                try:
                    upses.append((ups, upsd_client.variables(conn, ups)))
                except upsd_client.UpsdError:
                    upses.append((ups, None))  # data stale, or its driver not connected
    except upsd_client.UpsdError as exc:
        logfmt.debug("metrics.upsd", error=str(exc))
        return UpsdReading(answered=False)
    return UpsdReading(True, nut_version, tuple(upses))


class UpsdCollector(Collector):
    """Reads upsd at scrape time: the UPS series above, whether upsd answered, each UPS's
    data freshness and NUT's driver.state, and the build info (with upsd's version).

    One read serves every scrape within READ_EVERY seconds of it (by `clock`, monotonic;
    the tests give their own), one that failed too: upsd is not asked more often however
    many scrape, and scrapes that come at once wait for the one read under way."""

    def __init__(self, host: str, port: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.host, self.port, self.clock = host, port, clock
        self.lock = threading.Lock()  # prometheus_client serves each scrape on a thread of its own
        self.last: tuple[float, UpsdReading] | None = None

    def reading(self) -> UpsdReading:
        with self.lock:
            now = self.clock()
            if self.last is not None and 0 <= now - self.last[0] < READ_EVERY:
                return self.last[1]
            found = read_upsd(self.host, self.port)
            # Why the time before the read: the reads start at most once per READ_EVERY,
            # however long each takes.
            self.last = (now, found)
            return found

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{OURS}_upsd_up", "1 when upsd answered this scrape")
        stale = GaugeMetricFamily(f"{OURS}_ups_stale", "1 when upsd has no fresh data for the UPS", labels=["ups"])
        state = GaugeMetricFamily(
            f"{OURS}_driver_state",
            "NUT's driver.state of the UPS's driver (1 for the current one)",
            labels=["ups", "state"],
        )
        families: dict[str, GaugeMetricFamily] = {}
        found = self.reading()
        for ups, variables in found.upses:
            stale.add_metric([ups], 1.0 if variables is None else 0.0)
            if variables is None:
                continue
            if "driver.state" in variables:
                state.add_metric([ups, variables["driver.state"]], 1.0)
            for sample in ups_samples(ups, variables):
                family = families.get(sample.name)
                if family is None:
                    labels = [k for k, _ in sample.labels]
                    family = families[sample.name] = GaugeMetricFamily(
                        sample.name, f"NUT variable, as upsd serves it ({sample.name})", labels=labels
                    )
                family.add_metric([v for _, v in sample.labels], sample.value)
        up.add_metric([], 1.0 if found.answered else 0.0)
        info = GaugeMetricFamily(
            f"{OURS}_build_info", "The agent's and NUT's versions", labels=["version", "nut_version"]
        )
        info.add_metric([__version__, found.nut_version], 1.0)
        yield from (up, stale, state, info, *families.values())


class AgentMetrics:
    """The agent's own series, kept up to date by `consume` (an events consumer)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.usb_present = Gauge(f"{OURS}_usb_present", "1 while the UPS is on the USB bus", ["ups"], registry=registry)
        self.held = Gauge(f"{OURS}_held", "1 while a UPS gone on battery stays watched", ["ups"], registry=registry)
        self.restarts = Counter(
            f"{OURS}_driver_restarts",
            "Driver starts other than a new UPS's, by reason",
            ["ups", "reason"],
            registry=registry,
        )
        self.hotplug = Counter(f"{OURS}_hotplug_events", "UPS hotplug events, by kind", ["kind"], registry=registry)
        self.heals = Counter(f"{OURS}_stale_heals", "Stale data healed", ["ups"], registry=registry)
        self.stale_seconds = Counter(
            f"{OURS}_stale_seconds", "Seconds a UPS's data was stale before it healed", ["ups"], registry=registry
        )
        self.tick = Histogram(
            f"{OURS}_tick_seconds",
            "Duration of one reconcile pass of `run`",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.last_success = Gauge(
            f"{OURS}_last_success_timestamp_seconds", "When a pass last ran to its end (Unix time)", registry=registry
        )
        self.known: set[str] = set()
        for kind in HOTPLUG.values():
            self.hotplug.labels(kind)  # at 0 from the start, as above

    def stop(self) -> None:
        """Nothing to stop: the HTTP server's thread is a daemon, gone with the agent."""

    def consume(self, event: events.Event) -> None:
        if isinstance(event, events.Tick):
            self.tick.observe(event.seconds)
            if not event.ok:
                return
            self.last_success.set(time.time())
            attached, held = set(filter(None, event.attached.split(","))), set(filter(None, event.held.split(",")))
            # Level-triggered: each pass says what is there; a UPS seen once stays a series (0 when gone).
            for ups in (attached | held) - self.known:
                # Why at 0 from the start: a counter that appears only at its first increase
                # hides that first one from increase() and rate().
                self.heals.labels(ups)
                self.stale_seconds.labels(ups)
            self.known |= attached | held
            for ups in self.known:
                self.usb_present.labels(ups).set(1.0 if ups in attached else 0.0)
                self.held.labels(ups).set(1.0 if ups in held else 0.0)
        elif event.kind in HOTPLUG:
            self.hotplug.labels(HOTPLUG[event.kind]).inc()
        elif isinstance(event, events.StepDone) and event.step_kind == "start_driver" and event.ups:
            if event.why != "new UPS":
                self.restarts.labels(event.ups, event.why).inc()
        elif isinstance(event, events.DriverHealed):
            self.heals.labels(event.ups).inc()
            seconds = upsd_client.number(event.stale_seconds)
            if seconds is not None:
                self.stale_seconds.labels(event.ups).inc(seconds)


def serve(listen: tuple[str, int], upsd: tuple[str, int]) -> AgentMetrics | None:
    """Serve /metrics on `listen`; the agent's metrics, for the event stream (outputs/start.py
    subscribes them). None (logged, NUT still served) when the address cannot be bound."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # the agent's own RSS and CPU: process_*
    registry.register(UpsdCollector(*upsd))
    agent = AgentMetrics(registry)
    host, port = listen
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        logfmt.error("metrics.failed", listen=f"{host}:{port}", error=exc.strerror or str(exc))
        return None
    logfmt.info("metrics.serving", listen=f"{host}:{port}", path="/metrics")
    return agent
