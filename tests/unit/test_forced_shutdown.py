"""The forced shutdown (decide/forced.py, the plan's FSD rules, decide/health.py): pure, time passed in."""

from __future__ import annotations

import dataclasses
import functools
import socket

import pytest

from reconcile import events
from reconcile.act import powercycle
from reconcile.decide import forced, health, logins, report, supervision
from reconcile.decide.decision import Decision, decide, forced_pass
from reconcile.decide.plan import make_plan
from reconcile.decide.supervision import Supervision
from reconcile.model import DeviceRule, Served, StartUpsd, StartUpsmon, StopUpsd, WriteFile
from reconcile.outputs import notices
from reconcile.userconfig import HOST_UPSMON, ConfigError, Secondary, parse
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


def test_fsd_is_called_off_only_after_the_hold_time_on_line_never_sooner_than_a_minute() -> None:
    assert not forced.fsd_clear_due(None, 1000.0, 300)
    assert not forced.fsd_clear_due(100.0, 399.0, 300)
    assert forced.fsd_clear_due(100.0, 400.0, 300)
    # fsd_clear_after below 60 s is taken as 60 (HOSTSYNC + FINALDELAY + a halt): never sooner.
    assert not forced.fsd_clear_due(100.0, 150.0, 10)
    assert forced.fsd_clear_due(100.0, 160.0, 10)
    assert forced.clear_at(100.0, 10) == 160.0


OURS = "127.0.0.1"  # where our upsmon's login comes from (it dials upsd's first LISTEN address)
PI = "172.17.0.1"  # the Pi's own upsmon, through Docker's proxy (the bridge's gateway)


def a_pass(
    served: dict[str, Served],
    logins: dict[str, tuple[str, ...]] | None = None,
    shutdown_ran: bool = False,
    upsmon: bool = True,
    now: float = 100.0,
    clear_after: float | None = 300,
    may_send: bool = True,
    stopping: bool = False,
    blocked: dict[str, str] | None = None,
) -> forced.Pass:
    return forced.Pass(served, shutdown_ran, upsmon, logins, OURS, now, clear_after, may_send, stopping, blocked or {})


def fsd_episode(*passes: forced.Pass, memory: forced.Memory | None = None) -> list[forced.Forced]:
    """Each pass decided in turn, the memory carried (and what was sent marked, as
    supervision.after_pass does)."""
    out = []
    memory = memory or forced.Memory()
    for p in passes:
        f = forced.decide_forced(p, memory)
        memory = forced.sent(f.memory, f.power_cycle)
        out.append(f)
    return out


OB, FSD_OB_ONLY = Served("ok", "OB DISCHRG"), Served("ok", "FSD OB")


def test_the_secondaries_are_the_logins_that_are_not_our_upsmons() -> None:
    assert forced.secondaries((OURS, PI), OURS, True) == (PI,)
    assert forced.secondaries((OURS, PI), OURS, False) == (OURS, PI)  # ours is not running: not ours
    # Host networking: the Pi's upsmon logs in from loopback too: one of the two is ours.
    assert forced.secondaries((OURS, OURS), OURS, True) == (OURS,)
    assert forced.logged_out((PI, "10.0.0.5"), ("10.0.0.5",)) == (PI,)
    assert forced.logged_out((OURS, OURS), (OURS,)) == (OURS,)
    assert forced.logged_out((PI,), (PI, "10.0.0.5")) == ()


def test_the_power_cycle_is_sent_when_a_secondary_there_at_fsd_logs_out_after_our_shutdown() -> None:
    on_battery = a_pass({"my-ups": OB}, {"my-ups": (OURS, PI)})
    # The Pi's upsmon saw FSD and logged out before the agent's first pass in FSD: the
    # pass on battery before remembers it.
    fsd = a_pass({"my-ups": FSD_OB}, {"my-ups": (OURS,)})
    ran = a_pass({"my-ups": FSD_OB}, {"my-ups": ()}, shutdown_ran=True, upsmon=False)
    again = a_pass({"my-ups": FSD_OB}, {"my-ups": ()}, shutdown_ran=True, upsmon=False)
    f_ob, f_fsd, f_ran, f_again = fsd_episode(on_battery, fsd, ran, again)
    assert f_ob.power_cycle == () and f_ob.memory.before_fsd == {"my-ups": (PI,)}
    # Our upsmon is in its HOSTSYNC wait: nothing yet, nothing skipped.
    assert f_fsd.power_cycle == () and f_fsd.skipped == {} and f_fsd.memory.at_fsd == {"my-ups": (PI,)}
    assert f_ran.power_cycle == ("my-ups",)
    assert f_again.power_cycle == ()  # sent once per FSD


