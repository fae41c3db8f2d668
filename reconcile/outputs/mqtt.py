"""MQTT with Home Assistant discovery (MQTT_URL), through paho-mqtt (docs/mqtt.md).

Topics (`<host>` and `<ups>` sanitized to [A-Za-z0-9_.-]; everything retained, qos 1):

  <prefix>/<host>/status          "online" / "offline": the agent; "offline" is also the
                                  broker's Last Will, so a killed agent shows offline
  <prefix>/<host>/<ups>/state     JSON: status, charge, runtime, load, input_voltage,
                                  on_battery, low_battery, replace_battery, connected, model
  <prefix>/<host>/<ups>/available "online" while the UPS is on the bus with fresh data
  <prefix>/<host>/<ups>/outage    JSON: {"state": "on_battery", "started", "battery_empty_estimate",
                                  "runtime"}, then {"state": "ended", "started", "ended"} (UTC)
  <prefix>/<host>/<ups>/command   (subscribed) an instant command's name, from a HA button;
                                  its answer goes to the state's last_command

Home Assistant discovery, `<discovery_prefix>/<component>/<host>_<ups>/<object_id>/config`:
one device per UPS, identified by host and UPS name (never by the serial: two units of one
model often report the same one, and HA would merge them). Sensors (status, battery charge,
runtime, load, input voltage: each once the UPS has reported its variable), binary sensors
(on battery, low battery, replace battery, connected) and, only with an admin login, buttons
for the instant commands the UPS offers that are in a safe allow-list (SAFE_COMMANDS: never
load.off, shutdown.* or anything else that could cut the Pi's own power; calibrations and
the deep test only with MQTT_ALLOW_DEEP_TESTS). A button that is no longer offered, or
every button without an admin login, is removed (an empty retained config). A press is
checked by outputs/buttons.py's rules (one command per UPS a minute; a test or a
calibration only on line and charged, read from upsd right before sending), and answered:
an event (mqtt.command) and the state's last_command. The readings are unavailable in HA
while the agent or the UPS is gone; "connected" follows the agent only, so it says
"disconnected" instead.

Threads: `consume` (the reconcile pass's thread) only enqueues; a worker thread of this
module reads upsd (a new connection with a timeout each time, at most once a second on
ticks, at once on a plug, unplug, swap or power event) and publishes what changed; paho's
own thread connects, reconnects (1 to 30 s apart) and hands incoming messages to the worker.
The worker keeps what it published during the current connection: after each (re)connect,
and after Home Assistant's birth message (`<discovery_prefix>/status` "online") for the
discovery configs, everything is published again.

Written for both paho-mqtt 2.x (PyPI) and Debian 12's 1.6.1 (the image): the callbacks
accept both APIs' arguments.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt

from reconcile import events, logfmt
from reconcile.observe import upsd_client
from reconcile.observe.upsd_client import mfr_of, model_of
from reconcile.outputs.buttons import RateLimit, Reports, state_refusal
from reconcile.outputs.homeassistant import (
    OFF,
    ON,
    ORIGIN,
    Answer,
    Device,
    Outage,
    Topics,
    adopt,
    allowed,
    buttons_for,
    discovery,
    dumps,
    next_outage,
    number,
    object_id,
    refusal,
    state_record,
    topic_part,
)
from reconcile.settings import Mqtt

UPSD_TIMEOUT = 3.0  # seconds for each of upsd's answers
REFRESH_EVERY = 1.0  # seconds: ticks read upsd at most this often
KEEPALIVE = 30  # seconds; the broker sends the will after 1.5 x this without a word
STOP_TIMEOUT = 2.0  # seconds for each part of stop() (the worker, the last publish, paho's thread)
QUEUE_MAX = 1000  # items; beyond, events are dropped (the next refresh reads upsd afresh anyway)
COMMAND_MAX = 64  # characters of a command payload that are looked at (and logged)


# --- the output: paho's thread, the worker thread --------------------------------------


@dataclass(frozen=True)
class _Ready:
    """The (re)connection is complete: publish everything again."""


@dataclass(frozen=True)
class _HaOnline:
    """Home Assistant's birth message: publish the discovery configs again."""


