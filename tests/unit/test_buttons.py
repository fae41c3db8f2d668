"""The rules of a Home Assistant button press (reconcile/outputs/buttons.py, pure), how
discovery and the command check use them (outputs/homeassistant.py), and how the MQTT
worker answers a press (an event, the state's last_command) without a broker.
tests/integration/test_mqtt.py presses against real mosquitto and upsd."""

from __future__ import annotations

import ast
import json
import time
from datetime import UTC, datetime
from typing import Any

import jinja2
import pytest

from reconcile import events, settings
from reconcile.outputs import buttons, mqtt
from reconcile.outputs import homeassistant as ha
from reconcile.outputs.homeassistant import Device, Topics
from testbed import REPO

TOPICS = Topics("ups-nut-smart", "homeassistant", "pi-1")
CHARGED = {"ups.status": "OL", "battery.charge": "100"}


def test_the_rules_are_pure() -> None:
    """No I/O and no clock of their own: the caller passes the variables and the time."""
    tree = ast.parse((REPO / "reconcile/outputs/buttons.py").read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"__future__", "math", "collections.abc", "dataclasses"}, names


def test_which_commands_are_deep_start_or_stop_a_test() -> None:
    assert {c for c in ha.SAFE_COMMANDS if buttons.deep(c)} == {
        "calibrate.start",
        "calibrate.stop",
        "test.battery.start.deep",
    }
    starting = {c for c in ha.SAFE_COMMANDS if buttons.starts(c)}
    assert starting == {"test.battery.start.quick", "test.battery.start.deep", "test.panel.start", "calibrate.start"}
    stopping = {c for c in ha.SAFE_COMMANDS if buttons.stops(c)}
    assert stopping == {"test.battery.stop", "test.panel.stop", "calibrate.stop"}
    assert not any(buttons.starts(c) or buttons.stops(c) for c in ha.SAFE_COMMANDS if c.startswith("beeper."))


def test_calibrations_and_the_deep_test_need_the_opt_in() -> None:
    why = buttons.opt_in_refusal("calibrate.start", allow_deep=False)
    assert why is not None and "MQTT_ALLOW_DEEP_TESTS=1" in why
    assert buttons.opt_in_refusal("test.battery.start.deep", allow_deep=False) == why
    assert buttons.opt_in_refusal("calibrate.stop", allow_deep=False) == why
    assert buttons.opt_in_refusal("calibrate.start", allow_deep=True) is None
    assert buttons.opt_in_refusal("test.battery.start.quick", allow_deep=False) is None
    assert buttons.opt_in_refusal("beeper.toggle", allow_deep=False) is None


@pytest.mark.parametrize(
    ("variables", "refused_for"),
    [
        ({"ups.status": "OL", "battery.charge": "90"}, None),  # 90 % is enough
        ({"ups.status": "OL CHRG", "battery.charge": "100"}, None),
        ({"ups.status": "OL", "battery.charge": "89.9"}, "battery.charge is 89.9 %"),
        ({"ups.status": "OL"}, "reports no battery.charge"),
        ({"ups.status": "OL", "battery.charge": "nan"}, "reports no battery.charge"),
        ({"ups.status": "OL", "battery.charge": "full"}, "reports no battery.charge"),
        ({"ups.status": "OB DISCHRG", "battery.charge": "100"}, "'OB DISCHRG' (OB set)"),
        ({"ups.status": "OL LB", "battery.charge": "100"}, "(LB set)"),
        ({"ups.status": "OB LB", "battery.charge": "95"}, "(OB LB set)"),
        ({"ups.status": "FSD OL", "battery.charge": "100"}, "(FSD set)"),
        ({"ups.status": "OL CAL", "battery.charge": "100"}, "(CAL set)"),  # one already runs
        ({"ups.status": "OFF", "battery.charge": "100"}, "(not on line)"),
        ({"ups.status": "", "battery.charge": "100"}, "ups.status is 'empty'"),
        ({"battery.charge": "100"}, "ups.status is 'empty'"),
        (None, "no fresh data"),  # stale, or its driver not connected
    ],
)
def test_a_test_or_calibration_starts_only_on_line_and_charged(
    variables: dict[str, str] | None, refused_for: str | None
) -> None:
    for command in ("test.battery.start.quick", "test.battery.start.deep", "test.panel.start", "calibrate.start"):
        why = buttons.state_refusal(command, variables)
        if refused_for is None:
            assert why is None, command
        else:
            assert why is not None and refused_for in why, (command, why)


def test_stops_and_the_beeper_pass_whatever_the_ups_state() -> None:
    on_battery = {"ups.status": "OB LB", "battery.charge": "5"}
    for command in ("test.battery.stop", "calibrate.stop", "test.panel.stop", "beeper.mute", "beeper.toggle"):
        assert buttons.state_refusal(command, on_battery) is None, command
        assert buttons.state_refusal(command, None) is None, command