def test_a_ups_going_from_on_line_straight_to_fsd_cycles_for_a_secondary_that_left_before_the_first_fsd_pass() -> None:
    # OL, then OB LB and FSD between two passes: the Pi's upsmon saw FSD and logged out
    # before the agent's first pass in FSD. The last pass on line read it logged in.
    on_line = a_pass({"my-ups": Served("ok", "OL CHRG")}, {"my-ups": (OURS, PI)})
    fsd = a_pass({"my-ups": FSD_OB}, {"my-ups": (OURS,)})
    ran = a_pass({"my-ups": FSD_OB}, {"my-ups": ()}, shutdown_ran=True, upsmon=False)
    f_ol, f_fsd, f_ran = fsd_episode(on_line, fsd, ran)
    assert f_ol.memory.before_fsd == {"my-ups": (PI,)} and f_fsd.memory.at_fsd == {"my-ups": (PI,)}
    assert f_ran.power_cycle == ("my-ups",) and f_ran.skipped == {}


def test_each_pass_before_fsd_that_reads_the_logins_replaces_what_was_remembered() -> None:
    nas = "192.168.1.20"
    ol = Served("ok", "OL")
    # The Pi logs in, then out (rebooted) while on line: the later reading wins.
    there, gone = fsd_episode(
        a_pass({"my-ups": ol}, {"my-ups": (OURS, PI)}), a_pass({"my-ups": ol}, {"my-ups": (OURS, nas)})
    )
    assert there.memory.before_fsd == {"my-ups": (PI,)} and gone.memory.before_fsd == {"my-ups": (nas,)}
    # Not read on a pass on battery (upsd did not answer LIST CLIENT): what was read stays.
    kept = forced.decide_forced(a_pass({"my-ups": OB}, None), gone.memory)
    assert kept.memory.before_fsd == {"my-ups": (nas,)}
    # Not read on a pass on line (with no secondary configured, logins are read only on
    # battery or in FSD): an earlier outage's reading is stale, forgotten.
    stale = forced.decide_forced(a_pass({"my-ups": ol}, None), kept.memory)
    assert stale.memory.before_fsd == {}
    # A UPS whose driver does not answer keeps what was known (FSD may be set unseen).
    silent = forced.decide_forced(a_pass({"my-ups": Served("DATA-STALE", None)}, {"my-ups": (OURS,)}), gone.memory)
    assert silent.memory.before_fsd == {"my-ups": (nas,)}


def test_our_upsmons_login_is_told_apart_in_any_spelling_upsd_lists_it() -> None:
    # upsd listening on "::" lists an IPv4 client as ::ffff:a.b.c.d.
    assert forced.secondaries(("::ffff:127.0.0.1", "::ffff:172.17.0.1"), OURS, True) == (PI,)
    f = fsd_episode(
        a_pass({"my-ups": OL}, {"my-ups": ("::ffff:127.0.0.1", f"::ffff:{PI}")}),
        a_pass({"my-ups": FSD_OB}, {"my-ups": ("::ffff:127.0.0.1",)}),
        a_pass({"my-ups": FSD_OB}, {"my-ups": ()}, shutdown_ran=True, upsmon=False),
    )
    assert f[1].memory.at_fsd == {"my-ups": (PI,)} and f[2].power_cycle == ("my-ups",)


@pytest.mark.parametrize(
    ("listen", "own"), [(("0.0.0.0", 3493), "127.0.0.1"), (("::", 3493), "::1"), (("192.168.1.5", 3493), "192.168.1.5")]
)
def test_the_gate_and_health_read_one_answer_for_our_upsmons_address(listen: tuple[str, int], own: str) -> None:
    user = dataclasses.replace(inputs().user, listen=(listen,))
    given = dataclasses.replace(inputs(), user=user)
    d = decide(observation(device(), served={"my-ups": OL}), Supervision(), given)
    p = forced_pass(d.obs, d.supervision, given, d.owned, d.attached, d.names, d.config)
    assert logins.own_address(d.config) == own
    assert p.own_address == own == health._our_address(d)


