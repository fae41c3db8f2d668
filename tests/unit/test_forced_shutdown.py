"""The forced shutdown (decide/forced.py, the plan's FSD rules, decide/health.py): pure, time passed in."""

from __future__ import annotations

import dataclasses

import pytest

from reconcile.decide import forced, health
from reconcile.decide.decision import Decision, decide
from reconcile.decide.plan import make_plan
from reconcile.decide.supervision import Supervision
from reconcile.model import Served, StartUpsd, StartUpsmon, StopUpsd, WriteFile
from reconcile.userconfig import ConfigError, parse
from tests.unit.test_decision_and_events import device, inputs, observation
from tests.unit.test_plan import desired, running, ups

OL, FSD_OB, FSD_OL = Served("ok", "OL"), Served("ok", "FSD OB LB"), Served("ok", "FSD OL")


def test_the_time_on_line_is_counted_only_while_fsd_is_set_and_every_ups_is_good() -> None:
    assert forced.track_online({"a": FSD_OL, "b": OL}, None, 10.0) == 10.0
    assert forced.track_online({"a": FSD_OL, "b": OL}, 10.0, 50.0) == 10.0  # the clock keeps running
    assert forced.track_online({"a": OL}, 10.0, 50.0) is None  # no FSD: nothing to call off
    assert forced.track_online({"a": FSD_OB}, 10.0, 50.0) is None  # still on battery
    assert forced.track_online({"a": Served("ok", "FSD OL LB")}, 10.0, 50.0) is None  # charging: LB
    assert forced.track_online({"a": FSD_OL, "b": Served("DRIVER-NOT-CONNECTED", None)}, 10.0, 50.0) is None
    assert forced.track_online({}, 10.0, 50.0) is None


def test_fsd_is_called_off_only_after_the_hold_time_on_line() -> None:
    assert not forced.fsd_clear_due(None, 1000.0, 300)
    assert not forced.fsd_clear_due(100.0, 399.0, 300)
    assert forced.fsd_clear_due(100.0, 400.0, 300)


def test_the_power_cycle_waits_for_the_primarys_shutdown_or_the_stop_and_is_sent_once() -> None:
    fsd = frozenset({"my-ups", "my-ups-2"})
    assert forced.power_cycle_now(fsd, False, False, frozenset(), 120) == ()  # within HOSTSYNC: wait
    assert forced.power_cycle_now(fsd, True, False, frozenset(), 120) == ("my-ups", "my-ups-2")
    assert forced.power_cycle_now(fsd, False, True, frozenset(), 120) == ("my-ups", "my-ups-2")  # being stopped
    assert forced.power_cycle_now(fsd, True, False, frozenset({"my-ups"}), 120) == ("my-ups-2",)
    assert forced.power_cycle_now(fsd, True, False, frozenset(), 0) == ()  # ups_off_delay = 0: never


def test_decide_forced_clears_after_the_hold_and_sends_nothing_then() -> None:
    served = {"my-ups": FSD_OL}
    first = forced.decide_forced(served, True, frozenset({"my-ups"}), None, 100.0, 300, 120)
    assert first.active and first.online_since == 100.0 and not first.clear and first.power_cycle == ()
    later = forced.decide_forced(served, True, frozenset({"my-ups"}), first.online_since, 400.0, 300, 120)
    assert later.clear and later.power_cycle == ()
    # `apply` has no clock: it never calls FSD off.
    assert not forced.decide_forced(served, True, frozenset(), 100.0, 10_000.0, None, 120).clear


def test_upsmon_is_not_started_again_while_fsd_is_set() -> None:
    d = desired(ups())
    act = dataclasses.replace(running(d, {"my-ups": "usbhid-ups"}, upsmon=False), served={"my-ups": FSD_OB})
    plan = make_plan(d, act)
    assert not any(isinstance(s, StartUpsmon) for s in plan.steps)
    assert any("upsmon not started: a UPS is in FSD" in w for w in plan.warnings)
    # Without FSD the same state starts it.
    act_ol = dataclasses.replace(act, served={"my-ups": OL})
    assert any(isinstance(s, StartUpsmon) for s in make_plan(d, act_ol).steps)


def test_calling_fsd_off_restarts_upsd_then_starts_upsmon() -> None:
    d = desired(ups())
    act = dataclasses.replace(running(d, {"my-ups": "usbhid-ups"}, upsmon=False), served={"my-ups": FSD_OL})
    plan = make_plan(d, act, clear_fsd=True)
    kinds = [type(s) for s in plan.steps]
    assert kinds == [StopUpsd, StartUpsd, StartUpsmon]
    start_upsmon = plan.steps[2]
    assert 1 in start_upsmon.needs  # upsmon only once the new upsd (no FSD) serves
    assert "FSD called off" in plan.steps[0].reason