@dataclass(frozen=True)
class _Command:
    ups: str  # the UPS level of the topic
    payload: bytes
    retained: bool


@dataclass(frozen=True)
class _Remembered:
    ups: str  # the UPS level of the topic
    outage: Outage


@dataclass(frozen=True)
class _Stop:
    pass


_Item = events.Event | _Ready | _HaOnline | _Command | _Remembered | _Stop

# Events that change what a UPS shows: read upsd at once, not at the next tick (the latency target).
URGENT = (
    events.Plugged,
    events.Unplugged,
    events.Swapped,
    events.Renamed,
    events.Power,
    events.Held,
    events.Released,
    events.DriverHealed,
    events.FsdCleared,
    events.UpsmonNotice,
)
_WANTED = (events.Tick, *URGENT)


@dataclass
class _Ups:
    """The worker's memory of one UPS (worker thread only)."""

    variables: dict[str, str] = field(default_factory=dict)  # the last fresh ones
    fresh: bool = False
    seen: frozenset[str] | None = None  # variables reported since it became this model
    commands: frozenset[str] | None = None  # upsd's LIST CMD, None: to be asked
    earlier_buttons: frozenset[str] = frozenset()
    outage: Outage | None = None
    last_command: Answer | None = None  # the answer to the last press, shown in the state


def _code(rc: Any) -> int:
    """A paho result as a number: an int in paho 1.x, a ReasonCode (with .value) in 2.x."""
    return int(getattr(rc, "value", rc))


def _reason(rc: Any) -> str:
    if isinstance(rc, int):
        return mqtt.connack_string(rc)
    return str(rc)


def _new_client(client_id: str) -> mqtt.Client:
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    kwargs: dict[str, Any] = {"client_id": client_id, "clean_session": True}  # paho-mqtt 1.x
    return mqtt.Client(**kwargs)


@dataclass
class _Inbox:
    """What paho's thread and the pass's thread hand the worker, and what they share."""

    queue: queue.Queue[_Item] = field(default_factory=lambda: queue.Queue(QUEUE_MAX))
    ready: threading.Event = field(default_factory=threading.Event)  # connected, subscribed, resends out
    stopping: threading.Event = field(default_factory=threading.Event)
    overflow: bool = False
    errors: set[str] = field(default_factory=set)

    def put(self, item: _Item) -> bool:
        """Never blocks: False (and the overflow noted) when the queue is full."""
        try:
            self.queue.put_nowait(item)
            return True
        except queue.Full:
            self.overflow = True
            return False

    def failed(self, where: str, exc: BaseException) -> None:
        """Logged once per kind of failure: a lasting problem is one line, not one per second."""
        error = f"{type(exc).__name__}: {exc}"
        if f"{where} {error}" in self.errors:
            return
        if len(self.errors) < 100:
            self.errors.add(f"{where} {error}")
        logfmt.error("mqtt.failed", at=where, error=error)