def test_a_power_cycle_that_never_reached_the_ups_is_tried_again_a_few_times_then_given_up() -> None:
    memory = forced.Memory(at_fsd={"my-ups": (PI,)})
    halting = a_pass({"my-ups": FSD_OB}, {"my-ups": ()}, shutdown_ran=True, upsmon=False)
    for n in range(forced.POWER_CYCLE_TRIES):
        f = forced.decide_forced(halting, memory)
        assert f.power_cycle == ("my-ups",) and f.skipped == {}, n
        memory = forced.sent(f.memory, (), f.power_cycle)  # login refused, connection refused, ...
        assert memory.tries == {"my-ups": n + 1}
    given_up = forced.decide_forced(halting, memory)
    assert given_up.power_cycle == ()
    assert given_up.skipped["my-ups"].startswith(f"given up: tried {forced.POWER_CYCLE_TRIES} times in this FSD")
    # Given up is settled: FSD may be called off once mains are back (not held for it).
    back = dataclasses.replace(halting, served={"my-ups": FSD_OL}, now=1000.0)
    clear = forced.decide_forced(back, dataclasses.replace(memory, online_since=0.0))
    assert clear.clear and clear.held_off is None
    # The stop (the host is halting) is the last chance: one more try.
    assert forced.power_cycle_now(dataclasses.replace(halting, stopping=True), memory)[0] == ("my-ups",)
    # A new FSD tries afresh.
    over = forced.decide_forced(dataclasses.replace(halting, served={"my-ups": OL}), memory)
    assert over.memory.tries == {} and over.memory.power_cycled == frozenset()


def test_a_power_cycle_that_reached_the_ups_is_never_tried_again_in_that_fsd() -> None:
    memory = forced.Memory(at_fsd={"my-ups": (PI,), "nas-ups": (PI,)})
    served = {"my-ups": FSD_OB, "nas-ups": FSD_OB}
    halting = a_pass(served, {"my-ups": (), "nas-ups": ()}, shutdown_ran=True, upsmon=False)
    f = forced.decide_forced(halting, memory)
    assert f.power_cycle == ("my-ups", "nas-ups")
    memory = forced.sent(f.memory, ("my-ups",), f.power_cycle)  # the first answered, the second never got it
    assert memory.power_cycled == {"my-ups"} and memory.tries == {"nas-ups": 1}
    assert forced.decide_forced(halting, memory).power_cycle == ("nas-ups",)
    assert forced.sent(memory, (), ()) is memory
    # What the run loop carries (Supervision): the same counting.
    sup = supervision.after_pass(
        Supervision(fsd=f.memory), [], (), (), (), power_cycled=("my-ups",), power_cycle_tried=f.power_cycle
    )
    assert sup.power_cycled == {"my-ups"} and sup.fsd.tries == {"nas-ups": 1}


def test_send_all_returns_only_the_upses_it_reached_and_reports_each_failure() -> None:
    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seen: list[events.Event] = []
    unsubscribe = events.subscribe(seen.append)
    try:
        plan = functools.partial(forced.delays, 120)
        reached = powercycle.send_all(("127.0.0.1", port), ("upsmon", "pw"), ("my-ups",), plan, {}, budget=2.0)
    finally:
        unsubscribe()
    assert reached == ()
    cycled = [e for e in seen if isinstance(e, events.PowerCycled)]
    assert len(cycled) == 1 and not cycled[0].ok and cycled[0].answer.startswith("not sent: "), cycled