def test_one_command_per_ups_a_minute_on_the_callers_clock() -> None:
    limit = buttons.RateLimit()
    assert limit.take("my-ups", "beeper.toggle", 1000.0) is None
    assert limit.take("my-ups", "test.battery.start.quick", 1059.2) == "one command per UPS a minute: the next in 1 s"
    assert limit.take("my-ups", "beeper.toggle", 1010.0) == "one command per UPS a minute: the next in 50 s"
    assert limit.take("my-ups-2", "beeper.toggle", 1010.0) is None  # each UPS its own minute
    # A stop is never held back (it ends what drains the battery), and is not counted.
    assert limit.take("my-ups", "test.battery.stop", 1001.0) is None
    assert limit.take("my-ups", "calibrate.stop", 1002.0) is None
    assert limit.take("my-ups", "beeper.toggle", 1060.0) is None  # a minute after the first
    assert limit.take("my-ups", "beeper.toggle", 1119.9) is not None  # counted from 1060 now
    assert limit.last == {"my-ups": 1060.0, "my-ups-2": 1010.0}  # refused presses moved nothing


def test_a_flood_of_presses_is_reported_ten_at_once_then_ten_a_minute_with_the_count_held_back() -> None:
    reports = buttons.Reports()
    assert [reports.take(100.0) for _ in range(12)] == [0] * 10 + [None, None]
    assert reports.take(103.0) is None  # 0.5 of a report earned in 3 s: not yet one
    assert reports.take(106.0) == 3  # 6 s: one earned; the three held back are said with it
    assert reports.take(106.0) is None
    assert reports.take(1000.0) == 1  # long quiet: full again (never more than ten at once)
    assert [reports.take(1000.0) for _ in range(10)] == [0] * 9 + [None]


def test_the_deep_buttons_are_offered_only_with_the_opt_in() -> None:
    offered = frozenset({"calibrate.start", "calibrate.stop", "test.battery.start.deep", "test.battery.start.quick"})
    assert ha.buttons_for(offered, admin=True, ready=True) == frozenset({"test.battery.start.quick"})
    assert ha.buttons_for(offered, admin=True, ready=True, allow_deep=True) == offered
    without = ha.discovery(TOPICS, Device("my-ups", buttons=ha.buttons_for(offered, True, True)), "9.9")
    node = "homeassistant/button/pi-1_my-ups/cmd_{}/config"
    assert without[node.format("calibrate_start")] == ""  # one an earlier run with the opt-in published: removed
    assert without[node.format("test_battery_start_deep")] == ""
    assert json.loads(without[node.format("test_battery_start_quick")])["payload_press"] == "test.battery.start.quick"
    opted = ha.discovery(TOPICS, Device("my-ups", buttons=ha.buttons_for(offered, True, True, True)), "9.9")
    assert json.loads(opted[node.format("calibrate_start")])["payload_press"] == "calibrate.start"


def test_a_deep_command_is_refused_at_the_command_check_without_the_opt_in() -> None:
    ok: dict[str, Any] = {"known": True, "admin": True, "retained": False, "offered": None}
    why = ha.refusal("calibrate.start", **ok)
    assert why is not None and "MQTT_ALLOW_DEEP_TESTS" in why
    assert ha.refusal("calibrate.start", **ok, allow_deep=True) is None
    assert ha.refusal("test.battery.start.deep", **ok) == why
    assert ha.refusal("load.off", **ok, allow_deep=True) == "not in the allow-list"  # the opt-in widens nothing else


def test_the_opt_in_setting_is_parsed_like_the_others() -> None:
    base = {"MQTT_URL": "mqtt://broker"}

    def allow_deep(env: dict[str, str]) -> bool:
        config = settings._mqtt(env)  # the MQTT part of load() alone
        assert config is not None
        return config.allow_deep_tests

    assert allow_deep(base) is False
    assert allow_deep({**base, "MQTT_ALLOW_DEEP_TESTS": "1"}) is True
    assert allow_deep({**base, "MQTT_ALLOW_DEEP_TESTS": "no"}) is False
    with pytest.raises(settings.SettingsError) as err:
        allow_deep({**base, "MQTT_ALLOW_DEEP_TESTS": "sure"})
    assert err.value.variable == "MQTT_ALLOW_DEEP_TESTS" and "'sure'" in str(err.value)


LAST = "homeassistant/sensor/pi-1_my-ups/last_command/config"


def render(template: str, value: dict[str, Any]) -> str:
    """A template as Home Assistant renders it (Jinja2, the payload as value_json)."""
    return jinja2.Environment().from_string(template).render(value_json=value)