def test_the_decision_tracks_the_time_on_line_and_calls_fsd_off() -> None:
    obs = observation(device(), served={"my-ups": FSD_OL})
    sup = Supervision(fsd_clear_after=300, now=100.0)
    d = decide(obs, sup, inputs())
    assert d.forced.active and d.supervision.online_since == 100.0 and not d.forced.clear
    d2 = decide(obs, dataclasses.replace(d.supervision, now=401.0), inputs())
    assert d2.forced.clear
    # A UPS back on battery starts the clock over.
    on_battery = observation(device(), served={"my-ups": FSD_OB})
    d3 = decide(on_battery, dataclasses.replace(d.supervision, now=401.0), inputs())
    assert not d3.forced.clear and d3.supervision.online_since is None


def test_the_power_cycle_follows_the_shutdown_flag_and_a_new_fsd_is_a_new_episode() -> None:
    obs = dataclasses.replace(observation(device(), served={"my-ups": FSD_OB}), shutdown_ran=True)
    d = decide(obs, Supervision(fsd_clear_after=300), inputs())
    assert d.forced.power_cycle == ("my-ups",)
    sent = Supervision(fsd_clear_after=300, power_cycled=frozenset({"my-ups"}))
    assert decide(obs, sent, inputs()).forced.power_cycle == ()
    over = decide(observation(device(), served={"my-ups": OL}), sent, inputs())
    assert over.supervision.power_cycled == frozenset()  # FSD over: the next one cycles again


def test_a_ups_without_shutdown_return_is_named() -> None:
    obs = dataclasses.replace(
        observation(device(), served={"my-ups": OL}), commands={"my-ups": frozenset({"load.off"})}
    )
    d = decide(obs, Supervision(), inputs())
    assert d.cannot_power_cycle == {"my-ups": frozenset({"load.off"})}
    ok = dataclasses.replace(obs, commands={"my-ups": frozenset({"shutdown.return", "load.off"})})
    assert decide(ok, Supervision(), inputs()).cannot_power_cycle == {}


def _upsmon_conf(text: str, d: Decision) -> Decision:
    files = dict(d.actual.files)
    files["upsmon.conf"] = dataclasses.replace(files["upsmon.conf"], content=text)
    return dataclasses.replace(d, actual=dataclasses.replace(d.actual, files=files))


def test_health_names_each_break_in_the_shutdown_path() -> None:
    d = decide(observation(device(), served={"my-ups": OL}), Supervision(), inputs())
    broken = health.shutdown_path(d, "my-ups", {}, 0)
    assert "upsmon is not running" in broken  # (nothing runs in a hand-made observation)
    assert "upsmon.conf does not watch my-ups" in broken
    watched = _upsmon_conf("MINSUPPLIES 0\nMONITOR my-ups@127.0.0.1:3493 1 upsmon pw primary\n", d)
    broken = health.shutdown_path(watched, "my-ups", {"my-ups": 0}, 1)
    assert "MINSUPPLIES is 0: no UPS can shut this host down" in broken
    assert any("my-ups: 0 upsmon login(s), 1 expected" in b for b in broken)
    fine = _upsmon_conf("MINSUPPLIES 1\nMONITOR my-ups@127.0.0.1:3493 1 upsmon pw primary\n", d)
    assert health.shutdown_path(fine, "my-ups", {"my-ups": 1}, 1) == ["upsmon is not running"]


def test_secondary_users_and_the_shutdown_table_are_validated() -> None:
    cfg = parse(
        {
            "users": {"pi-host": {"password": "s3cret-pw"}, "monuser": {"password": "monitor-pw"}},
            "shutdown": {"ups_off_delay": 180, "fsd_clear_after": 600, "expect_secondaries": 1},
        }
    )
    assert cfg.secondaries == (("pi-host", "s3cret-pw"),)
    assert cfg.password_for("monuser") == "monitor-pw"
    assert (cfg.ups_off_delay, cfg.fsd_clear_after, cfg.expect_secondaries) == (180, 600, 1)
    with pytest.raises(ConfigError, match=r"users\.upsmon: the name is taken"):
        parse({"users": {"upsmon": {"password": "s3cret-pw"}}})
    with pytest.raises(ValueError, match="not a valid upsd user name"):
        parse({"users": {"Pi Host": {"password": "s3cret-pw"}}})
    with pytest.raises(ConfigError, match=r"shutdown\.ups_off_delay must be a whole number from 0 to 3600"):
        parse({"shutdown": {"ups_off_delay": -1}})
    with pytest.raises(ConfigError, match="shutdown: unknown key"):
        parse({"shutdown": {"off_delay": 5}})


def test_a_secondary_user_reaches_upsd_users_and_its_password_is_a_secret() -> None:
    user = parse({"users": {"pi-host": {"password": "s3cret-pw"}}})
    d = decide(observation(device()), Supervision(), dataclasses.replace(inputs(), user=user))
    users = d.config.users
    assert ("pi-host", "upsmon-secondary") in [(u.name, u.role) for u in users]
    assert "s3cret-pw" in d.secrets.values()  # so plans and diffs mask it
    text = {s.name: s.content for s in d.plan.steps if isinstance(s, WriteFile)}["upsd.users"]
    assert "[pi-host]" in text and "upsmon secondary" in text.split("[pi-host]")[1]
    primary = text.split("[upsmon]")[1].split("[")[0]
    assert "instcmds = shutdown.return" in primary and "actions = SET" in primary