def test_no_power_cycle_when_no_host_is_halting_and_poweredownflag_alone_is_not_enough() -> None:
    # The README's quick start: no secondary at all. Our upsmon ran its shutdown (the flag).
    alone = fsd_episode(
        a_pass({"my-ups": OB}, {"my-ups": (OURS,)}),
        a_pass({"my-ups": FSD_OB}, {"my-ups": (OURS,)}),
        a_pass({"my-ups": FSD_OB}, {"my-ups": ()}, shutdown_ran=True, upsmon=False),
    )
    assert [f.power_cycle for f in alone] == [(), (), ()]
    assert alone[-1].skipped == {"my-ups": "no host is halting: no secondary was logged in when FSD was set"}
    # A NAS logged in that stays logged in (it is not halting) does not count either.
    nas = "192.168.1.20"
    stays = fsd_episode(
        a_pass({"my-ups": FSD_OB}, {"my-ups": (OURS, nas)}),
        a_pass({"my-ups": FSD_OB}, {"my-ups": (nas,)}, shutdown_ran=True, upsmon=False),
    )
    assert stays[-1].power_cycle == () and "(192.168.1.20) are still there" in stays[-1].skipped["my-ups"]
    # Who is logged in is not known this pass (upsd did not answer): decided on the next one.
    unknown = fsd_episode(a_pass({"my-ups": FSD_OB}, None, shutdown_ran=True, upsmon=False))
    assert unknown[0].power_cycle == () and unknown[0].skipped == {}


def test_the_agent_stopped_in_fsd_cycles_but_never_a_ups_that_does_not_power_this_host() -> None:
    served = {"my-ups": FSD_OL, "nas-ups": FSD_OL}
    why = "powers_host = false (power_cycle = true on its [[device]] rule would ask for it)"
    p = a_pass(served, {"my-ups": (OURS,)}, stopping=True, blocked={"nas-ups": why})
    cycle, skipped = forced.power_cycle_now(p, forced.Memory())
    assert cycle == ("my-ups",) and skipped == {"nas-ups": why}
    # ... and not twice: what was sent already stays sent.
    assert forced.power_cycle_now(p, forced.Memory(power_cycled=frozenset({"my-ups"})))[0] == ()


def test_apply_never_sends_the_power_cycle_nor_reports_a_skip() -> None:
    p = a_pass({"my-ups": FSD_OB}, {"my-ups": ()}, shutdown_ran=True, upsmon=False, clear_after=None, may_send=False)
    memory = forced.Memory(at_fsd={"my-ups": (PI,)})  # (even with a host gone)
    f = forced.decide_forced(p, memory)
    assert f.power_cycle == () and f.skipped == {} and not f.clear


def test_why_a_ups_is_never_power_cycled() -> None:
    offers = frozenset({"shutdown.return", "load.off"})
    assert forced.blocked(True, None, offers, 120) is None
    assert forced.blocked(True, None, None, 120) is None  # its commands not known yet: tried
    assert forced.blocked(True, None, offers, 0) == "ups_off_delay = 0: the power cycle is turned off"
    assert forced.blocked(True, None, frozenset({"load.off"}), 120) == "its driver offers no shutdown.return"
    assert "powers_host = false" in str(forced.blocked(False, None, offers, 120))
    assert forced.blocked(False, True, offers, 120) is None  # asked for: power_cycle = true
    assert forced.blocked(True, False, offers, 120) == "power_cycle = false on its [[device]] rule"


def test_the_start_delay_is_set_above_the_off_delay_and_cyberpower_counts_in_minutes() -> None:
    apc = {"device.mfr": "American Power Conversion", "driver.version.data": "APC HID 0.100"}
    assert forced.delays(120, apc) == forced.Delays(150, 120, False)
    cyber = {"ups.mfr": "CPS", "driver.version.data": "CyberPower HID 0.8"}
    assert forced.delays(120, cyber) == forced.Delays(180, 120, True)
    assert forced.delays(90, {"device.mfr": "CyberPower"}) == forced.Delays(180, 120, True)  # never shorter
    d = forced.delays(120, apc)
    assert d.refused(150, 120) is None and d.refused(300, 180) is None
    assert (
        d.refused(30, 120)
        == "ups.delay.start is 30 s, not 30 s above ups.delay.shutdown (120 s): the UPS might stay off"
    )
    assert d.refused(150, 20) == "ups.delay.shutdown is 20 s, 120 s asked: a host still halting would lose power"
    assert d.refused(None, 120) == "the UPS reports no ups.delay.start"
    assert forced.delays(120, cyber).refused(150, 120) is not None  # a minute apart on CyberPower