def test_the_last_command_sensor_follows_the_buttons_and_renders_the_answer() -> None:
    assert LAST not in ha.discovery(TOPICS, Device("my-ups"), "9.9")  # buttons not known: left alone
    assert ha.discovery(TOPICS, Device("my-ups", buttons=frozenset()), "9.9")[LAST] == ""  # no buttons: removed
    config = json.loads(ha.discovery(TOPICS, Device("my-ups", buttons=frozenset({"beeper.toggle"})), "9.9")[LAST])
    assert config["state_topic"] == config["json_attributes_topic"] == "ups-nut-smart/pi-1/my-ups/state"
    assert config["availability"] == [{"topic": "ups-nut-smart/pi-1/status"}]  # the agent's only
    assert config["entity_category"] == "diagnostic"
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    answer = ha.Answer("test.battery.start.quick", "refused: battery.charge is 80 %: ...", False, at)
    state = ha.state_record(CHARGED, True, answer)
    assert state["last_command"] == {
        "command": "test.battery.start.quick",
        "answer": "refused: battery.charge is 80 %: ...",
        "ok": False,
        "at": "2026-12-01T12:00:00Z",
    }
    assert render(config["value_template"], state) == "refused: battery.charge is 80 %: ..."
    assert json.loads(render(config["json_attributes_template"], state)) == state["last_command"]
    before = ha.state_record(CHARGED, True)
    assert before["last_command"] is None
    assert render(config["value_template"], before) == "None"  # HA: unknown
    assert json.loads(render(config["json_attributes_template"], before)) == {}


def test_the_worker_answers_each_press_with_an_event_and_the_state(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[events.Event] = []
    published: dict[str, str] = {}
    clock = [5000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])  # the worker's clock (mqtt.py reads time.monotonic)
    sent: list[str] = []

    def fake_instcmd(upsd: object, login: object, ups: str, command: str) -> mqtt.Outcome:
        # (instcmd itself, with its state check, meets a real upsd in tests/integration/test_mqtt.py)
        sent.append(command)
        if buttons.stops(command):
            return mqtt.Outcome("OK", ok=True)
        return mqtt.Outcome("refused: ups.status is 'OB' (OB set): ...", ok=False, refused=True)

    def publish(topic: str, payload: str) -> bool:
        published[topic] = payload
        return True

    monkeypatch.setattr(mqtt, "instcmd", fake_instcmd)
    # upsd at a port nothing listens on (9, discard): the refresh finds no data, and says so.
    worker = mqtt._Worker(TOPICS, ("127.0.0.1", 9), lambda: ("admin", "pw"), mqtt._Inbox(), publish)

    def press(command: str) -> None:
        worker._take(mqtt._Command("my-ups", command.encode(), False))

    unsubscribe = events.subscribe(seen.append)
    try:
        worker._take(events.Plugged("my-ups", "1-1", "051d:0002", None))
        worker._take(events.Tick(0.01, True, "my-ups", ""))
        press("test.battery.start.quick")
        clock[0] += 30
        press("test.battery.start.quick")
        press("calibrate.start")
        press("test.battery.stop")  # never held back by the minute
        worker._take(mqtt._Command("my-ups", b"beeper.toggle", True))  # the broker's replay of a retained one
    finally:
        unsubscribe()
    answers = [(type(e).__name__, e.command, e.answer) for e in seen if isinstance(e, events.CommandAnswer)]
    assert answers == [
        ("CommandRefused", "test.battery.start.quick", "refused: ups.status is 'OB' (OB set): ..."),
        ("CommandRefused", "test.battery.start.quick", "refused: one command per UPS a minute: the next in 30 s"),
        ("CommandRefused", "calibrate.start", f"refused: {buttons.opt_in_refusal('calibrate.start', False)}"),
        ("CommandSent", "test.battery.stop", "OK"),
        ("CommandRefused", "beeper.toggle", "refused: a retained message"),
    ]
    assert sent == ["test.battery.start.quick", "test.battery.stop"]  # the others never reached instcmd
    assert [e.level for e in seen if isinstance(e, events.CommandAnswer)] == ["warning"] * 3 + ["info", "warning"]
    worker._refresh()
    state = json.loads(published["ups-nut-smart/pi-1/my-ups/state"])
    # The last press HA shows is the last one pressed: a retained replay is no press.
    assert state["last_command"]["command"] == "test.battery.stop" and state["last_command"]["answer"] == "OK"
    assert state["last_command"]["ok"] is True and state["connected"] is False


def test_a_flood_on_the_command_topic_is_counted_not_logged_line_by_line(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[events.Event] = []
    monkeypatch.setattr(time, "monotonic", lambda: 7000.0)
    worker = mqtt._Worker(TOPICS, ("127.0.0.1", 9), lambda: None, mqtt._Inbox(), lambda t, p: True)
    unsubscribe = events.subscribe(seen.append)
    try:
        for n in range(1000):
            worker._take(mqtt._Command(f"ups-{n}", b"beeper.toggle", False))
    finally:
        unsubscribe()
    answers = [e for e in seen if isinstance(e, events.CommandAnswer)]
    assert len(answers) == 10 and {e.answer for e in answers} == {"refused: no such UPS"}
    assert all(e.unreported is None for e in answers)
    monkeypatch.setattr(time, "monotonic", lambda: 7006.0)  # a report earned again
    unsubscribe = events.subscribe(seen.append)
    try:
        worker._take(mqtt._Command("ups-x", b"load.off", False))
    finally:
        unsubscribe()
    last = seen[-1]
    assert isinstance(last, events.CommandRefused) and last.unreported == 990, last