class _Link:
    """The broker connection: paho's client and its callbacks, which run on paho's thread,
    must be quick and must never raise (an exception would end paho's loop)."""

    def __init__(self, config: Mqtt, topics: Topics, inbox: _Inbox) -> None:
        self.config, self.topics, self.inbox = config, topics, inbox
        self._down_logged = False  # one mqtt.disconnected line per outage of the broker
        self._sub_mid: int | None = None
        client = _new_client(object_id(f"{ORIGIN}-{topics.host}"))
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        if config.username:
            client.username_pw_set(config.username, config.password)
        if config.tls:
            client.tls_set()  # the system's CAs
        # Set before connecting: the broker says "offline" for an agent that dies (SIGKILL, power).
        client.will_set(topics.status, OFF, qos=1, retain=True)
        self.client = client

    def start(self) -> None:
        # Asynchronous: the agent serves NUT at once, broker up or not; paho's thread
        # connects, and reconnects by itself.
        self.client.connect_async(self.config.host, self.config.port, keepalive=KEEPALIVE)
        self.client.loop_start()

    def publish(self, topic: str, payload: str) -> bool:
        """Retained, qos 1; False when not connected (all is published again on connecting)."""
        if not self.inbox.ready.is_set():
            return False
        return self.client.publish(topic, payload, qos=1, retain=True).rc == mqtt.MQTT_ERR_SUCCESS

    def close(self) -> None:
        """Publish "offline" (retained), disconnect cleanly, join paho's thread with a timeout."""
        if self.client.is_connected():
            info = self.client.publish(self.topics.status, OFF, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=STOP_TIMEOUT)
            except (RuntimeError, ValueError):
                pass  # not connected after all: the broker's will says offline then
        self.client.disconnect()
        # paho's loop_stop() joins without a timeout: joined here with one.
        stopper = threading.Thread(target=self.client.loop_stop, name="mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(STOP_TIMEOUT)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, properties: Any = None) -> None:
        try:
            if _code(rc) != 0:
                self._down(f"refused: {_reason(rc)}")
                return
            logfmt.info("mqtt.connected", broker=self.config.where)
            self._down_logged = False
            client.publish(self.topics.status, ON, qos=1, retain=True)
            subscriptions = [
                (self.topics.ha_status, 1),
                (self.topics.status, 1),  # to say "online" again over a stale will (see _on_message)
                (self.topics.any_ups("command"), 1),
                (self.topics.any_ups("outage"), 1),  # the retained records from before a restart
            ]
            _, self._sub_mid = client.subscribe(subscriptions)
        except Exception as exc:  # noqa: BLE001
            self.inbox.failed("on_connect", exc)

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, *rest: Any) -> None:
        # Why ready only now: paho re-sends the messages a lost connection left unacknowledged
        # right after on_connect returns, on this thread; what the worker publishes from here
        # on goes out after them, so a stale message can never overwrite a fresh one.
        try:
            if mid == self._sub_mid:
                self.inbox.ready.set()
                self.inbox.put(_Ready())
        except Exception as exc:  # noqa: BLE001
            self.inbox.failed("on_subscribe", exc)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        try:
            self._down("cannot connect")
        except Exception as exc:  # noqa: BLE001
            self.inbox.failed("on_connect_fail", exc)

    def _on_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        # paho 1.x: (rc); paho 2.x: (disconnect_flags, reason_code, properties)
        try:
            self.inbox.ready.clear()
            if self.inbox.stopping.is_set():
                return
            rc = args[1] if len(args) == 3 else args[0] if args else 0
            self._down(mqtt.error_string(rc) if isinstance(rc, int) else str(rc))
        except Exception as exc:  # noqa: BLE001
            self.inbox.failed("on_disconnect", exc)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            topic, payload, retained = str(message.topic), bytes(message.payload), bool(message.retain)
            if topic == self.topics.ha_status:
                if payload.strip() == b"online":
                    logfmt.debug("mqtt.ha_online", topic=topic)
                    self.inbox.put(_HaOnline())
            elif topic == self.topics.status:
                if payload == OFF.encode() and not self.inbox.stopping.is_set() and self.inbox.ready.is_set():
                    # A will of an earlier connection of ours (or another client's) over our online.
                    client.publish(self.topics.status, ON, qos=1, retain=True)
            elif (ups := self.topics.ups_of(topic, "command")) is not None:
                if not self.inbox.put(_Command(ups, payload, retained)):
                    logfmt.warning("mqtt.command", ups=ups[:COMMAND_MAX], answer="refused: busy")
            elif retained and (ups := self.topics.ups_of(topic, "outage")) is not None:
                outage = Outage.parse(payload)
                if outage is not None:
                    self.inbox.put(_Remembered(ups, outage))
        except Exception as exc:  # noqa: BLE001
            self.inbox.failed("on_message", exc)

    def _down(self, why: str) -> None:
        self.inbox.ready.clear()
        if self._down_logged:
            logfmt.debug("mqtt.disconnected", broker=self.config.where, error=why)
            return
        self._down_logged = True
        logfmt.warning("mqtt.disconnected", broker=self.config.where, error=why, then="retrying (1 to 30 s apart)")


