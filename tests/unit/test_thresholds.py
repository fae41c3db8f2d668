"""The owner's own shutdown thresholds ([[device]] low_battery_percent, low_runtime_seconds,
on_battery_max_seconds): how they are checked, what they write into ups.conf, upssched.conf
and upsmon.conf, and how `status` and the notifications say them. End to end against real
NUT: tests/faults/test_thresholds.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from fleet import data
from reconcile.cli import thresholds_view
from reconcile.decide.desired import build
from reconcile.decide.render import render_all
from reconcile.model import UPSSCHED_NOTICES, NutConfig, Secrets, Thresholds, Ups, Upssched, UsbDevice
from reconcile.nutsyntax import tokenize
from reconcile.outputs import relay
from reconcile.outputs.notices import Notice, Policy, Readings, compose
from reconcile.outputs.notify import upssched_timers
from reconcile.outputs.relay import has_timers
from reconcile.settings import load as load_settings
from reconcile.settings import upssched_for
from reconcile.simulate import drill_state, state_at
from reconcile.userconfig import ConfigError, UserConfig, parse

USB = UsbDevice("1-1", "051d", "0002", 1, 2, "3B1234X56789", "APC", "Back-UPS")
SCHED = Upssched(
    relay="/usr/local/bin/nut-reconcile-notify",
    upsmon="/opt/nut/sbin/upsmon",
    pipe="/var/lib/nut-reconcile/upssched.pipe",
    lock="/var/lib/nut-reconcile/upssched.lock",
)
MATCH = {"match": {"vendorid": "051d", "productid": "0002"}}


def user_with(notify_cmd: str | None = None, **rule: Any) -> UserConfig:
    return dataclasses.replace(parse({"device": [{**MATCH, **rule}]}), upssched=SCHED, notify_cmd=notify_cmd)


def config_for(user: UserConfig) -> NutConfig:
    ups = Ups(USB, "usbhid-ups", "rule", True, user.rules[0])
    config, problems = build([ups], [], {ups.key: "my-ups"}, "my-ups", user, Secrets(None, "m", "u"), "/run/nut", "nut")
    assert problems == ()
    return config


def lines(text: str) -> list[list[str]]:
    return tokenize(text)  # as NUT's own parser reads the file


# --- checked ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"low_battery_percent": 150}, "device[0].low_battery_percent: 150 is not a whole number from 5 to 95"),
        ({"low_battery_percent": 4}, "device[0].low_battery_percent: 4 is not a whole number from 5 to 95"),
        ({"low_battery_percent": "50"}, "device[0].low_battery_percent: '50' is not a whole number from 5 to 95"),
        ({"low_battery_percent": 50.0}, "device[0].low_battery_percent: 50.0 is not a whole number from 5 to 95"),
        ({"low_battery_percent": True}, "device[0].low_battery_percent: True is not a whole number from 5 to 95"),
        ({"low_runtime_seconds": 30}, "device[0].low_runtime_seconds: 30 is not a whole number from 60 to 7200"),
        ({"low_runtime_seconds": 9000}, "device[0].low_runtime_seconds: 9000 is not a whole number from 60 to 7200"),
        ({"on_battery_max_seconds": 5}, "device[0].on_battery_max_seconds: 5 is not a whole number from 10 to 86400"),
        ({"on_battery_max_seconds": -1}, "device[0].on_battery_max_seconds: -1 is not a whole number from 10 to"),
        ({"low_battery_percent": 50, "ignore": True}, "device[0]: low_battery_percent with ignore = true"),
        (
            {"on_battery_max_seconds": 60, "powers_host": False},
            "device[0].on_battery_max_seconds needs powers_host = true",
        ),
        (
            {"low_battery_percent": 50, "options": {"override.battery.charge.low": 30}},
            "device[0].options.override.battery.charge.low: set by the agent from low_battery_percent",
        ),
        ({"low_runtime_seconds": 300, "options": {"ignorelb": True}}, "device[0].options.ignorelb: set by the agent"),
    ],
)
def test_a_bad_threshold_names_the_rule_and_the_key(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse({"device": [{**MATCH, **rule}]})
    assert str(err.value).startswith(message), str(err.value)


def test_a_bad_threshold_in_fleet_host_data_stops_that_host_naming_the_devices_key() -> None:
    devices = [{**MATCH, "name": "cabin-ups", "low_battery_percent": 150}]
    with pytest.raises(data.DataError) as err:
        data.load("pi1", lambda key: devices if key == "devices" else data.DEFAULTS[key], {})
    assert err.value.key == "devices" and "low_battery_percent: 150 is not a whole number from 5 to 95" in str(
        err.value
    )


def test_good_thresholds_pass_through_fleet_host_data_into_the_agents_toml() -> None:
    devices = [{**MATCH, "low_battery_percent": 50, "low_runtime_seconds": 300, "on_battery_max_seconds": 600}]
    config = data.load("pi1", lambda key: devices if key == "devices" else data.DEFAULTS[key], {})
    assert config.devices[0]["on_battery_max_seconds"] == 600


def test_ignorelb_and_options_of_its_own_stay_the_owners_without_thresholds() -> None:
    rule = parse({"device": [{**MATCH, "options": {"ignorelb": True, "override.battery.charge.low": 30}}]}).rules[0]
    assert rule.thresholds == Thresholds()


# --- written ---------------------------------------------------------------------------


def test_low_battery_percent_and_runtime_reach_the_driver_as_ignorelb_and_overrides() -> None:
    files = render_all(config_for(user_with(low_battery_percent=50, low_runtime_seconds=300)))
    words = lines(files["ups.conf"])
    assert ["ignorelb"] in words
    assert ["override.battery.charge.low", "=", "50"] in words
    assert ["override.battery.runtime.low", "=", "300"] in words
    assert ["AT"] not in [w[:1] for w in lines(files["upssched.conf"])]  # no timer asked for
    assert "NOTIFYCMD" not in files["upsmon.conf"]  # notifications off, no upssched: no NOTIFYCMD


def test_only_the_threshold_given_is_overridden_and_none_writes_nothing() -> None:
    only_runtime = lines(render_all(config_for(user_with(low_runtime_seconds=120)))["ups.conf"])
    assert ["ignorelb"] in only_runtime and ["override.battery.runtime.low", "=", "120"] in only_runtime
    assert not any(w[0] == "override.battery.charge.low" for w in only_runtime)
    plain = render_all(config_for(user_with()))["ups.conf"]
    assert "ignorelb" not in plain and "override." not in plain


def test_on_battery_max_seconds_is_an_upssched_timer_reached_through_the_relay() -> None:
    config = config_for(user_with(on_battery_max_seconds=300))
    files = render_all(config)
    sched = lines(files["upssched.conf"])
    assert ["CMDSCRIPT", "/opt/nut/sbin/upsmon -c fsd"] in sched
    assert ["PIPEFN", SCHED.pipe] in sched and ["LOCKFN", SCHED.lock] in sched
    at = [w for w in sched if w[0] == "AT"]
    assert at == [
        ["AT", "ONBATT", "my-ups@127.0.0.1:3493", "START-TIMER", "onbatt-my-ups", "300"],
        ["AT", "ONLINE", "my-ups@127.0.0.1:3493", "CANCEL-TIMER", "onbatt-my-ups"],
    ]
    # upssched requires CMDSCRIPT, PIPEFN and LOCKFN before the first AT (clients/upssched.c).
    assert [w[0] for w in sched].index("AT") > max([w[0] for w in sched].index(k) for k in ("CMDSCRIPT", "LOCKFN"))
    upsmon = lines(files["upsmon.conf"])
    assert ["NOTIFYCMD", SCHED.relay] in upsmon
    # Notifications off: EXEC for upssched's two notices only (CVE-2026-54161: nothing else).
    execs = {w[1] for w in upsmon if w[0] == "NOTIFYFLAG" and "EXEC" in w[2].split("+")}
    assert execs == {"ONBATT", "ONLINE"}


def test_with_notifications_on_the_relay_is_the_one_notifycmd_for_both() -> None:
    files = render_all(config_for(user_with(notify_cmd=SCHED.relay, on_battery_max_seconds=300)))
    upsmon = lines(files["upsmon.conf"])
    assert [w for w in upsmon if w[0] == "NOTIFYCMD"] == [["NOTIFYCMD", SCHED.relay]]
    execs = {w[1] for w in upsmon if w[0] == "NOTIFYFLAG" and "EXEC" in w[2].split("+")}
    assert {"ONBATT", "ONLINE", "LOWBATT", "FSD"} <= execs and "ALARM" not in execs


def test_a_timer_without_upssched_set_up_is_a_problem_not_silence() -> None:
    user = dataclasses.replace(user_with(on_battery_max_seconds=300), upssched=None)
    ups = Ups(USB, "usbhid-ups", "rule", True, user.rules[0])
    config, problems = build([ups], [], {ups.key: "my-ups"}, "my-ups", user, Secrets(None, "m", "u"), "/run/nut", "nut")
    assert [str(p) for p in problems] == ["my-ups: on_battery_max_seconds not enforced: upssched is not set up"]
    assert "NOTIFYCMD" not in render_all(config)["upsmon.conf"]


def test_the_agent_sets_upssched_up_only_when_a_rule_asks_and_refuses_without_it(tmp_path: Path) -> None:
    settings = load_settings({"NUT_STATEPATH": str(tmp_path / "state"), "RECONCILE_STATE": str(tmp_path / "agent")})
    rules = user_with(on_battery_max_seconds=60).rules
    assert upssched_for(settings, user_with(low_battery_percent=50).rules) is None
    if settings.binaries.upssched and settings.binaries.upsmon:
        sched = upssched_for(settings, rules)
        assert sched is not None and sched.pipe == str(tmp_path / "agent" / "upssched.pipe")
    missing = dataclasses.replace(settings, binaries=dataclasses.replace(settings.binaries, upssched=None))
    with pytest.raises(ConfigError, match=r"^device\[0\]\.on_battery_max_seconds: NUT's upssched is not installed"):
        upssched_for(missing, rules)


def test_what_reads_upssched_conf_back_finds_the_timers(tmp_path: Path) -> None:
    (tmp_path / "upssched.conf").write_text(
        render_all(config_for(user_with(on_battery_max_seconds=300)))["upssched.conf"]
    )
    assert upssched_timers(tmp_path) == {"my-ups": 300}
    assert has_timers({"NUT_CONFPATH": str(tmp_path)})
    (tmp_path / "upssched.conf").write_text(render_all(config_for(user_with()))["upssched.conf"])
    assert upssched_timers(tmp_path) == {} and not has_timers({"NUT_CONFPATH": str(tmp_path)})
    assert relay.UPSSCHED_TYPES == UPSSCHED_NOTICES  # the relay's own copy (it imports nothing of ours)


# --- said ------------------------------------------------------------------------------


def test_status_says_each_upss_thresholds() -> None:
    from reconcile.decide.decision import Decision

    rule = user_with(low_battery_percent=50, on_battery_max_seconds=300).rules[0]
    ups = Ups(USB, "usbhid-ups", "rule", True, rule)
    fake = Decision.__new__(Decision)
    object.__setattr__(fake, "attached", (ups,))
    object.__setattr__(fake, "held", ())
    object.__setattr__(fake, "names", {ups.key: "my-ups"})
    view = thresholds_view(fake)
    assert view == {
        "my-ups": {
            "low_battery_percent": 50,
            "low_runtime_seconds": None,
            "on_battery_max_seconds": 300,
            "text": "shuts down at 50 % / after 300 s on battery",
        }
    }


def test_the_on_battery_notice_says_when_this_host_shuts_down() -> None:
    policy = Policy(deadtime=15, off_delay=120)
    own = Readings(charge=80.0, runtime=1500.0, status="OB DISCHRG", charge_low=50.0, on_battery_max=300)
    body = compose(Notice("ONBATT", "my-ups"), "pi", own, policy).body
    assert "Next: This host shuts down at 50 % / after 300 s on battery, whichever comes first." in body, body
    both = Readings(charge=80.0, charge_low=50.0, runtime_low=300.0)
    assert (
        "shuts down at 50 % / at 5 min of runtime left, whichever"
        in compose(Notice("ONBATT", "my-ups"), "pi", both, policy).body
    )
    plain = compose(Notice("ONBATT", "my-ups"), "pi", Readings(charge=80.0), policy).body
    assert "Next: This host shuts down when the battery runs low (LB)." in plain, plain


def test_the_drill_pins_any_charge_on_battery_and_refuses_nonsense() -> None:
    assert drill_state("on-battery 45") == ("OB DISCHRG", 45.0)
    assert drill_state("on-battery") == ("OB DISCHRG", 80.0)
    assert [drill_state(d) for d in ("on-battery 0", "on-battery 101", "low-battery 45", "on-battery x")] == [None] * 4
    values = dict(state_at(0.0, 120.0, "on-battery 45").values)
    assert values["battery.charge"] == "45" and values["ups.status"] == "OB DISCHRG"
    # dummy-ups decides LB (ignorelb) when it reads ups.status: the charge must come first.
    order = [k for k, _ in state_at(0.0, 120.0, "on-battery 45").values]
    assert order.index("battery.charge") < order.index("ups.status")
