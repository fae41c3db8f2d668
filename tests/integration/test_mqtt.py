"""MQTT of `nut-reconcile run` against real NUT (dummy-ups, upsd) and a real broker
(Debian's mosquitto on loopback), watched by a real MQTT client (paho) as Home Assistant
would: discovery configs, state through plug, unplug and swap, the will, the retained
outage record, the buttons rule, and a broker that is down at the start."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import pytest

from reconcile import __version__
from reconcile.observe import upsd_client
from reconcile.outputs import mqtt as mqtt_output
from reconcile.outputs.homeassistant import allowed
from testbed import REPO, await_true
from testbed import mqtt as testbed_mqtt
from testbed.mqtt import Broker
from testbed.nut import Sandbox, free_port, write_stub

pytestmark = pytest.mark.nut

AWAIT = 30.0  # a ceiling for correctness, not a speed target
NOT_CONNECTED = "Error: Driver not connected"
HOST = "pi-test"
BASE = f"ups-nut-smart/{HOST}"
STATUS = f"{BASE}/status"
STATE, AVAILABLE, OUTAGE, COMMAND = (f"{BASE}/my-ups/{leaf}" for leaf in ("state", "available", "outage", "command"))
NODE = f"homeassistant/{{}}/{HOST}_my-ups/{{}}/config"
SECRET = "mqtt-s3cret-Pw"


class Subscriber(testbed_mqtt.Subscriber):
    def configs(self) -> dict[str, dict[str, Any]]:
        """The non-empty discovery configs of pi-test's my-ups, by topic."""
        with self.lock:
            found = dict(self.last)
        return {
            t: json.loads(p)
            for t, (p, _) in found.items()
            if t.startswith("homeassistant/") and f"/{HOST}_my-ups/" in t and p
        }


@pytest.fixture
def started(sandbox: Sandbox) -> Iterator[list[Broker | Subscriber]]:
    """What a test starts (brokers, subscribers), stopped at its end."""
    things: list[Broker | Subscriber] = []
    yield things
    for thing in reversed(things):
        thing.stop()


def broker(
    sandbox: Sandbox, started: list[Broker | Subscriber], port: int | None = None, access: str = testbed_mqtt.ANONYMOUS
) -> Broker:
    b = Broker(sandbox.root, port, access=access)
    started.append(b)
    return b


def subscriber(port: int, started: list[Broker | Subscriber], login: tuple[str, str] | None = None) -> Subscriber:
    s = Subscriber(port, login)
    started.append(s)
    return s


def agent_env(port: int, **more: str) -> dict[str, str]:
    # PYTHONPATH: the agent runs with the paho the tests run with (paho-mqtt 1.6.1 as in
    # the image, when the tests are run with it on PYTHONPATH).
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))
    return {"MQTT_URL": f"mqtt://127.0.0.1:{port}", "HOST_NAME": HOST, "PYTHONPATH": path, **more}


def render(template: str, state: dict[str, Any]) -> str:
    """A value_template as Home Assistant renders it (Jinja2, the payload as value_json)."""
    return jinja2.Environment().from_string(template).render(value_json=state)