def read_upsd(
    upsd: tuple[str, int], need_commands: Callable[[str], bool]
) -> tuple[dict[str, dict[str, str] | None], dict[str, frozenset[str]]]:
    """Every UPS upsd lists, with its variables (None: no fresh data: stale, or its driver
    not connected), and the commands of those `need_commands` names. Raises UpsdError when
    upsd does not answer."""
    found: dict[str, dict[str, str] | None] = {}
    offered: dict[str, frozenset[str]] = {}
    with upsd_client.Connection(*upsd, timeout=UPSD_TIMEOUT) as conn:
        for ups in upsd_client.ups_names(conn):
            try:
                found[ups] = upsd_client.variables(conn, ups)
            except upsd_client.UpsdError:
                found[ups] = None
                continue
            if need_commands(ups):
                try:
                    offered[ups] = upsd_client.commands(conn, ups)
                except upsd_client.UpsdError:
                    pass
    return found, offered


class _Worker:
    """The worker thread: reads upsd when something happened (at most once a second on
    ticks), works out what each UPS shows, and publishes what changed. Its state is its
    own: nothing here is touched by another thread."""

    def __init__(
        self,
        topics: Topics,
        upsd: tuple[str, int],
        admin_login: Callable[[], tuple[str, str] | None],
        inbox: _Inbox,
        publish: Callable[[str, str], bool],
        allow_deep: bool = False,
    ) -> None:
        self.topics, self.upsd, self.admin_login, self.inbox, self.publish = topics, upsd, admin_login, inbox, publish
        self.allow_deep = allow_deep  # MQTT_ALLOW_DEEP_TESTS: calibrations and the deep test
        self.limiter = RateLimit()
        self.reports = Reports()
        self.upses: dict[str, _Ups] = {}
        self.attached: set[str] | None = None  # None until the first tick says
        self.held: set[str] = set()
        self.any_tick = False  # a pass is over: upsd runs (unless it failed)
        self.ticked = False  # a pass ran to its end: admin_login() is known from then on
        self.published: dict[str, str] = {}  # topic -> payload, during the current connection
        self.remembered: dict[str, Outage] = {}  # UPS level -> retained outage from before
        self.due: float | None = None  # when to read upsd next (monotonic); None: at the next trigger
        self.last_read = float("-inf")
        self.upsd_down = False

    def run(self) -> None:
        inbox = self.inbox
        while not inbox.stopping.is_set():
            timeout = None if self.due is None else max(0.0, self.due - time.monotonic())
            batch: list[_Item] = []
            try:
                batch.append(inbox.queue.get(timeout=timeout))
                while True:  # what came meanwhile, in one go: one read of upsd for a burst
                    batch.append(inbox.queue.get_nowait())
            except queue.Empty:
                pass
            if any(isinstance(item, _Stop) for item in batch):
                return
            for item in batch:
                try:
                    self._take(item)
                except Exception as exc:  # noqa: BLE001 - the worker survives any item
                    inbox.failed(type(item).__name__, exc)
            if inbox.overflow:
                inbox.overflow = False
                inbox.failed("queue", RuntimeError(f"more than {QUEUE_MAX} items waiting: some dropped"))
                self._soon(time.monotonic())
            if self.due is not None and time.monotonic() >= self.due:
                self.due = None
                try:
                    self._refresh()
                except Exception as exc:  # noqa: BLE001 - the next tick tries again
                    inbox.failed("refresh", exc)

    def _soon(self, at: float) -> None:
        self.due = at if self.due is None else min(self.due, at)

    def _take(self, item: _Item) -> None:
        now = time.monotonic()
        if isinstance(item, events.Tick):
            self.any_tick = True
            if item.ok:
                self.ticked = True
                self.attached = set(filter(None, item.attached.split(",")))
                self.held = set(filter(None, item.held.split(",")))
            self._soon(max(now, self.last_read + REFRESH_EVERY))
            return
        if isinstance(item, events.Plugged | events.Swapped):
            ups = self.upses.setdefault(item.ups, _Ups())
            ups.commands, ups.seen = None, None  # another unit, maybe: ask again
            if self.attached is not None:
                self.attached.add(item.ups)
        elif isinstance(item, events.Unplugged):
            self.upses.setdefault(item.ups, _Ups())
            if self.attached is not None:
                self.attached.discard(item.ups)
        elif isinstance(item, events.Renamed):
            self.upses.setdefault(item.new, _Ups())
        elif isinstance(item, _Ready):
            self.published.clear()  # a new connection: everything again
        elif isinstance(item, _HaOnline):
            prefix = f"{self.topics.discovery_prefix}/"
            self.published = {t: p for t, p in self.published.items() if not t.startswith(prefix)}
        elif isinstance(item, _Remembered):
            self.remembered[item.ups] = item.outage
        elif isinstance(item, _Command):
            self._command(item)
        # Read upsd now: after an URGENT event, a new connection, HA's birth, a command (a test
        # or the beeper shows in ups.status).
        self._soon(now)

    def _refresh(self) -> None:
        if not self.any_tick:
            return  # before the agent's first pass: upsd may not even run yet
        self.last_read = time.monotonic()
        admin = self.ticked and self.admin_login() is not None
        try:
            found, offered = read_upsd(
                self.upsd, lambda name: admin and (name not in self.upses or self.upses[name].commands is None)
            )
            if self.upsd_down:
                logfmt.info("mqtt.upsd", state="answering again")
            self.upsd_down = False
        except upsd_client.UpsdError as exc:
            found, offered = {}, {}
            if not self.upsd_down:
                logfmt.warning("mqtt.upsd", error=str(exc), then="every UPS shows unavailable")
            self.upsd_down = True
        now = datetime.now(UTC)
        desired: dict[str, str] = {}
        for name in sorted(set(self.upses) | set(found) | (self.attached or set()) | self.held):
            ups = self.upses.setdefault(name, _Ups())
            level = topic_part(name)
            if level in self.remembered:
                ups.outage = adopt(ups.outage, self.remembered.pop(level))
            variables = found.get(name)
            ups.fresh = variables is not None
            if variables is not None:
                before = (model_of(ups.variables), mfr_of(ups.variables))
                if ups.seen is not None and before != (model_of(variables), mfr_of(variables)):
                    ups.seen, ups.commands = None, None  # another model: its own sensors and commands
                ups.variables = variables
                ups.seen = (ups.seen or frozenset()) | frozenset(variables)
                if name in offered:
                    ups.commands = offered[name]
                flags = (variables.get("ups.status") or "").split()
                ups.outage = next_outage(ups.outage, "OB" in flags, now, number(variables.get("battery.runtime")))
            desired |= self._publications(name, ups, admin)
        self._sync(desired)

    def _publications(self, name: str, ups: _Ups, admin: bool) -> dict[str, str]:
        available = ups.fresh and (self.attached is None or name in self.attached)
        buttons = buttons_for(ups.commands, admin, self.ticked, self.allow_deep)
        if buttons:
            ups.earlier_buttons |= buttons
        device = Device(name, model_of(ups.variables), mfr_of(ups.variables), ups.seen, buttons, ups.earlier_buttons)
        out = discovery(self.topics, device)
        out[self.topics.ups(name, "state")] = dumps(state_record(ups.variables, available, ups.last_command))
        out[self.topics.ups(name, "available")] = ON if available else OFF
        if ups.outage is not None:
            out[self.topics.ups(name, "outage")] = dumps(ups.outage.payload())
        return out

    def _sync(self, desired: Mapping[str, str]) -> None:
        """Publish what differs from what this connection published."""
        for topic, payload in desired.items():
            if self.published.get(topic) == payload:
                continue
            if not self.publish(topic, payload):
                return  # not connected: published again once it is (_Ready)
            self.published[topic] = payload

    def _command(self, item: _Command) -> None:
        command = item.payload.decode("utf-8", "replace").strip()[:COMMAND_MAX]
        name = next((n for n in self.upses if topic_part(n) == item.ups), None)
        login = self.admin_login() if self.ticked else None
        why = refusal(
            command,
            known=name is not None,
            admin=login is not None,
            retained=item.retained,
            offered=None,
            allow_deep=self.allow_deep,
        )
        if why is None and name is not None:
            why = self.limiter.take(name, command, time.monotonic())
        if why is not None or name is None or login is None:
            outcome = Outcome(f"refused: {why}", ok=False, refused=True)
        else:
            outcome = instcmd(self.upsd, login, name, command)
        kind = events.CommandRefused if outcome.refused else events.CommandSent if outcome.ok else events.CommandFailed
        if (unreported := self.reports.take(time.monotonic())) is not None:
            events.emit(kind(name or item.ups[:COMMAND_MAX], command, outcome.answer, unreported or None))
        # Shown on the UPS's state topic (at the refresh that follows every command), so Home
        # Assistant shows why; not for a retained one: the broker's replay, not a press.
        if name is not None and not item.retained:
            self.upses[name].last_command = Answer(command, outcome.answer, outcome.ok, datetime.now(UTC))


