"""Notifications without I/O: which event makes which notice, what a message says, the
debounce (time passed in), the settings, and the relay's datagram check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile import events
from reconcile.outputs.notices import Debounce, Notice, Policy, Readings, backoff_ups, compose, notice_for
from reconcile.outputs.notify import parse_datagram
from reconcile.settings import DEFAULT_NOTICES, SettingsError, load

POLICY = Policy(deadtime=15, off_delay=120)
READINGS = Readings(model="Back-UPS ES 700", charge=62.0, runtime=1500.0, status="OB DISCHRG")


def test_events_make_the_notices_named_in_notify_events() -> None:
    cases: list[tuple[events.Event, str]] = [
        (events.UpsmonNotice("ONBATT", "my-ups", "UPS my-ups@127.0.0.1:3493 on battery"), "ONBATT"),
        (events.Plugged("my-ups", "1-1", "051d:0002", "Back-UPS"), "plugged"),
        (events.Unplugged("my-ups", "1-1"), "unplugged"),
        (events.Swapped("my-ups", "a", "b"), "swapped"),
        (events.DriverHealed("my-ups", "42"), "healed"),
        (events.BackoffHold("driver:my-ups (retry in 4s)"), "backoff"),
        (events.Held("my-ups"), "held"),
        (events.Released("my-ups", "back on line"), "released"),
        (events.FsdCleared("my-ups", 300), "fsd_cleared"),
        (events.PowerCycled("my-ups", 120, "INSTCMD my-ups shutdown.return", "OK", True), "power_cycle"),
    ]
    for event, name in cases:
        notice = notice_for(event, frozenset())
        assert notice is not None and notice.name == name, event
    assert notice_for(events.PassDone(3, 0, 0), frozenset()) is None
    assert notice_for(events.FileWritten("ups.conf", "update"), frozenset()) is None


def test_a_driver_backing_off_is_told_once_per_episode_and_upsd_backoff_is_not_a_ups() -> None:
    held = events.BackoffHold("driver:my-ups (retry in 8s)")
    assert notice_for(held, frozenset({"my-ups"})) is None
    assert backoff_ups("driver:my-ups (retry in 2s)") == "my-ups"
    assert backoff_ups("upsd (retry in 2s)") is None


def test_on_battery_names_host_ups_model_charge_runtime_and_the_shutdown_at_low_battery() -> None:
    message = compose(Notice("ONBATT", "my-ups"), "pi-rack", READINGS, POLICY)
    assert message.title == "[pi-rack] my-ups: on battery" and message.type == "warning"
    assert message.body.splitlines() == [
        "UPS my-ups (Back-UPS ES 700) on pi-rack: on battery.",
        "Now: charge 62 %, runtime 25 min, status OB DISCHRG.",
        "Next: This host shuts down when the battery runs low (LB). About 25 min of runtime left.",
    ]


def test_low_battery_says_whether_the_ups_power_cycles_the_load() -> None:
    cycles = compose(Notice("LOWBATT", "my-ups"), "pi", READINGS, POLICY).body
    assert "cuts its load after 120 s and restores it when mains return" in cycles
    cannot = Policy(deadtime=15, off_delay=120, no_power_cycle=frozenset({"my-ups"}))
    assert "not power-cycled" in compose(Notice("LOWBATT", "my-ups"), "pi", READINGS, cannot).body
    never = Policy(deadtime=15, off_delay=0)
    assert "not power-cycled" in compose(Notice("FSD", "my-ups"), "pi", READINGS, never).body


def test_held_and_commbad_give_the_deadtime_and_shutdown_names_the_host() -> None:
    assert (
        "within 15 s (DEADTIME), this host shuts down" in compose(Notice("held", "my-ups"), "pi", READINGS, POLICY).body
    )
    assert "silent for 15 s (DEADTIME)" in compose(Notice("COMMBAD", "my-ups"), "pi", READINGS, POLICY).body
    shutdown = compose(Notice("SHUTDOWN", None), "pi", Readings(), POLICY)
    assert shutdown.title == "[pi] shutting down" and shutdown.type == "failure"
    healed = compose(Notice("healed", "my-ups", seconds=42), "pi", Readings(), POLICY)
    assert "It was stale for 42 s." in healed.body and "Now:" not in healed.body


def test_debounce_sends_the_first_at_once_and_sums_up_the_rest_at_the_windows_end() -> None:
    d = Debounce(window=30.0)
    d, now = d.offer(Notice("unplugged", "my-ups"), 100.0)
    assert [n.name for n in now] == ["unplugged"]
    for t, name in ((101.0, "plugged"), (102.0, "unplugged"), (103.0, "plugged")):
        d, now = d.offer(Notice(name, "my-ups"), t)
        assert now == ()
    d, now = d.due(129.9)
    assert now == () and d.next_due() == 130.0
    d, now = d.due(130.0)
    assert len(now) == 1 and now[0].name == "plugged"
    assert "plugged in x2" in now[0].detail and "unplugged x1" in now[0].detail
    # The summary opened a window; with nothing in it, it closes and the next one goes at once.
    d, now = d.due(160.0)
    assert now == () and d.ends == {}
    d, now = d.offer(Notice("unplugged", "my-ups"), 161.0)
    assert len(now) == 1


def test_debounce_never_holds_a_power_notice_and_keeps_upses_apart() -> None:
    d, _ = Debounce(window=30.0).offer(Notice("unplugged", "a"), 0.0)
    d, now = d.offer(Notice("unplugged", "b"), 1.0)
    assert len(now) == 1  # another UPS: its own window
    for name in ("ONBATT", "LOWBATT", "SHUTDOWN", "held", "power_cycle", "fsd_cleared"):
        d, now = d.offer(Notice(name, "a"), 2.0)
        assert len(now) == 1, name
    _, now = Debounce(window=0).offer(Notice("plugged", "a"), 0.0)
    assert len(now) == 1


BASE = {"NUT_STATEPATH": "/var/run/nut", "RECONCILE_STATE": "/var/lib/nut-reconcile"}


def test_notify_settings_default_events_and_choices(tmp_path: Path) -> None:
    s = load({**BASE, "NOTIFY_URLS": "json://127.0.0.1/hook, ntfy://topic"})
    assert s.notify is not None and s.notify.urls == ("json://127.0.0.1/hook", "ntfy://topic")
    assert s.notify.events == DEFAULT_NOTICES and "COMMBAD" not in s.notify.events
    assert s.notify.schemes == "json,ntfy" and "127.0.0.1" not in repr(s.notify)
    # One bare program path (NUT 2.8.4 and 2.8.6 alike); the socket is found from NUT_STATEPATH.
    assert s.notify.notify_cmd.startswith("/") and s.notify.notify_cmd.endswith("/nut-reconcile-notify")
    assert str(s.notify.socket) == "/var/run/nut/nut-reconcile-notify.sock"
    chosen = load({**BASE, "NOTIFY_URLS": "json://x/y", "NOTIFY_EVENTS": "default,-held,commbad"})
    assert chosen.notify is not None and "held" not in chosen.notify.events and "COMMBAD" in chosen.notify.events
    secret = tmp_path / "urls"
    secret.write_text("tgram://bottoken/chat\n")
    from_file = load({**BASE, "NOTIFY_URLS_FILE": str(secret)})
    assert from_file.notify is not None and from_file.notify.urls == ("tgram://bottoken/chat",)
    assert load(BASE).notify is None


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"NOTIFY_URLS": "not-a-url-s3cret"}, "NOTIFY_URLS"),
        ({"NOTIFY_URLS": "json://x/y", "NOTIFY_EVENTS": "onfire"}, "NOTIFY_EVENTS"),
        ({"NOTIFY_URLS": "json://x/y", "NOTIFY_EVENTS": "-all"}, "NOTIFY_EVENTS"),
        ({"NOTIFY_URLS": "json://x/y", "NOTIFY_DEBOUNCE": "soon"}, "NOTIFY_DEBOUNCE"),
        ({"NOTIFY_URLS": "json://x/y", "NOTIFY_TIMEOUT": "0"}, "NOTIFY_TIMEOUT"),
        ({"NOTIFY_URLS": "json://x/y", "NUT_STATEPATH": "/" + "x" * 120}, "NUT_STATEPATH"),
        ({"HOST_NAME": "pi rack"}, "HOST_NAME"),
        ({"MQTT_URL": "http://broker"}, "MQTT_URL"),
        ({"MQTT_URL": "mqtt://broker", "MQTT_PREFIX": "a/#"}, "MQTT_PREFIX"),
    ],
)
def test_bad_output_settings_name_the_variable_and_never_echo_a_url(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as error:
        load({**BASE, **env})
    assert error.value.variable == variable
    assert "s3cret" not in str(error.value)


def test_mqtt_url_gives_broker_credentials_and_prefixes() -> None:
    s = load({**BASE, "MQTT_URL": "mqtts://ha:p%40ss@broker.lan", "HOST_NAME": "pi-rack"})
    assert s.mqtt is not None and (s.mqtt.host, s.mqtt.port, s.mqtt.tls) == ("broker.lan", 8883, True)
    assert (s.mqtt.username, s.mqtt.password) == ("ha", "p@ss") and "p@ss" not in repr(s.mqtt)
    assert s.mqtt.where == "mqtts://broker.lan:8883" and s.host_name == "pi-rack"
    assert (s.mqtt.prefix, s.mqtt.discovery_prefix) == ("ups-nut-smart", "homeassistant")


def test_the_relay_datagram_is_checked_and_its_ups_is_the_served_name() -> None:
    good = json.dumps({"type": "ONBATT", "ups": "my-ups@127.0.0.1:3493", "message": "UPS my-ups on battery"})
    relayed = parse_datagram(good.encode())
    assert (relayed.type, relayed.ups) == ("ONBATT", "my-ups")
    assert parse_datagram(json.dumps({"type": "SHUTDOWN", "ups": "", "message": "x"}).encode()).ups is None
    for bad in (
        {"type": "REBOOT", "ups": "my-ups", "message": "x"},
        {"type": "ONBATT", "ups": "my ups", "message": "x"},
        {"type": "ONBATT", "ups": "my-ups", "message": "x" * 600},
        {"type": "ONBATT", "ups": "my-ups", "message": "\x1b[31m"},
        {"type": "ONBATT", "ups": "my-ups"},
    ):
        with pytest.raises(ValueError):
            parse_datagram(json.dumps(bad).encode())
    with pytest.raises(ValueError):
        parse_datagram(b"\xff\xfe")