def test_discovery_and_state_through_plug_unplug_swap_and_the_will(
    sandbox: Sandbox, started: list[Broker | Subscriber]
) -> None:
    apc = sandbox.data_file(
        "apc.dev",
        **{
            "ups.mfr": "APC",
            "ups.model": "Back-UPS ES 700G",
            "ups.serial": "AAA111",
            "battery.charge": "91",
            "battery.runtime": "1500",
            "ups.load": "23",
            "input.voltage": "230.5",
        },
    )
    # Another model, which reports neither load nor input voltage.
    cps = sandbox.data_file(
        "cps.dev",
        **{"ups.mfr": "CPS", "ups.model": "CP1500", "ups.serial": "CPS999", "battery.charge": "57"},
    )
    sandbox.dummy_rule(apc, "051d", "0002")
    sandbox.dummy_rule(cps, "0764", "0501")
    mosquitto = broker(sandbox, started)
    sub = subscriber(mosquitto.port, started)
    url = f"mqtt://ha-user:{SECRET}@127.0.0.1:{mosquitto.port}"  # mosquitto takes any login here
    agent = sandbox.start_run(env=agent_env(mosquitto.port, MQTT_URL=url))
    assert sandbox.await_log("event=mqtt.connected", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()
    assert sub.await_payload(STATUS, "online")
    # Before any plug: my-ups is served, not connected, so HA shows a disconnected device.
    assert sub.await_json(STATE, lambda s: s["connected"] is False), sandbox.run_output()
    assert sub.payload(AVAILABLE) == "offline"

    sandbox.bus.plug("1-1", "051d", "0002", serial="AAA111")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    state = sub.await_json(STATE, lambda s: s["connected"] and s["charge"] == 91)
    assert state == {
        "status": "OL",
        "charge": 91,
        "runtime": 1500,
        "load": 23,
        "input_voltage": 230.5,
        "on_battery": False,
        "low_battery": False,
        "replace_battery": False,
        "connected": True,
        "model": "Back-UPS ES 700G",
        "last_command": None,
    }, sandbox.run_output()
    assert sub.await_payload(AVAILABLE, "online")

    charge = NODE.format("sensor", "battery_charge")
    assert await_true(lambda: sub.configs().get(charge, {}).get("device", {}).get("model") == "Back-UPS ES 700G", AWAIT)
    configs = sub.configs()
    assert set(configs) == {
        *(NODE.format("sensor", k) for k in ("status", "battery_charge", "battery_runtime", "load", "input_voltage")),
        *(NODE.format("binary_sensor", k) for k in ("on_battery", "low_battery", "replace_battery", "connected")),
    }, "no buttons without an admin login"
    sensor = {key: configs[NODE.format("sensor", key)] for key in ("battery_charge", "battery_runtime", "load")}
    assert (sensor["battery_charge"]["device_class"], sensor["battery_charge"]["unit_of_measurement"]) == (
        "battery",
        "%",
    )
    assert sensor["battery_charge"]["state_class"] == "measurement"
    runtime = sensor["battery_runtime"]
    assert (runtime["device_class"], runtime["unit_of_measurement"]) == ("duration", "s")
    assert "device_class" not in sensor["load"] and sensor["load"]["unit_of_measurement"] == "%"
    voltage = configs[NODE.format("sensor", "input_voltage")]
    assert (voltage["device_class"], voltage["unit_of_measurement"]) == ("voltage", "V")
    binary = {k: configs[NODE.format("binary_sensor", k)] for k in ("low_battery", "replace_battery", "connected")}
    assert [binary[k].get("device_class") for k in binary] == ["battery", "problem", "connectivity"]
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    for topic, config in configs.items():
        device = config["device"]
        assert device["identifiers"] == ["ups-nut-smart_pi-test_my-ups"], topic
        assert device["name"] == "pi-test my-ups" and device["sw_version"] == __version__
        assert (device["manufacturer"], device["model"]) == ("APC", "Back-UPS ES 700G")
        assert "AAA111" not in json.dumps(config), f"{topic}: the serial is never part of the identity"
        assert config["state_topic"] == STATE
        expected = (
            [{"topic": STATUS}] if topic.endswith("/connected/config") else [{"topic": STATUS}, {"topic": AVAILABLE}]
        )
        assert (config["availability"], config["availability_mode"]) == (expected, "all"), topic
    # Each value_template, rendered as HA renders it, gives the reading.
    rendered = {t.split("/")[-2]: render(c["value_template"], state) for t, c in configs.items()}
    assert rendered == {
        "status": "OL",
        "battery_charge": "91",
        "battery_runtime": "1500",
        "load": "23",
        "input_voltage": "230.5",
        "on_battery": "OFF",
        "low_battery": "OFF",
        "replace_battery": "OFF",
        "connected": "ON",
    }
    # Everything is retained: a client that connects now gets it all at once.
    late = subscriber(mosquitto.port, started)
    for topic in (*configs, STATE, AVAILABLE, STATUS):
        assert await_true(lambda t=topic: late.retained(t) is True, AWAIT), topic  # type: ignore[misc]
    late.stop()
    started.remove(late)

    # Home Assistant's birth message: the discovery configs come again.
    before = sub.count(charge)
    sub.publish("homeassistant/status", "online")
    assert await_true(lambda: sub.count(charge) > before, AWAIT)

    # Unplugged: unavailable readings (the last ones kept), connected false.
    sandbox.bus.unplug("1-1")
    assert sub.await_payload(AVAILABLE, "offline"), sandbox.run_output()
    assert sub.await_json(STATE, lambda s: s["connected"] is False and s["charge"] == 91)
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()

    # Swapped for another model under the same name: the device's model follows, and the
    # sensors it does not report are removed (an empty retained config).
    sandbox.bus.plug("1-1", "0764", "0501", serial="CPS999", manufacturer="CPS", product="CP1500")
    assert sandbox.await_upsc("CPS", var="ups.mfr", timeout=AWAIT), sandbox.run_output()
    assert sub.await_json(STATE, lambda s: s["connected"] and s["model"] == "CP1500" and s["charge"] == 57)
    assert sub.await_payload(AVAILABLE, "online")
    assert await_true(lambda: sub.configs().get(charge, {}).get("device", {}).get("model") == "CP1500", AWAIT)
    assert sub.configs()[charge]["device"]["identifiers"] == ["ups-nut-smart_pi-test_my-ups"]
    assert sub.await_payload(NODE.format("sensor", "load"), "")
    assert sub.await_payload(NODE.format("sensor", "input_voltage"), "")

    # Killed: the broker's Last Will says offline.
    agent.send_signal(signal.SIGKILL)
    agent.wait(timeout=10)
    assert sub.await_payload(STATUS, "offline"), Path(mosquitto.log.name).read_text()
    assert SECRET not in sandbox.run_output() and SECRET not in sandbox.log.read_text()
    assert "event=mqtt.failed" not in sandbox.run_output()  # no callback or item ever raised


def test_an_outage_is_retained_for_a_subscriber_that_comes_later_and_a_stop_says_offline(
    sandbox: Sandbox, started: list[Broker | Subscriber]
) -> None:
    data = sandbox.data_file(**{"ups.model": "Back-UPS ES 700G", "battery.runtime": "1200"})
    sandbox.dummy_rule(data)
    mosquitto = broker(sandbox, started)
    early = subscriber(mosquitto.port, started)
    agent = sandbox.start_run(env=agent_env(mosquitto.port))
    assert sandbox.await_log("event=mqtt.connected", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()
    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()

    sandbox.data_file(**{"ups.status": "OB DISCHRG", "ups.model": "Back-UPS ES 700G", "battery.runtime": "1200"})
    assert sandbox.await_upsc("OB DISCHRG", timeout=AWAIT), sandbox.run_output()
    # Why the early subscriber waits first: the late one must connect after the record is on
    # the broker, so that what it gets is the retained copy, not the live publication.
    assert early.await_json(OUTAGE, lambda o: o["state"] == "on_battery") is not None, sandbox.run_output()
    late = subscriber(mosquitto.port, started)  # connects after the UPS went on battery
    outage = late.await_json(OUTAGE, lambda o: o["state"] == "on_battery")
    assert outage is not None, sandbox.run_output()
    assert late.retained(OUTAGE) is True
    started_at = datetime.fromisoformat(outage["started"])
    empty_at = datetime.fromisoformat(outage["battery_empty_estimate"])
    assert outage["runtime"] == 1200 and empty_at - started_at == timedelta(seconds=1200)
    assert started_at.utcoffset() == timedelta(0)  # UTC
    assert late.await_json(STATE, lambda s: s["on_battery"] is True and s["status"] == "OB DISCHRG")

    # Mains back: the record says the outage ended, with its start kept.
    sandbox.data_file(**{"ups.model": "Back-UPS ES 700G", "battery.runtime": "1200"})
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    ended = late.await_json(OUTAGE, lambda o: o["state"] == "ended")
    assert ended is not None and ended["started"] == outage["started"], late.json(OUTAGE)
    assert datetime.fromisoformat(ended["ended"]) >= started_at

    # A clean stop: "offline", published by the agent itself (no will at a clean disconnect).
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=10) == 0
    assert late.await_payload(STATUS, "offline")
    assert "event=mqtt.stopped" in sandbox.run_output()
    assert "event=mqtt.failed" not in sandbox.run_output()


def test_no_buttons_without_an_admin_login_and_stale_ones_are_removed(
    sandbox: Sandbox, started: list[Broker | Subscriber]
) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    mosquitto = broker(sandbox, started)
    sub = subscriber(mosquitto.port, started)
    # A button an earlier run (with an admin login) left retained on the broker.
    stale = NODE.format("button", "cmd_beeper_toggle")
    sub.publish(stale, json.dumps({"name": "Toggle beeper", "command_topic": COMMAND}), retain=True)
    assert sub.await_json(stale, lambda c: c["name"] == "Toggle beeper")
    sandbox.start_run(env=agent_env(mosquitto.port))
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()
    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    assert sub.await_json(STATE, lambda s: s["connected"] is True), sandbox.run_output()

    assert sub.await_payload(stale, ""), "the stale button is removed"
    late = subscriber(mosquitto.port, started)
    assert late.await_json(STATE, lambda s: s["connected"] is True)
    assert late.payload(stale) is None  # nothing retained there any more
    assert not [t for t in sub.configs() if "/button/" in t]

    sub.publish(COMMAND, "beeper.toggle")
    refused = 'event=mqtt.command ups=my-ups command=beeper.toggle answer="refused: no admin login"'
    assert sandbox.await_log(refused, timeout=AWAIT), sandbox.run_output()


def test_with_an_admin_login_only_offered_safe_commands_become_buttons_and_others_are_refused(
    sandbox: Sandbox, started: list[Broker | Subscriber], monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "adm1n-Pass-word"
    secret = sandbox.root / "nut-admin"
    secret.write_text(password + "\n")
    sandbox.dummy_rule(sandbox.data_file())
    mosquitto = broker(sandbox, started)
    sub = subscriber(mosquitto.port, started)
    sandbox.start_run(env=agent_env(mosquitto.port, NUT_ADMIN_PASSWORD_FILE=str(secret)))
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()
    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    assert sub.await_json(STATE, lambda s: s["connected"] is True), sandbox.run_output()

    with upsd_client.Connection("127.0.0.1", sandbox.port) as conn:
        offered = upsd_client.commands(conn, "my-ups")
    # dummy-ups offers load.off (and nothing of the allow-list): so no button at all. Were it
    # to offer a safe command, it would be a button here.
    assert "load.off" in offered
    buttons = NODE.format("button", "cmd_{}")
    expected = {buttons.format(c.replace(".", "_")) for c in offered if allowed(c)}
    # The removals of allow-listed buttons come with the first publication of the configs.
    assert sub.await_payload(buttons.format("beeper_toggle"), "")
    assert {t for t in sub.configs() if "/button/" in t} == expected
    assert sub.payload(buttons.format("load_off")) is None  # never even a removal: never a button

    sub.publish(COMMAND, "load.off")
    refused = 'event=mqtt.command ups=my-ups command=load.off answer="refused: not in the allow-list"'
    assert sandbox.await_log(refused, timeout=AWAIT), sandbox.run_output()
    if "beeper.toggle" not in offered:
        sub.publish(COMMAND, "beeper.toggle")
        refused = 'event=mqtt.command ups=my-ups command=beeper.toggle answer="refused: not offered by the UPS"'
        assert sandbox.await_log(refused, timeout=AWAIT), sandbox.run_output()
    sub.publish(f"{BASE}/no-such-ups/command", "beeper.toggle")
    assert sandbox.await_log('ups=no-such-ups command=beeper.toggle answer="refused: no such UPS"', timeout=AWAIT)
    assert sandbox.upsc("my-ups", "ups.status") == (0, "OL")  # the load was never touched

    # The send path itself (login as the admin, INSTCMD) against the real upsd: with no safe
    # command offered by dummy-ups, the allow-list is widened for this call only, and the
    # command is one dummy-ups ignores.
    monkeypatch.setattr(mqtt_output, "allowed", lambda command: True)
    at = ("127.0.0.1", sandbox.port)
    assert mqtt_output.instcmd(at, ("admin", password), "my-ups", "load.off") == mqtt_output.Outcome("OK", ok=True)
    # upsd takes any USERNAME and PASSWORD lines and judges them at the command.
    denied = mqtt_output.instcmd(at, ("admin", "wrong-pass-1"), "my-ups", "load.off")
    assert denied == mqtt_output.Outcome("ERR ACCESS-DENIED", ok=False)
    assert password not in sandbox.run_output() and password not in sandbox.log.read_text()
    assert "event=mqtt.failed" not in sandbox.run_output()


OFFERED = [
    "beeper.toggle",
    "calibrate.start",
    "calibrate.stop",
    "load.off",
    "test.battery.start.deep",
    "test.battery.start.quick",
    "test.battery.stop",
]


def received(record: Path) -> list[str]:
    """The commands the stub driver got from upsd (its record: one line each)."""
    lines = record.read_text().splitlines() if record.exists() else []
    return [line.split()[1] for line in lines if line.startswith("INSTCMD ")]


def test_a_press_is_refused_on_battery_then_by_the_minute_and_deep_ones_need_the_opt_in(
    sandbox: Sandbox, started: list[Broker | Subscriber]
) -> None:
    """Against a UPS that offers every button and takes commands (testbed/stub_driver.py,
    behind the real upsd), which records each INSTCMD that reaches it."""
    password = "adm1n-Pass-word"
    secret = sandbox.root / "nut-admin"
    secret.write_text(password + "\n")
    record = sandbox.root / "received.log"
    values = {"ups.mfr": "APC", "ups.model": "Back-UPS ES 700G"}
    device = {"vars": {**values, "ups.status": "OB DISCHRG", "battery.charge": "100"}, "commands": OFFERED}
    sandbox.use_stub_driver()
    path = sandbox.stub_rule({**device, "record": str(record)})
    mosquitto = broker(sandbox, started)
    sub = subscriber(mosquitto.port, started)
    # A calibration button an earlier run with MQTT_ALLOW_DEEP_TESTS=1 left on the broker.
    calibrate = NODE.format("button", "cmd_calibrate_start")
    sub.publish(calibrate, json.dumps({"name": "Start runtime calibration", "command_topic": COMMAND}), retain=True)
    assert sub.await_json(calibrate, lambda c: c["name"] == "Start runtime calibration")
    # DEBUG=1: the agent logs `mqtt.instcmd` right before each INSTCMD it sends.
    env = agent_env(mosquitto.port, NUT_ADMIN_PASSWORD_FILE=str(secret), DEBUG="1")
    agent = sandbox.start_run(env=env)
    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OB DISCHRG", timeout=AWAIT), sandbox.run_output()
    assert sub.await_json(STATE, lambda s: s["connected"] is True), sandbox.run_output()

    # The UPS offers them all; without the opt-in, no calibration or deep test button (the
    # earlier one removed), and the answers' sensor comes with the buttons.
    button = NODE.format("button", "cmd_{}")
    expected = {button.format(c) for c in ("beeper_toggle", "test_battery_start_quick", "test_battery_stop")}
    last_sensor = NODE.format("sensor", "last_command")
    assert await_true(lambda: {t for t in sub.configs() if "/button/" in t} == expected, AWAIT), sub.configs()
    assert sub.payload(calibrate) == "" and sub.payload(button.format("test_battery_start_deep")) == ""
    assert sub.payload(button.format("calibrate_stop")) == ""
    assert sub.configs()[last_sensor]["json_attributes_topic"] == STATE

    # On battery, fully charged: a quick test is refused, from upsd's values read at the press.
    sub.publish(COMMAND, "test.battery.start.quick")
    on_battery = "refused: ups.status is 'OB DISCHRG' (OB set): tests and calibrations only on line without OB, LB"
    refused = f'event=mqtt.command ups=my-ups command=test.battery.start.quick answer="{on_battery}'
    assert sandbox.await_log(refused, timeout=AWAIT), sandbox.run_output()
    # Home Assistant shows why: the state's last_command (the "Last command" sensor's value).
    last = sub.await_json(STATE, lambda s: (s["last_command"] or {}).get("command") == "test.battery.start.quick")
    assert last is not None and last["last_command"]["answer"].startswith(on_battery), sub.json(STATE)
    assert last["last_command"]["ok"] is False and last["status"] == "OB DISCHRG"
    shown = render(sub.configs()[last_sensor]["value_template"], last)
    assert shown.startswith(on_battery), shown

    # Mains back and charged, a second press within the minute: refused by the rate limit.
    write_stub(path, {**device, "vars": {**values, "ups.status": "OL", "battery.charge": "100"}, "record": str(record)})
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    sub.publish(COMMAND, "test.battery.start.quick")
    limited = 'command=test.battery.start.quick answer="refused: one command per UPS a minute: the next in '
    assert sandbox.await_log(limited, timeout=AWAIT), sandbox.run_output()
    assert sub.await_json(STATE, lambda s: "a minute" in (s["last_command"] or {}).get("answer", ""))
    # A calibration without the opt-in: refused by name (before the minute is even looked at).
    sub.publish(COMMAND, "calibrate.start")
    off = "refused: calibrations and deep battery tests are off (MQTT_ALLOW_DEEP_TESTS=1 allows them)"
    assert sandbox.await_log(f'command=calibrate.start answer="{off}"', timeout=AWAIT), sandbox.run_output()
    # A stop is never held back: it reaches the UPS (upsd queued it: OK), the only one that did.
    sub.publish(COMMAND, "test.battery.stop")
    sent = "event=mqtt.command ups=my-ups command=test.battery.stop answer=OK"
    assert sandbox.await_log(sent, timeout=AWAIT), sandbox.run_output()
    assert await_true(lambda: received(record) == ["test.battery.stop"], AWAIT), received(record)
    output = sandbox.run_output()
    assert (
        output.count("event=mqtt.instcmd") == 1 and "event=mqtt.instcmd ups=my-ups command=test.battery.stop" in output
    )
    answers = [line for line in output.splitlines() if "event=mqtt.command" in line]
    assert len(answers) == 4 and sum('answer="refused: ' in line for line in answers) == 3, answers

    # With the opt-in, the calibration and the deep test are buttons too.
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
    sandbox.start_run(env={**env, "MQTT_ALLOW_DEEP_TESTS": "1"})
    assert sub.await_json(calibrate, lambda c: c["payload_press"] == "calibrate.start"), sandbox.run_output()
    deep = sub.await_json(button.format("test_battery_start_deep"), lambda c: c["name"] == "Deep battery test")
    assert deep is not None and deep["command_topic"] == COMMAND

    # The state check of the send itself, called here against the real upsd: each time it
    # reads the UPS's values on the connection it then sends on, never an earlier reading.
    at, login = ("127.0.0.1", sandbox.port), ("admin", password)
    before = received(record)
    assert mqtt_output.instcmd(at, login, "my-ups", "test.battery.start.quick") == mqtt_output.Outcome("OK", ok=True)
    assert await_true(lambda: received(record) == [*before, "test.battery.start.quick"], AWAIT), received(record)
    for status, charge, why in (
        ("OL", "80", "refused: battery.charge is 80 %"),
        ("OL CAL", "100", "refused: ups.status is 'OL CAL' (CAL set)"),
        ("OL LB", "100", "refused: ups.status is 'OL LB' (LB set)"),
    ):
        write_stub(path, {**device, "vars": {**values, "ups.status": status, "battery.charge": charge}})
        assert sandbox.await_upsc(status, timeout=AWAIT), sandbox.run_output()
        assert sandbox.await_upsc(charge, var="battery.charge", timeout=AWAIT)
        outcome = mqtt_output.instcmd(at, login, "my-ups", "test.battery.start.quick")
        assert outcome.refused and outcome.answer.startswith(why), outcome
    assert received(record) == [*before, "test.battery.start.quick"]  # none of those reached the UPS
    assert password not in sandbox.run_output()
    assert "event=mqtt.failed" not in sandbox.run_output()


def docs_acl() -> str:
    """The mosquitto acl_file of docs/mqtt.md ("Who may press"), as written there."""
    text = (REPO / "docs" / "mqtt.md").read_text()
    blocks = re.findall(r"\n( *)```\n(.*?)\n\1```", text, re.DOTALL)
    found = [textwrap.dedent(body) for _, body in blocks if "user ups-agent" in body]
    assert len(found) == 1, "docs/mqtt.md: one acl_file example"
    return found[0] + "\n"


def test_the_acl_of_the_docs_lets_home_assistant_press_and_no_other_login(
    sandbox: Sandbox, started: list[Broker | Subscriber]
) -> None:
    acl, passwd = sandbox.root / "acl", sandbox.root / "passwd"
    acl.write_text(docs_acl())
    logins = {user: f"{user}-Pw-1" for user in ("ups-agent", "homeassistant", "dashboard")}
    for index, (user, password) in enumerate(logins.items()):
        create = ["-c"] if index == 0 else []
        subprocess.run(["mosquitto_passwd", *create, "-b", str(passwd), user, password], check=True, timeout=10)
    os.chmod(passwd, 0o644)  # (mosquitto reads it as its own user once it dropped root)
    os.chmod(acl, 0o644)
    access = f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n"
    mosquitto = broker(sandbox, started, access=access)
    ha = subscriber(mosquitto.port, started, ("homeassistant", logins["homeassistant"]))
    dashboard = subscriber(mosquitto.port, started, ("dashboard", logins["dashboard"]))
    sandbox.dummy_rule(sandbox.data_file())
    url = f"mqtt://ups-agent:{logins['ups-agent']}@127.0.0.1:{mosquitto.port}"
    sandbox.start_run(env=agent_env(mosquitto.port, MQTT_URL=url))
    assert sandbox.await_log("event=mqtt.connected", timeout=AWAIT), sandbox.run_output()
    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    # The agent may publish its state and HA's discovery; HA reads both, the dashboard the state.
    assert ha.await_json(STATE, lambda s: s["connected"] is True), Path(mosquitto.log.name).read_text()
    assert await_true(lambda: NODE.format("sensor", "battery_charge") in ha.configs(), AWAIT)
    assert dashboard.await_json(STATE, lambda s: s["connected"] is True)

    # The dashboard's press is dropped by the broker; Home Assistant's, published after it
    # (each acknowledged by the broker first), reaches the agent. mosquitto hands the agent
    # what it takes in the order it took it: had the first got through, it would be answered first.
    dashboard.publish(COMMAND, "beeper.mute")
    ha.publish(COMMAND, "beeper.toggle")
    answered = 'event=mqtt.command ups=my-ups command=beeper.toggle answer="refused: no admin login"'
    assert sandbox.await_log(answered, timeout=AWAIT), sandbox.run_output()
    assert "command=beeper.mute" not in sandbox.run_output()
    assert ha.await_json(STATE, lambda s: (s["last_command"] or {}).get("command") == "beeper.toggle")
    assert "event=mqtt.failed" not in sandbox.run_output()


def certificates(root: Path) -> tuple[Path, Path, Path]:
    """A CA of the test's own and a broker certificate it signed for 127.0.0.1 (an IP SAN,
    which the host-name check reads): (ca, cert, key)."""
    ca, ca_key, cert, key, csr = (root / n for n in ("ca.pem", "ca.key", "broker.pem", "broker.key", "broker.csr"))
    ext = root / "san.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")
    for command in (  # (the sandbox's paths hold no spaces)
        f"req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-CA -keyout {ca_key} -out {ca}",
        f"req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout {key} -out {csr}",
        f"x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -CAcreateserial -days 2 -extfile {ext} -out {cert}",
    ):
        subprocess.run(["openssl", *command.split()], check=True, capture_output=True, timeout=60)
    for path in (ca, cert, key):
        os.chmod(path, 0o644)  # (mosquitto reads them as its own user once it dropped root)
    return ca, cert, key


def test_mqtts_checks_the_brokers_certificate_and_a_ca_of_ones_own_is_given_as_ssl_cert_file(
    sandbox: Sandbox, started: list[Broker | Subscriber]
) -> None:
    ca, cert, key = certificates(sandbox.root)
    tls_port = free_port()
    # A plain listener for the test's subscriber, a TLS one for the agent.
    access = f"allow_anonymous true\nlistener {tls_port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n"
    mosquitto = broker(sandbox, started, access=access)
    sub = subscriber(mosquitto.port, started)
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.bus.plug("1-1")
    url = f"mqtts://127.0.0.1:{tls_port}"
    # The system's CAs only: the broker's certificate is refused, nothing is published.
    agent = sandbox.start_run(env=agent_env(mosquitto.port, MQTT_URL=url))
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log(f"event=mqtt.disconnected broker={url}", timeout=AWAIT), sandbox.run_output()
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
    assert "event=mqtt.connected" not in sandbox.run_output() and sub.payload(STATE) is None
    # With the CA (OpenSSL's SSL_CERT_FILE, e.g. a file mounted into the container): connected.
    sandbox.start_run(env=agent_env(mosquitto.port, MQTT_URL=url, SSL_CERT_FILE=str(ca)))
    assert sandbox.await_log(f"event=mqtt.connected broker={url}", timeout=AWAIT), sandbox.run_output()
    assert sub.await_json(STATE, lambda s: s["connected"] is True and s["status"] == "OL"), sandbox.run_output()
    assert "event=mqtt.failed" not in sandbox.run_output()


def test_a_broker_down_at_start_delays_nothing_and_a_broker_that_comes_back_gets_everything_again(
    sandbox: Sandbox, started: list[Broker | Subscriber]
) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.bus.plug("1-1")
    port = free_port()  # nothing listens there yet
    sandbox.start_run(env=agent_env(port))
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log("event=mqtt.disconnected", timeout=AWAIT), sandbox.run_output()

    broker(sandbox, started, port)
    sub = subscriber(port, started)
    assert sandbox.await_log("event=mqtt.connected", timeout=AWAIT), sandbox.run_output()
    assert sub.await_payload(STATUS, "online")
    assert sub.await_json(STATE, lambda s: s["connected"] is True and s["status"] == "OL"), sandbox.run_output()
    assert sub.await_payload(AVAILABLE, "online")
    assert NODE.format("sensor", "battery_charge") in sub.configs()

    # The broker restarted without persistence (every retained message lost): once the
    # agent is connected again, everything is there again, retained.
    for thing in reversed(started):
        thing.stop()
    started.clear()
    broker(sandbox, started, port)
    assert sandbox.await_log("event=mqtt.connected", count=2, timeout=AWAIT), sandbox.run_output()
    late = subscriber(port, started)
    assert late.await_payload(STATUS, "online") and late.retained(STATUS) is True
    assert late.await_json(STATE, lambda s: s["connected"] is True), sandbox.run_output()
    assert late.await_payload(AVAILABLE, "online")
    assert await_true(lambda: NODE.format("sensor", "battery_charge") in late.configs(), AWAIT)
    assert "event=mqtt.failed" not in sandbox.run_output()