def test_fsd_is_not_called_off_while_our_upsmon_is_in_its_shutdown_nor_before_the_power_cycle() -> None:
    good = {"my-ups": FSD_OL}
    memory = forced.Memory(online_since=0.0)
    mid = forced.decide_forced(a_pass(good, {"my-ups": (OURS,)}, now=400.0), memory)
    assert not mid.clear and mid.held_off == "our upsmon is in its shutdown (it set FSD or saw it)"
    # upsmon gone, but who is logged in is not known: the power cycle is not decided yet.
    undecided = forced.decide_forced(a_pass(good, None, shutdown_ran=True, upsmon=False, now=400.0), memory)
    assert not undecided.clear and "not sent or skipped yet" in str(undecided.held_off)
    skipped = forced.decide_forced(a_pass(good, {"my-ups": ()}, shutdown_ran=True, upsmon=False, now=400.0), memory)
    assert skipped.clear and skipped.power_cycle == ()
    sent = forced.Memory(online_since=0.0, power_cycled=frozenset({"my-ups"}))
    assert forced.decide_forced(a_pass(good, None, shutdown_ran=True, upsmon=False, now=400.0), sent).clear


def test_an_fsd_that_upsds_restart_does_not_remove_is_reported_once_and_not_cleared_again() -> None:
    good = {"my-ups": FSD_OL}

    def after(served: dict[str, Served], now: float) -> forced.Pass:  # our upsmon's shutdown is over
        return a_pass(served, {"my-ups": ()}, shutdown_ran=True, upsmon=False, now=now)

    memory = forced.Memory(online_since=0.0, power_cycled=frozenset({"my-ups"}))
    clear = forced.decide_forced(after(good, 400.0), memory)
    assert clear.clear and clear.memory.cleared == {"my-ups"} and clear.memory.online_since is None
    # upsd not answering yet, then restarted with the driver not heard yet: nothing known.
    silent = forced.decide_forced(dataclasses.replace(after(good, 401.0), served=None), clear.memory)
    assert silent.memory.cleared == {"my-ups"} and not silent.clear
    waiting = forced.decide_forced(after({"my-ups": Served("ok", "WAIT")}, 401.0), clear.memory)
    assert waiting.kept == frozenset() and waiting.memory.cleared == {"my-ups"}
    # The driver reports FSD itself: kept, reported once, and upsd not restarted again.
    passes = [after(good, now) for now in (402.0, 500.0, 9000.0)]
    kept = fsd_episode(*passes, memory=waiting.memory)
    assert [f.kept for f in kept] == [frozenset({"my-ups"}), frozenset(), frozenset()]
    assert not any(f.clear for f in kept)
    assert "the driver reports it itself" in str(kept[-1].held_off)
    assert kept[-1].power_cycle == ()  # the same FSD: never sent again
    # The driver stops reporting it: forgotten; a later FSD is a new one.
    over = forced.decide_forced(after({"my-ups": OL}, 9001.0), kept[-1].memory)
    assert over.memory.kept == frozenset() and over.memory.power_cycled == frozenset()
    # A clear that worked (no FSD after the restart) is forgotten at once.
    worked = forced.decide_forced(after({"my-ups": OL}, 401.0), clear.memory)
    assert worked.memory.cleared == frozenset() and worked.kept == frozenset()


def test_upsmon_is_not_started_again_while_fsd_is_set() -> None:
    d = desired(ups())
    act = dataclasses.replace(running(d, {"my-ups": "usbhid-ups"}, upsmon=False), served={"my-ups": FSD_OB})
    plan = make_plan(d, act)
    assert not any(isinstance(s, StartUpsmon) for s in plan.steps)
    assert any("upsmon not started: a UPS is in FSD" in w for w in plan.warnings)
    # Without FSD the same state starts it.
    act_ol = dataclasses.replace(act, served={"my-ups": OL})
    assert any(isinstance(s, StartUpsmon) for s in make_plan(d, act_ol).steps)


