"""MQTT's pure parts: names and topics, the state JSON, the outage record, Home Assistant's
discovery payloads and the buttons rule. No broker, no upsd (tests/integration/test_mqtt.py
has both)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jinja2
import pytest

from reconcile import events
from reconcile.observe import upsd_client
from reconcile.outputs import homeassistant as ha
from reconcile.outputs import mqtt
from reconcile.outputs.homeassistant import Device, Outage, Topics
from reconcile.settings import Mqtt

TOPICS = Topics("ups-nut-smart", "homeassistant", "pi-1")
VARIABLES = {
    "ups.status": "OB DISCHRG LB",
    "battery.charge": "91",
    "battery.runtime": "1200",
    "ups.load": "17",
    "input.voltage": "230.5",
    "device.model": "Back-UPS ES 700G",
    "device.mfr": "APC",
    "device.serial": "3B1234X56789",
    "ups.mfr": "American Power Conversion",
}
T0 = datetime(2026, 11, 28, 23, 30, 0, tzinfo=UTC)


def test_names_become_safe_topic_levels_and_object_ids() -> None:
    assert ha.topic_part("my-ups.2_x") == "my-ups.2_x"  # NUT's names are topic-safe as they are
    assert ha.topic_part("a/b+c#") == "a_b_c_" and ha.topic_part("") == "_"
    assert ha.object_id("my-ups.2_x") == "my-ups_2_x"  # HA's ids take no dot
    assert ha.object_id("pi.local") == "pi_local" and ha.object_id("") == "_"


def test_the_topics_of_a_host_and_its_upses() -> None:
    topics = Topics("ups-nut-smart", "homeassistant", "pi.lan")
    assert topics.status == "ups-nut-smart/pi.lan/status"
    assert topics.ups("rack.1", "state") == "ups-nut-smart/pi.lan/rack.1/state"
    assert topics.node_id("rack.1") == "pi_lan_rack_1"
    assert topics.config("sensor", "rack.1", "load") == "homeassistant/sensor/pi_lan_rack_1/load/config"
    assert topics.any_ups("command") == "ups-nut-smart/pi.lan/+/command"
    assert topics.ups_of("ups-nut-smart/pi.lan/rack.1/command", "command") == "rack.1"
    assert topics.ups_of("ups-nut-smart/pi.lan/a/b/command", "command") is None
    assert topics.ups_of("ups-nut-smart/other/rack.1/command", "command") is None
    assert topics.ups_of("ups-nut-smart/pi.lan/rack.1/state", "command") is None
    assert topics.ha_status == "homeassistant/status"


def test_the_allow_list_takes_tests_and_the_beeper_and_never_a_load_or_shutdown_command() -> None:
    assert all(ha.allowed(c) for c in ha.SAFE_COMMANDS)
    assert ha.allowed("beeper.toggle") and ha.allowed("beeper.new.kind")
    never = [
        "load.off",
        "load.off.delay",
        "load.on",
        "load.on.delay",
        "shutdown.return",
        "shutdown.stayoff",
        "shutdown.reboot",
        "outlet.1.load.off",
        "driver.killpower",
        "beeper.load.off",
        "beeper.shutdown.return",
        "beeper.toggle\nFSD my-ups",
        "beeper.toggle ",
        "BEEPER.TOGGLE",
        "test.battery.start",
        "",
    ]
    assert [c for c in never if ha.allowed(c)] == []


def test_buttons_exist_only_with_an_admin_login_and_what_the_ups_offers() -> None:
    offered = frozenset({"load.off", "beeper.toggle", "test.battery.start.quick", "shutdown.return"})
    assert ha.buttons_for(offered, admin=True, ready=True) == frozenset({"beeper.toggle", "test.battery.start.quick"})
    assert ha.buttons_for(offered, admin=False, ready=True) == frozenset()  # all removed
    assert ha.buttons_for(None, admin=True, ready=True) is None  # not asked yet: left alone
    assert ha.buttons_for(offered, admin=True, ready=False) is None  # before the first pass


def test_a_command_from_the_broker_is_refused_unless_every_check_passes() -> None:
    ok = {"known": True, "admin": True, "retained": False, "offered": frozenset({"beeper.toggle", "load.off"})}
    assert ha.refusal("beeper.toggle", **ok) is None  # type: ignore[arg-type]
    assert ha.refusal("beeper.toggle", **(ok | {"offered": None})) is None  # type: ignore[arg-type]
    assert ha.refusal("load.off", **ok) == "not in the allow-list"  # type: ignore[arg-type]
    assert ha.refusal("beeper.mute", **ok) == "not offered by the UPS"  # type: ignore[arg-type]
    assert ha.refusal("beeper.toggle", **(ok | {"admin": False})) == "no admin login"  # type: ignore[arg-type]
    assert ha.refusal("beeper.toggle", **(ok | {"known": False})) == "no such UPS"  # type: ignore[arg-type]
    assert ha.refusal("beeper.toggle", **(ok | {"retained": True})) == "a retained message"  # type: ignore[arg-type]


def test_the_state_json_from_upsds_variables() -> None:
    assert ha.state_record(VARIABLES, True) == {
        "status": "OB DISCHRG LB",
        "charge": 91,
        "runtime": 1200,
        "load": 17,
        "input_voltage": 230.5,
        "on_battery": True,
        "low_battery": True,
        "replace_battery": False,
        "connected": True,
        "model": "Back-UPS ES 700G",
        "last_command": None,  # no button pressed yet (tests/unit/test_buttons.py presses them)
    }
    nothing = ha.state_record({}, False)
    assert nothing["connected"] is False and nothing["status"] is None and nothing["on_battery"] is None
    assert {k for k, v in nothing.items() if v is not None} == {"connected"}
    assert ha.state_record({"ups.status": "OL RB", "ups.model": "X"}, True)["replace_battery"] is True
    assert ha.state_record({"ups.model": "X"}, True)["model"] == "X"  # ups.model without device.model
    both = {"device.model": "New", "ups.model": "Old", "device.mfr": "Maker", "ups.mfr": "Older"}
    assert (upsd_client.model_of(both), upsd_client.mfr_of(both)) == ("New", "Maker")
    assert upsd_client.mfr_of({"ups.mfr": "Older"}) == "Older" and upsd_client.model_of({"device.model": ""}) is None
    # The one parser of a NUT number (upsd_client.number, as metrics and notices read it), kept
    # whole where written whole: an exponent is a number there too, inf and nan are not.
    assert [ha.number(v) for v in ("91", "13.60", "-2", " 7 ", "1e3", "inf", "nan", "OL", "", None)] == [
        91,
        13.6,
        -2,
        7,
        1000.0,
        None,
        None,
        None,
        None,
        None,
    ]


def test_an_outage_starts_on_battery_keeps_its_start_and_ends_on_line() -> None:
    assert ha.next_outage(None, False, T0, 1200) is None  # on line, no outage yet
    started = ha.next_outage(None, True, T0, 1200)
    assert started == Outage("on_battery", T0, estimate=T0 + timedelta(seconds=1200), runtime=1200)
    assert started.payload() == {
        "state": "on_battery",
        "started": "2026-11-28T23:30:00Z",
        "battery_empty_estimate": "2026-11-28T23:50:00Z",
        "runtime": 1200,
    }
    # The same runtime a second later: the same record (not a new estimate every second).
    assert ha.next_outage(started, True, T0 + timedelta(seconds=1), 1200) is started
    later = ha.next_outage(started, True, T0 + timedelta(seconds=60), 1000)
    assert later is not None and later.started == T0 and later.estimate == T0 + timedelta(seconds=1060)
    unknown = ha.next_outage(started, True, T0, None)
    assert unknown is not None and unknown.payload()["battery_empty_estimate"] is None
    assert ha.next_outage(later, None, T0 + timedelta(hours=1), None) is later  # no fresh data: nothing known
    ended = ha.next_outage(later, False, T0 + timedelta(seconds=300), 1500)
    assert ended is not None and ended.payload() == {
        "state": "ended",
        "started": "2026-11-28T23:30:00Z",
        "ended": "2026-11-28T23:35:00Z",
    }
    assert ha.next_outage(ended, False, T0 + timedelta(hours=1), 1500) is ended
    again = ha.next_outage(ended, True, T0 + timedelta(hours=2), 1500)
    assert again is not None and again.started == T0 + timedelta(hours=2)  # a new outage


def test_an_outage_record_from_before_a_restart_is_read_back_and_adopted() -> None:
    before = Outage("on_battery", T0, estimate=T0 + timedelta(seconds=1200), runtime=1200)
    assert Outage.parse(json.dumps(before.payload()).encode()) == before
    ended = Outage("ended", T0, ended=T0 + timedelta(minutes=5))
    assert Outage.parse(json.dumps(ended.payload()).encode()) == ended
    for junk in (b"", b"{}", b"[1]", b'{"state": "on_battery", "started": "yesterday"}', b"\xff", b'{"state": "x"}'):
        assert Outage.parse(junk) is None, junk
    now = Outage("on_battery", T0 + timedelta(minutes=3), runtime=900)
    adopted = ha.adopt(now, before)
    assert adopted is not None and adopted.started == T0 and adopted.runtime == 900  # still the same outage
    assert ha.adopt(None, before) == before  # ended at the next read if the UPS is on line then
    assert ha.next_outage(ha.adopt(None, before), False, T0 + timedelta(hours=1), 1500) == Outage(
        "ended", T0, ended=T0 + timedelta(hours=1)
    )
    assert ha.adopt(now, ended) is now and ha.adopt(now, None) is now


def configs(device: Device) -> dict[str, Any]:
    return {t: (json.loads(p) if p else "") for t, p in ha.discovery(TOPICS, device, "9.9").items()}


def node(component: str, key: str) -> str:
    return f"homeassistant/{component}/pi-1_my-ups/{key}/config"


def test_the_discovery_configs_of_a_ups() -> None:
    device = Device("my-ups", "Back-UPS ES 700G", "APC", frozenset(VARIABLES))
    found = configs(device)
    assert set(found) == {
        *(node("sensor", k) for k in ("status", "battery_charge", "battery_runtime", "load", "input_voltage")),
        *(node("binary_sensor", k) for k in ("on_battery", "low_battery", "replace_battery", "connected")),
    }  # no button topic at all while buttons are not known
    charge = found[node("sensor", "battery_charge")]
    assert charge["device"] == {
        "identifiers": ["ups-nut-smart_pi-1_my-ups"],
        "name": "pi-1 my-ups",
        "manufacturer": "APC",
        "model": "Back-UPS ES 700G",
        "sw_version": "9.9",
    }
    assert "3B1234X56789" not in json.dumps(found)  # the serial is never the identity (twins share one)
    assert (charge["device_class"], charge["unit_of_measurement"], charge["state_class"]) == (
        "battery",
        "%",
        "measurement",
    )
    assert charge["unique_id"] == "ups-nut-smart_pi-1_my-ups_battery_charge"
    assert charge["state_topic"] == "ups-nut-smart/pi-1/my-ups/state"
    status, available = {"topic": "ups-nut-smart/pi-1/status"}, {"topic": "ups-nut-smart/pi-1/my-ups/available"}
    assert (charge["availability"], charge["availability_mode"]) == ([status, available], "all")
    runtime = found[node("sensor", "battery_runtime")]
    assert (runtime["device_class"], runtime["unit_of_measurement"]) == ("duration", "s")
    load = found[node("sensor", "load")]
    assert "device_class" not in load and load["unit_of_measurement"] == "%" and load["state_class"] == "measurement"
    voltage = found[node("sensor", "input_voltage")]
    assert (voltage["device_class"], voltage["unit_of_measurement"]) == ("voltage", "V")
    assert found[node("binary_sensor", "low_battery")]["device_class"] == "battery"
    assert found[node("binary_sensor", "replace_battery")]["device_class"] == "problem"
    assert "device_class" not in found[node("binary_sensor", "on_battery")]
    connected = found[node("binary_sensor", "connected")]
    assert connected["device_class"] == "connectivity" and connected["availability"] == [status]
    ids = [c["unique_id"] for c in found.values()]
    assert len(set(ids)) == len(ids)


def test_each_value_template_renders_its_reading_as_home_assistant_would() -> None:
    state = ha.state_record(VARIABLES, True)
    rendered = {
        t.split("/")[-2]: jinja2.Environment().from_string(c["value_template"]).render(value_json=state)
        for t, c in configs(Device("my-ups", variables=frozenset(VARIABLES))).items()
    }
    assert rendered == {
        "status": "OB DISCHRG LB",
        "battery_charge": "91",
        "battery_runtime": "1200",
        "load": "17",
        "input_voltage": "230.5",
        "on_battery": "ON",
        "low_battery": "ON",
        "replace_battery": "OFF",
        "connected": "ON",
    }
    # A reading the UPS does not have renders as HA's "None" (unknown), never a wrong number.
    empty = ha.state_record({}, False)
    template = configs(Device("my-ups", variables=frozenset(VARIABLES)))[node("sensor", "battery_charge")]
    assert jinja2.Environment().from_string(template["value_template"]).render(value_json=empty) == "None"


def test_sensors_follow_what_the_ups_reports_and_are_left_alone_while_unknown() -> None:
    unknown = configs(Device("my-ups"))  # never seen with data: no model, sensors not known
    assert node("sensor", "battery_charge") not in unknown and node("sensor", "load") not in unknown
    assert node("binary_sensor", "connected") in unknown and "model" not in unknown[node("sensor", "status")]["device"]
    fewer = configs(Device("my-ups", "CP1500", "CPS", frozenset({"ups.status", "battery.charge"})))
    assert fewer[node("sensor", "load")] == "" and fewer[node("sensor", "input_voltage")] == ""  # removed
    assert fewer[node("sensor", "battery_charge")]["device"]["model"] == "CP1500"


def test_the_buttons_are_published_for_offered_safe_commands_and_removed_otherwise() -> None:
    none = configs(Device("my-ups", buttons=frozenset()))
    buttons = {t: c for t, c in none.items() if "/button/" in t}
    assert len(buttons) == len(ha.SAFE_COMMANDS) and set(buttons.values()) == {""}  # every stale one removed
    some = configs(
        Device("my-ups", buttons=frozenset({"test.battery.start.quick"}), earlier_buttons=frozenset({"beeper.weird"}))
    )
    quick = some[node("button", "cmd_test_battery_start_quick")]
    assert quick["command_topic"] == "ups-nut-smart/pi-1/my-ups/command"
    assert quick["payload_press"] == "test.battery.start.quick" and quick["name"] == "Quick battery test"
    assert len(quick["availability"]) == 2 and quick["device"]["identifiers"] == ["ups-nut-smart_pi-1_my-ups"]
    assert some[node("button", "cmd_beeper_weird")] == ""  # published earlier, not offered now
    assert some[node("button", "cmd_beeper_toggle")] == ""
    # Even a caller that asks for an unsafe one gets no such button.
    bad = configs(Device("my-ups", buttons=frozenset({"load.off"})))
    assert bad[node("button", "cmd_load_off")] == ""


def test_the_consumer_only_enqueues_never_blocks_and_never_raises() -> None:
    config = Mqtt("127.0.0.1", 9, False, "user", "pw", "ups-nut-smart", "homeassistant")
    output = mqtt.MqttOutput(config, "pi-1", ("127.0.0.1", 9), lambda: None)  # not started: no I/O
    output.consume(events.FileWritten("ups.conf", "changed"))  # not one MQTT reacts to
    assert output.inbox.queue.qsize() == 0
    began = time.monotonic()
    for _ in range(mqtt.QUEUE_MAX + 500):  # more than the queue holds: dropped, never waited for
        output.consume(events.Tick(0.01, True, "my-ups", ""))
    assert time.monotonic() - began < 1.0
    assert output.inbox.queue.qsize() == mqtt.QUEUE_MAX
    output.consume(events.Unplugged("my-ups", "1-1"))  # still no exception when full


@pytest.mark.parametrize("rc", [0, 5])
def test_paho_results_of_either_api_as_numbers(rc: int) -> None:
    class ReasonCode:  # paho 2.x's, reduced to what _code reads
        value = rc

    assert mqtt._code(rc) == rc and mqtt._code(ReasonCode()) == rc
