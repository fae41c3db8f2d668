"""The /metrics series, from upsd's variables and from the event stream: pure, no server."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from reconcile import events
from reconcile.observe import upsd_client
from reconcile.outputs import metrics
from testbed.nut import free_port

VARIABLES = {
    "battery.charge": "91",
    "battery.runtime": "1200",
    "battery.voltage": "13.60",
    "ups.status": "OB DISCHRG",
    "ups.beeper.status": "enabled",
    "device.model": "Back-UPS ES 700",
    "device.mfr": "APC",
    "device.serial": "3B1234X56789",
    "driver.name": "usbhid-ups",
    "input.transfer-high": "266",
}


def by_name(samples: list[metrics.Sample]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, s.labels): s.value for s in samples}


def test_ups_variables_become_nut_exporters_names_with_a_ups_label() -> None:
    samples = by_name(metrics.ups_samples("my-ups", VARIABLES))
    ups = (("ups", "my-ups"),)
    assert samples[("network_ups_tools_battery_charge", ups)] == 91.0
    assert samples[("network_ups_tools_battery_voltage", ups)] == 13.6
    assert samples[("network_ups_tools_input_transfer_high", ups)] == 266.0  # dashes too
    names = {name for name, _ in samples}
    assert "network_ups_tools_ups_beeper_status" not in names and "network_ups_tools_driver_name" not in names
    flags = {dict(labels)["flag"]: v for (name, labels), v in samples.items() if name == "network_ups_tools_ups_status"}
    assert set(metrics.STATUS_FLAGS) <= set(flags)  # every known flag, present and 0 when not set
    assert flags["OB"] == 1.0 and flags["DISCHRG"] == 1.0 and flags["OL"] == 0.0 and flags["LB"] == 0.0
    info = [dict(labels) for (name, labels), _ in samples.items() if name == "network_ups_tools_device_info"]
    assert info == [
        {**dict.fromkeys(metrics.DEVICE_LABELS, ""), "model": "Back-UPS ES 700", "mfr": "APC"}
        | {"serial": "3B1234X56789", "ups": "my-ups"}
    ]


def test_a_flag_outside_the_known_list_is_still_shown() -> None:
    samples = by_name(metrics.ups_samples("rack", {"ups.status": "OL ALARM"}))
    assert samples[("network_ups_tools_ups_status", (("flag", "ALARM"), ("ups", "rack")))] == 1.0


def test_numbers_and_names() -> None:
    assert [upsd_client.number(v) for v in ("91", "-3.5", "1e3", " 7 ")] == [91.0, -3.5, 1000.0, 7.0]
    assert [upsd_client.number(v) for v in ("OL", "nan", "inf", "", "1.2.3")] == [None] * 5
    assert metrics.metric_name("ups.load") == "network_ups_tools_ups_load"
    assert metrics.metric_name("ups.bad name") is None


def test_the_agents_own_metrics_follow_the_event_stream() -> None:
    registry = CollectorRegistry()
    agent = metrics.AgentMetrics(registry)
    agent.consume(events.Plugged("my-ups", "1-1", "051d:0002", "Back-UPS"))
    agent.consume(events.StepDone("start_driver", "my-ups", "usbhid-ups", "new UPS", 10))
    agent.consume(events.StepDone("start_driver", "my-ups", "usbhid-ups", "not running", 11))
    agent.consume(events.DriverHealed("my-ups", "12"))
    agent.consume(events.Tick(0.004, True, "my-ups", ""))
    value = registry.get_sample_value
    assert value("ups_nut_smart_hotplug_events_total", {"kind": "plugged"}) == 1.0
    assert value("ups_nut_smart_driver_restarts_total", {"ups": "my-ups", "reason": "not running"}) == 1.0
    assert value("ups_nut_smart_driver_restarts_total", {"ups": "my-ups", "reason": "new UPS"}) is None
    assert value("ups_nut_smart_stale_heals_total", {"ups": "my-ups"}) == 1.0
    assert value("ups_nut_smart_stale_seconds_total", {"ups": "my-ups"}) == 12.0
    assert value("ups_nut_smart_usb_present", {"ups": "my-ups"}) == 1.0
    assert value("ups_nut_smart_tick_seconds_count") == 1.0
    last = value("ups_nut_smart_last_success_timestamp_seconds")
    assert last is not None and last > 0

    agent.consume(events.Tick(0.003, True, "", "my-ups"))  # gone from the bus on battery: held
    assert value("ups_nut_smart_usb_present", {"ups": "my-ups"}) == 0.0
    assert value("ups_nut_smart_held", {"ups": "my-ups"}) == 1.0
    last = value("ups_nut_smart_last_success_timestamp_seconds")
    agent.consume(events.Tick(0.5, False, "", ""))  # a failed tick: timed, but no success
    assert value("ups_nut_smart_tick_seconds_count") == 3.0
    assert value("ups_nut_smart_last_success_timestamp_seconds") == last
    assert value("ups_nut_smart_held", {"ups": "my-ups"}) == 1.0  # unchanged by a failed tick


def test_with_upsd_down_the_scrape_says_so_and_still_serves_the_build_info() -> None:
    registry = CollectorRegistry()
    registry.register(metrics.UpsdCollector("127.0.0.1", free_port()))
    assert registry.get_sample_value("ups_nut_smart_upsd_up") == 0.0
    from reconcile import __version__

    assert registry.get_sample_value("ups_nut_smart_build_info", {"version": __version__, "nut_version": ""}) == 1.0


def test_scrapes_within_a_second_share_one_upsd_read(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[tuple[str, int]] = []
    real = metrics.read_upsd

    def counting(host: str, port: int) -> metrics.UpsdReading:
        reads.append((host, port))
        return real(host, port)  # a real read: upsd is down here, so the connection is refused

    monkeypatch.setattr(metrics, "read_upsd", counting)
    now = [100.0]
    registry = CollectorRegistry()
    registry.register(metrics.UpsdCollector("127.0.0.1", free_port(), clock=lambda: now[0]))
    expected = {100.0: 1, 100.5: 1, 100.999: 1, 101.0: 2, 101.5: 2, 104.0: 3}
    for at, count in expected.items():
        now[0] = at
        assert registry.get_sample_value("ups_nut_smart_upsd_up") == 0.0  # a failed read is shared too
        assert len(reads) == count, at