def test_calling_fsd_off_restarts_upsd_and_upsmon_starts_on_the_next_pass_without_fsd() -> None:
    d = desired(ups())
    act = dataclasses.replace(running(d, {"my-ups": "usbhid-ups"}, upsmon=False), served={"my-ups": FSD_OL})
    plan = make_plan(d, act, clear_fsd=True)
    assert [type(s) for s in plan.steps] == [StopUpsd, StartUpsd]
    assert "FSD called off" in plan.steps[0].reason
    # Not in the same pass: a driver that reports FSD itself keeps it through the restart,
    # and a upsmon started then would shut down again. The next pass, FSD gone, starts it.
    after = dataclasses.replace(act, served={"my-ups": Served("ok", "OL")})
    assert [type(s) for s in make_plan(d, after).steps] == [StartUpsmon]
    assert not any(isinstance(s, StartUpsmon) for s in make_plan(d, act).steps)  # FSD stayed: it waits


def test_the_decision_tracks_the_time_on_line_and_calls_fsd_off() -> None:
    obs = dataclasses.replace(observation(device(), served={"my-ups": FSD_OL}), logins={"my-ups": ()})
    sup = Supervision(fsd_clear_after=300, now=100.0, may_power_cycle=True)
    d = decide(obs, sup, inputs())
    assert d.forced.active and d.supervision.online_since == 100.0 and not d.forced.clear
    d2 = decide(obs, dataclasses.replace(d.supervision, now=401.0), inputs())
    assert d2.forced.clear and d2.forced.skipped == {
        "my-ups": "no host is halting: no secondary was logged in when FSD was set"
    }
    # A UPS back on battery starts the clock over.
    on_battery = dataclasses.replace(obs, facts=dataclasses.replace(obs.facts, served={"my-ups": FSD_OB}))
    d3 = decide(on_battery, dataclasses.replace(d.supervision, now=401.0), inputs())
    assert not d3.forced.clear and d3.supervision.online_since is None


def test_a_pinned_name_pi_calls_fsd_off_though_its_my_ups_placeholder_never_answers() -> None:
    """pi-cabin: the UPS is cabin-ups (a rule pins the name) and my-ups is a placeholder
    ("Driver not connected", by design). Mains back, the clock on line must run all the
    same, else FSD is never called off and every upsmon stays stopped. A held UPS (gone
    on battery) is no placeholder: it still keeps FSD (the pure rule above)."""
    pinned = dataclasses.replace(
        inputs(), user=parse({"device": [{"match": {"vendorid": "051d", "productid": "0002"}, "name": "cabin-ups"}]})
    )
    served = {"cabin-ups": FSD_OL, "my-ups": Served("DRIVER-NOT-CONNECTED", None)}
    obs = dataclasses.replace(observation(device(), served=served), logins={"cabin-ups": ()})
    sup = Supervision(fsd_clear_after=300, now=100.0, may_power_cycle=True)
    d = decide(obs, sup, pinned)
    assert "my-ups" in d.config.driverless and d.supervision.online_since == 100.0
    assert decide(obs, dataclasses.replace(d.supervision, now=401.0), pinned).forced.clear
    assert forced.all_good(served, frozenset({"my-ups"})) and not forced.all_good(served)
    assert not forced.all_good({"my-ups": Served("DRIVER-NOT-CONNECTED", None)}, frozenset({"my-ups"}))


def test_the_power_cycle_follows_a_secondarys_logout_never_from_apply_and_a_new_fsd_is_a_new_episode() -> None:
    obs = dataclasses.replace(
        observation(device(), served={"my-ups": FSD_OB}), shutdown_ran=True, logins={"my-ups": ()}
    )
    pi_was_there = forced.Memory(at_fsd={"my-ups": (PI,)})
    run = Supervision(fsd_clear_after=300, may_power_cycle=True, fsd=pi_was_there)
    d = decide(obs, run, inputs())
    assert d.forced.power_cycle == ("my-ups",)
    sent = supervision.after_pass(d.supervision, ["my-ups"], (), (), (), power_cycled=d.forced.power_cycle)
    assert decide(obs, sent, inputs()).forced.power_cycle == ()
    # `apply` during the same FSD (its own Supervision, no history): never sends it again.
    assert decide(obs, Supervision(), inputs()).forced.power_cycle == ()
    assert decide(obs, Supervision(fsd=pi_was_there), inputs()).forced.power_cycle == ()
    over = decide(observation(device(), served={"my-ups": OL}), sent, inputs())
    assert over.supervision.power_cycled == frozenset()  # FSD over: the next one cycles again


