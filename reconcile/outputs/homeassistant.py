"""Home Assistant's side of the MQTT output (pure: no I/O): the topics, the state record,
the outage record, the discovery configs of a UPS's entities, and the buttons rule.
outputs/mqtt.py publishes what these functions give (see its docstring for the topics)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from reconcile import __version__
from reconcile.observe import upsd_client
from reconcile.outputs import buttons as rules

ORIGIN = "ups-nut-smart"
ON, OFF = "online", "offline"

# What a Home Assistant button may ask of a UPS: tests and the beeper, nothing that switches
# a load. Why an allow-list and not a deny-list: drivers add commands over time
# (load.off.delay, shutdown.stayoff, outlet.1.load.off ...) and any of them may cut the
# Pi's own power; an unknown command is never offered.
BUTTON_NAMES = {
    "beeper.enable": "Enable beeper",
    "beeper.disable": "Disable beeper",
    "beeper.mute": "Mute beeper",
    "beeper.toggle": "Toggle beeper",
    "beeper.on": "Beeper on",
    "beeper.off": "Beeper off",
    "test.battery.start.quick": "Quick battery test",
    "test.battery.start.deep": "Deep battery test",
    "test.battery.stop": "Stop battery test",
    "test.panel.start": "Panel test",
    "test.panel.stop": "Stop panel test",
    "calibrate.start": "Start runtime calibration",
    "calibrate.stop": "Stop runtime calibration",
}
SAFE_COMMANDS = frozenset(BUTTON_NAMES)
_BEEPER = re.compile(r"beeper\.[a-z]+(\.[a-z]+)*")
_NEVER = ("load.", "shutdown.", "outlet.", "driver.")  # checked even for a beeper.* look-alike
_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


# --- names and topics (pure) ---------------------------------------------------------


def allowed(command: str) -> bool:
    """Whether a HA button may send `command`: one of SAFE_COMMANDS or any beeper.* command."""
    if any(command.startswith(p) or f".{p}" in command for p in _NEVER):
        return False
    return command in SAFE_COMMANDS or _BEEPER.fullmatch(command) is not None


def button_name(command: str) -> str:
    return BUTTON_NAMES.get(command) or command.replace(".", " ").capitalize()


def topic_part(name: str) -> str:
    """A name as one topic level: no wildcard (+ #), no level separator, never empty."""
    return _TOPIC_UNSAFE.sub("_", name) or "_"


def object_id(name: str) -> str:
    """A name as HA wants node and object ids: [a-zA-Z0-9_-] (NUT names may hold dots)."""
    return _ID_UNSAFE.sub("_", name) or "_"


@dataclass(frozen=True)
class Topics:
    prefix: str  # MQTT_PREFIX
    discovery_prefix: str  # MQTT_DISCOVERY_PREFIX
    host: str  # HOST_NAME, as is (topic_part and object_id are applied here)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{topic_part(self.host)}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    def ups(self, ups: str, leaf: str) -> str:
        """<prefix>/<host>/<ups>/<leaf> (state, available, outage, command)."""
        return f"{self.base}/{topic_part(ups)}/{leaf}"

    def any_ups(self, leaf: str) -> str:
        """The subscription for `leaf` of every UPS."""
        return f"{self.base}/+/{leaf}"

    def ups_of(self, topic: str, leaf: str) -> str | None:
        """The UPS level of a topic that any_ups(leaf) matched, else None."""
        head, tail = f"{self.base}/", f"/{leaf}"
        if not (topic.startswith(head) and topic.endswith(tail)):
            return None
        level = topic[len(head) : -len(tail)]
        return level if level and "/" not in level else None

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def node_id(self, ups: str) -> str:
        return f"{object_id(self.host)}_{object_id(ups)}"

    def config(self, component: str, ups: str, key: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node_id(ups)}/{key}/config"


# --- what a UPS's variables become (pure) ---------------------------------------------


def number(value: str | None) -> int | float | None:
    """A NUT value as a JSON number, parsed by upsd_client.number, and whole where it is
    written whole ("91" -> 91, "13.60" -> 13.6), or None."""
    out = upsd_client.number(value)
    if out is None:
        return None
    return int(out) if (value or "").strip().lstrip("+-").isdigit() else out


@dataclass(frozen=True)
class Answer:
    """What became of the last command from the command topic for one UPS (a button
    press): sent, with upsd's answer, or refused and why; shown in HA as "Last command"."""

    command: str
    answer: str  # upsd's reply (OK, ERR ...), or "refused: <why>", or "not sent: <why>"
    ok: bool
    at: datetime

    def payload(self) -> dict[str, Any]:
        return {"command": self.command, "answer": self.answer, "ok": self.ok, "at": iso(self.at)}


def state_record(variables: Mapping[str, str], connected: bool, last_command: Answer | None = None) -> dict[str, Any]:
    """The state JSON of one UPS: its last known readings, and whether it is connected now
    (on the bus with fresh data). The readings are kept while it is not: HA shows them
    unavailable then (the `available` topic), other clients can tell by `connected`.
    `last_command`: the last button press since the agent started (null before one)."""
    status = variables.get("ups.status") or None
    flags = set(status.split()) if status else None
    return {
        "status": status,
        "charge": number(variables.get("battery.charge")),
        "runtime": number(variables.get("battery.runtime")),
        "load": number(variables.get("ups.load")),
        "input_voltage": number(variables.get("input.voltage")),
        "on_battery": None if flags is None else "OB" in flags,
        "low_battery": None if flags is None else "LB" in flags,
        "replace_battery": None if flags is None else "RB" in flags,
        "connected": connected,
        "model": upsd_client.model_of(variables),
        "last_command": last_command.payload() if last_command is not None else None,
    }


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC, to the second: 2026-11-28T23:30:00Z."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


ON_BATTERY, ENDED = "on_battery", "ended"


@dataclass(frozen=True)
class Outage:
    """A power outage of one UPS, as the outage topic shows it."""

    state: str  # ON_BATTERY or ENDED
    started: datetime
    ended: datetime | None = None
    estimate: datetime | None = None  # when the battery is empty: when runtime was read, plus runtime
    runtime: int | float | None = None  # seconds, as the UPS said last

    def payload(self) -> dict[str, Any]:
        if self.state == ON_BATTERY:
            return {
                "state": ON_BATTERY,
                "started": iso(self.started),
                "battery_empty_estimate": iso(self.estimate) if self.estimate else None,
                "runtime": self.runtime,
            }
        return {"state": ENDED, "started": iso(self.started), "ended": iso(self.ended or self.started)}

    @classmethod
    def parse(cls, payload: bytes) -> Outage | None:
        """An outage record as this module publishes it (a retained one from before a
        restart), or None for anything else."""
        try:
            data = json.loads(payload)
            started = datetime.fromisoformat(data["started"])
            if data["state"] == ON_BATTERY:
                estimate = data.get("battery_empty_estimate")
                runtime = data.get("runtime")
                return cls(
                    ON_BATTERY,
                    started,
                    estimate=datetime.fromisoformat(estimate) if estimate else None,
                    runtime=runtime if isinstance(runtime, int | float) else None,
                )
            if data["state"] == ENDED:
                return cls(ENDED, started, ended=datetime.fromisoformat(data["ended"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        return None


def next_outage(
    prev: Outage | None, on_battery: bool | None, now: datetime, runtime: int | float | None
) -> Outage | None:
    """The outage record after a read of the UPS (on_battery None: no fresh data, nothing
    is known, nothing changes). The battery-empty estimate moves only when the UPS reports
    another runtime: `now + runtime` at each read would change every second for nothing."""
    if on_battery is None:
        return prev
    if on_battery:
        estimate = now + timedelta(seconds=runtime) if runtime is not None else None
        if prev is not None and prev.state == ON_BATTERY:
            if runtime == prev.runtime:
                return prev
            return dataclasses.replace(prev, runtime=runtime, estimate=estimate)
        return Outage(ON_BATTERY, now, estimate=estimate, runtime=runtime)
    if prev is not None and prev.state == ON_BATTERY:
        return Outage(ENDED, prev.started, ended=now)
    return prev


def adopt(current: Outage | None, remembered: Outage | None) -> Outage | None:
    """The record to go on with, given the retained one the broker kept from before the
    agent's restart: an outage still going on keeps its start (a restart is not a new
    outage); one that was going on when the agent stopped is ended at the next read on line."""
    if remembered is None:
        return current
    if current is None:
        return remembered
    if current.state == ON_BATTERY and remembered.state == ON_BATTERY and remembered.started < current.started:
        return dataclasses.replace(current, started=remembered.started)
    return current


# --- Home Assistant discovery (pure) --------------------------------------------------


@dataclass(frozen=True)
class Entity:
    component: str  # sensor, binary_sensor
    key: str  # the object id, and the unique id's end
    name: str
    template: str
    variable: str | None  # a sensor only published once the UPS reported this variable
    reading: bool = True  # unavailable while the UPS is (False: follows the agent only)
    extra: tuple[tuple[str, Any], ...] = ()


def _flag(key: str) -> str:
    return f"{{{{ 'ON' if value_json.{key} else 'OFF' }}}}"


MEASUREMENT = ("state_class", "measurement")
ENTITIES = (
    Entity("sensor", "status", "Status", "{{ value_json.status }}", None, extra=(("icon", "mdi:information"),)),
    Entity(
        "sensor",
        "battery_charge",
        "Battery charge",
        "{{ value_json.charge }}",
        "battery.charge",
        extra=(("device_class", "battery"), ("unit_of_measurement", "%"), MEASUREMENT),
    ),
    Entity(
        "sensor",
        "battery_runtime",
        "Battery runtime",
        "{{ value_json.runtime }}",
        "battery.runtime",
        extra=(("device_class", "duration"), ("unit_of_measurement", "s"), MEASUREMENT),
    ),
    Entity(
        "sensor",
        "load",
        "Load",
        "{{ value_json.load }}",
        "ups.load",
        extra=(("unit_of_measurement", "%"), MEASUREMENT, ("icon", "mdi:gauge")),
    ),
    Entity(
        "sensor",
        "input_voltage",
        "Input voltage",
        "{{ value_json.input_voltage }}",
        "input.voltage",
        extra=(("device_class", "voltage"), ("unit_of_measurement", "V"), MEASUREMENT),
    ),
    Entity("binary_sensor", "on_battery", "On battery", _flag("on_battery"), None, extra=(("icon", "mdi:battery"),)),
    # device_class battery: "on" means low
    Entity(
        "binary_sensor", "low_battery", "Low battery", _flag("low_battery"), None, extra=(("device_class", "battery"),)
    ),
    Entity(
        "binary_sensor",
        "replace_battery",
        "Replace battery",
        _flag("replace_battery"),
        None,
        extra=(("device_class", "problem"),),
    ),
    Entity(
        "binary_sensor",
        "connected",
        "Connected",
        _flag("connected"),
        None,
        reading=False,
        extra=(("device_class", "connectivity"), ("entity_category", "diagnostic")),
    ),
)


# The answer to the last button press, with the press itself as attributes: published with
# the buttons (a device without buttons has nothing to press). Why not a reading of the UPS:
# the answer stays true while the UPS is gone, so it follows the agent's availability only.
# HA keeps a sensor's state to 255 characters.
LAST_COMMAND = Entity(
    "sensor",
    "last_command",
    "Last command",
    "{{ value_json.last_command.answer[:255] if value_json.last_command else None }}",
    None,
    reading=False,
    extra=(
        ("icon", "mdi:gesture-tap-button"),
        ("entity_category", "diagnostic"),
        ("json_attributes_template", "{{ (value_json.last_command or {}) | tojson }}"),
    ),
)


@dataclass(frozen=True)
class Device:
    """What discovery needs to know of one UPS."""

    ups: str
    model: str | None = None
    mfr: str | None = None
    # The variables the UPS reported since it became this model; None: not known yet (its
    # sensors are neither published nor removed then, so HA keeps what it had).
    variables: frozenset[str] | None = None
    # The buttons it should have; None: not known yet (left as they are on the broker).
    buttons: frozenset[str] | None = None
    # Button commands published earlier that discovery must remove if they are not in buttons.
    earlier_buttons: frozenset[str] = frozenset()


def device_block(host: str, device: Device, version: str) -> dict[str, Any]:
    block: dict[str, Any] = {
        # The identity is this host and this UPS name: never the serial (twins share one).
        "identifiers": [f"{ORIGIN}_{host}_{device.ups}"],
        "name": f"{host} {device.ups}",
        "sw_version": version,
    }
    if device.mfr:
        block["manufacturer"] = device.mfr
    if device.model:
        block["model"] = device.model
    return block


def dumps(data: Any) -> str:
    # Sorted and compact: the same content is the same text, so a change is a text change.
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def discovery(topics: Topics, device: Device, version: str = __version__) -> dict[str, str]:
    """Discovery config topic -> payload (JSON; "" removes the entity) for one UPS."""
    ups, host = device.ups, topics.host
    common = {
        "device": device_block(host, device, version),
        "origin": {"name": ORIGIN, "sw_version": version},
        "qos": 1,
    }
    agent_only = [{"topic": topics.status}]
    with_ups = [*agent_only, {"topic": topics.ups(ups, "available")}]
    out: dict[str, str] = {}
    for entity in (*ENTITIES, LAST_COMMAND):
        topic = topics.config(entity.component, ups, entity.key)
        if entity is LAST_COMMAND:
            if device.buttons is None:
                continue  # not known yet: left as it is
            if not device.buttons:
                out[topic] = ""
                continue
        elif entity.variable is not None:
            if device.variables is None:
                continue
            if entity.variable not in device.variables:
                out[topic] = ""
                continue
        config = {
            **common,
            "name": entity.name,
            "unique_id": f"{ORIGIN}_{topics.node_id(ups)}_{entity.key}",
            "state_topic": topics.ups(ups, "state"),
            "value_template": entity.template,
            "availability": with_ups if entity.reading else agent_only,
            "availability_mode": "all",
            **dict(entity.extra),
        }
        if entity is LAST_COMMAND:
            config["json_attributes_topic"] = topics.ups(ups, "state")
        out[topic] = dumps(config)
    if device.buttons is not None:
        for command in sorted(SAFE_COMMANDS | device.earlier_buttons | device.buttons):
            topic = topics.config("button", ups, f"cmd_{object_id(command)}")
            if command not in device.buttons or not allowed(command):
                out[topic] = ""
                continue
            config = {
                **common,
                "name": button_name(command),
                "unique_id": f"{ORIGIN}_{topics.node_id(ups)}_cmd_{object_id(command)}",
                "command_topic": topics.ups(ups, "command"),
                "payload_press": command,
                "availability": with_ups,
                "availability_mode": "all",
                "entity_category": "config",
            }
            out[topic] = dumps(config)
    return out


def buttons_for(
    offered: frozenset[str] | None, admin: bool, ready: bool, allow_deep: bool = False
) -> frozenset[str] | None:
    """The buttons a UPS gets: none without an admin login; the offered safe commands with
    one, but calibrations and the deep test only with the opt-in (`allow_deep`:
    MQTT_ALLOW_DEEP_TESTS); None (leave the broker's as they are) while that is not known
    yet: before the agent's first pass (its admin login is read then) or before upsd listed
    the commands."""
    if not ready:
        return None
    if not admin:
        return frozenset()
    if offered is None:
        return None
    return frozenset(c for c in offered if allowed(c) and (allow_deep or not rules.deep(c)))


def refusal(
    command: str,
    *,
    known: bool,
    admin: bool,
    retained: bool,
    offered: frozenset[str] | None,
    allow_deep: bool = False,
) -> str | None:
    """Why a command from the command topic is not sent (None: go on to the rate limit and
    the UPS's state, outputs/buttons.py). `offered` None: not asked yet (it is asked again
    right before sending)."""
    if retained:
        # A retained command would be sent again at every subscription: a button press is never retained.
        return "a retained message"
    if not known:
        return "no such UPS"
    if not admin:
        return "no admin login"
    if not allowed(command):
        return "not in the allow-list"
    if (why := rules.opt_in_refusal(command, allow_deep)) is not None:
        return why
    if offered is not None and command not in offered:
        return "not offered by the UPS"
    return None