class MqttOutput:
    """The output outputs/start.py subscribes: `consume` on the pass's thread, `stop` at
    the agent's stop; a _Link to the broker and a _Worker thread in between."""

    def __init__(
        self,
        config: Mqtt,
        host_name: str,
        upsd: tuple[str, int],
        admin_login: Callable[[], tuple[str, str] | None],
    ) -> None:
        self.config = config
        self.topics = Topics(config.prefix, config.discovery_prefix, host_name)
        self.inbox = _Inbox()
        self.link = _Link(config, self.topics, self.inbox)
        self.worker = _Worker(self.topics, upsd, admin_login, self.inbox, self.link.publish, config.allow_deep_tests)
        self._thread = threading.Thread(target=self.worker.run, name="mqtt", daemon=True)

    def start(self) -> None:
        logfmt.info("mqtt.connecting", broker=self.config.where, topic=self.topics.base)
        self._thread.start()
        self.link.start()

    def consume(self, event: events.Event) -> None:
        """Enqueue only (O(1), never blocks, never raises)."""
        try:
            if isinstance(event, _WANTED):
                self.inbox.put(event)
        except Exception:  # noqa: BLE001 - a consumer never breaks a pass
            pass

    def stop(self) -> None:
        """The worker joined, then "offline" (retained) and a clean disconnect (each with a timeout)."""
        self.inbox.stopping.set()
        self.inbox.put(_Stop())  # (when the queue is full, the worker sees `stopping` after its batch)
        self._thread.join(STOP_TIMEOUT)
        self.link.close()
        logfmt.info("mqtt.stopped", broker=self.config.where)