def test_a_ups_that_does_not_power_this_host_is_not_power_cycled_unless_its_rule_asks() -> None:
    obs = dataclasses.replace(
        observation(device(), served={"my-ups": FSD_OB}), shutdown_ran=True, logins={"my-ups": ()}
    )
    run = Supervision(fsd_clear_after=300, may_power_cycle=True, fsd=forced.Memory(at_fsd={"my-ups": (PI,)}))
    for rule, cycled in [
        (DeviceRule(0, vendorid="051d", powers_host=False), False),
        (DeviceRule(0, vendorid="051d", powers_host=False, power_cycle=True), True),
        (DeviceRule(0, vendorid="051d", power_cycle=False), False),
    ]:
        user = dataclasses.replace(inputs().user, rules=(rule,))
        d = decide(obs, run, dataclasses.replace(inputs(), user=user))
        assert (d.forced.power_cycle == ("my-ups",)) is cycled, rule
        assert ("my-ups" in d.forced.skipped) is not cycled, rule


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
    broken = health.shutdown_path(d, ()).broken
    assert "upsmon is not running" in broken  # (nothing runs in a hand-made observation)
    assert "upsmon.conf does not watch my-ups" in broken
    host = (Secondary(HOST_UPSMON, "my-ups", from_host=True),)
    watched = _upsmon_conf("MINSUPPLIES 0\nMONITOR my-ups@127.0.0.1:3493 1 upsmon pw primary\n", d)
    watched = dataclasses.replace(watched, obs=dataclasses.replace(watched.obs, logins={"my-ups": ()}))
    broken = health.shutdown_path(watched, host).broken
    assert "MINSUPPLIES is 0: no UPS can shut this host down" in broken
    assert any("the host's own upsmon is not logged in to my-ups" in b for b in broken)
    fine = _upsmon_conf("MINSUPPLIES 1\nMONITOR my-ups@127.0.0.1:3493 1 upsmon pw primary\n", d)
    fine = dataclasses.replace(fine, obs=dataclasses.replace(fine.obs, logins={"my-ups": ("127.0.0.1",)}))
    # (our upsmon is not running: the one login from loopback may be the host's)
    assert health.shutdown_path(fine, host).broken == ("upsmon is not running",)


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


def test_a_rules_power_cycle_key_is_true_or_false() -> None:
    rule = {"match": {"vendorid": "051d"}, "powers_host": False, "power_cycle": True}
    assert parse({"device": [rule]}).rules[0].power_cycle is True
    assert parse({"device": [{"match": {"vendorid": "051d"}}]}).rules[0].power_cycle is None
    with pytest.raises(ConfigError, match=r"device\[0\]\.power_cycle must be true or false"):
        parse({"device": [{"match": {"vendorid": "051d"}, "power_cycle": "yes"}]})


def test_a_skip_is_reported_once_per_reason_and_a_kept_fsd_once_and_a_refusal_is_a_notice() -> None:
    obs = dataclasses.replace(
        observation(device(), served={"my-ups": FSD_OB}), shutdown_ran=True, logins={"my-ups": ()}
    )
    run = Supervision(fsd_clear_after=300, may_power_cycle=True)
    first = decide(obs, run, inputs())
    again = decide(obs, first.supervision, inputs())
    kinds = [e.kind for e in report.forced(None, first)]
    assert kinds == ["power_cycle.skipped"] and report.forced(first, again) == []
    kept = dataclasses.replace(again, forced=dataclasses.replace(again.forced, kept=frozenset({"my-ups"})))
    assert [e.kind for e in report.forced(again, kept)] == ["fsd.kept"]
    refused = events.PowerCycleRefused("my-ups", "shutdown.return", "not sent: ups.delay.start is 30 s ...")
    assert refused.kind == "ups.no_power_cycle"
    notice = notices.notice_for(refused, frozenset())
    assert notice is not None and notice.name == "no_power_cycle"
    message = notices.compose(notice, "pi-test", notices.Readings(), notices.Policy(15, 120))
    assert message.title == "[pi-test] my-ups: no power cycle" and "ups.delay.start is 30 s" in message.body
    assert message.type == "failure" and "halted hosts stay off" in message.body
    # The one at start (no shutdown.return) stays in the log: it is no news at each start.
    assert notices.notice_for(events.NoPowerCycle("my-ups", "load.off"), frozenset()) is None