@dataclass(frozen=True)
class Outcome:
    """What became of a command: upsd's answer, or why it was not sent."""

    answer: str
    ok: bool  # upsd took it
    refused: bool = False  # by a rule (allow-list, opt-in, rate, the UPS's state): never sent


def instcmd(upsd: tuple[str, int], login: tuple[str, str], ups: str, command: str) -> Outcome:
    """Send INSTCMD through upsd logged in as `login`, after checking on the same
    connection, right before, that the command is allowed, that the UPS offers it, and that
    its state allows it (outputs/buttons.py: read now, not from the last refresh)."""
    if not allowed(command):
        return Outcome("refused: not in the allow-list", ok=False, refused=True)
    user, password = login
    try:
        with upsd_client.Connection(*upsd, timeout=UPSD_TIMEOUT) as conn:
            try:
                variables: dict[str, str] | None = upsd_client.variables(conn, ups)
            except upsd_client.UpsdError:
                variables = None  # stale, or its driver not connected: nothing is known
            if (why := state_refusal(command, variables)) is not None:
                return Outcome(f"refused: {why}", ok=False, refused=True)
            if command not in upsd_client.commands(conn, ups):
                return Outcome("refused: not offered by the UPS", ok=False, refused=True)
            for line, what in ((f"USERNAME {user}", "USERNAME"), (f"PASSWORD {password}", "PASSWORD")):
                reply = conn.command(line)
                if reply != "OK":
                    # (`what`, never the line: the password must not reach the log)
                    return Outcome(f"login refused at {what}: {reply}", ok=False)
            logfmt.debug("mqtt.instcmd", ups=ups, command=command)
            reply = conn.command(f"INSTCMD {ups} {command}")
            return Outcome(reply, ok=reply == "OK")
    except upsd_client.UpsdError as exc:
        return Outcome(f"not sent: {exc}", ok=False)


def start(
    config: Mqtt, host_name: str, upsd: tuple[str, int], admin_login: Callable[[], tuple[str, str] | None]
) -> MqttOutput:
    """Connect asynchronously and return at once, broker up or not (outputs/start.py)."""
    output = MqttOutput(config, host_name, upsd, admin_login)
    output.start()
    return output
