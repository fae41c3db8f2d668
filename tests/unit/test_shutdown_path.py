"""The shutdown path from the host's side (decide/health.shutdown_path, pure): each expected
secondary ([[shutdown.secondary]], or the one expect_secondaries stands for) logged in to
the UPS it must watch, from where it must come, as upsd's LIST CLIENT lists the logins (one
address per login, no user); the [shutdown] table that says so (userconfig.parse); and the
gateways it reads (observe/routes.py) from files in a temp dir. No I/O besides those files."""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fleet import report
from reconcile.decide import health
from reconcile.decide.decision import Decision, decide
from reconcile.decide.supervision import Supervision
from reconcile.model import Daemon, ProcId, Served
from reconcile.observe import routes
from reconcile.userconfig import HOST_UPSMON, ConfigError, Secondary, load, parse
from tests.unit.test_decision_and_events import device, inputs, observation

OL = Served("ok", "OL")
NO_DRIVER = Served("DRIVER-NOT-CONNECTED", None)
GATEWAY = "172.17.0.1"  # the bridge's gateway: where the Pi's own upsmon arrives from in the container
OURS = "127.0.0.1"  # where our upsmon comes from (it dials upsd on loopback)
NAS = "192.168.1.30"  # a nut_clients host on the LAN
PINNED = {"match": {"vendorid": "051d", "productid": "0002"}, "name": "cabin-ups"}


def decision(
    user: Mapping[str, Any],
    logins: Mapping[str, tuple[str, ...]] | None,
    gateways: tuple[str, ...] = (GATEWAY,),
    upsmon: bool = True,
    on_bus: bool = True,
) -> tuple[Decision, tuple[Secondary, ...]]:
    """One UPS on the bus (my-ups, or cabin-ups with a pinned rule), our upsmon running and
    watching it, and upsd listing `logins`; the secondaries the config expects."""
    cfg = parse(dict(user))
    names = ["cabin-ups", "my-ups"] if user.get("device") else ["my-ups"]
    served = {n: OL if i == 0 and on_bus else NO_DRIVER for i, n in enumerate(names)}
    obs = observation(*([device()] if on_bus else []), served=served)
    obs = dataclasses.replace(obs, logins=logins, gateways=gateways)
    d = decide(obs, Supervision(), dataclasses.replace(inputs(), user=cfg))
    daemon = Daemon(ProcId(4242, 1), ())
    owned = dataclasses.replace(d.owned, upsd=daemon, upsmon=daemon if upsmon else None)
    files = dict(d.actual.files)
    monitors = "".join(f"MONITOR {n}@127.0.0.1:3493 1 upsmon pw primary\n" for n in names[:1] if on_bus)
    files["upsmon.conf"] = dataclasses.replace(files["upsmon.conf"], content="MINSUPPLIES 1\n" + monitors)
    return dataclasses.replace(
        d, owned=owned, actual=dataclasses.replace(d.actual, files=files)
    ), cfg.shutdown_secondaries


def path(
    user: Mapping[str, Any], logins: Mapping[str, tuple[str, ...]] | None, contained: bool = False, **more: Any
) -> health.ShutdownPath:
    """The path as an agent on the host sees it (`contained`: in a container)."""
    return health.shutdown_path(*decision(user, logins, **more), contained=contained)


def secondary(name: str, ups: str = "my-ups", origin: str | list[str] | None = None, **more: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "ups": ups, **more}
    if origin is not None:
        entry["from"] = origin
    return entry


# What the fleet writes for a Pi with host_shutdown and a nut_clients host on its UPS.
FLEET = {"shutdown": {"secondary": [secondary("pi1", origin="host"), secondary("nas", origin=[NAS])]}}
LEGACY = {"shutdown": {"expect_secondaries": 1}}  # an older rollout's file
# The agent run where it can halt its host itself (its own SHUTDOWNCMD, not the logging one):
# then the path is armed without a secondary from the host.
HALTS = {"upsmon": {"shutdown_cmd": "/sbin/poweroff"}}


# --- the host's own upsmon -------------------------------------------------------------------


def test_the_pis_own_upsmon_counts_only_from_the_host_a_nas_never_stands_in_for_it() -> None:
    """The gate fails with the Pi's upsmon stopped and a nut_clients host logged in: two
    logins, as many as the old count wanted, but neither is the Pi's."""
    stopped = path(LEGACY, {"my-ups": (OURS, NAS)})
    assert not stopped.armed
    assert stopped.broken == (
        f"the host's own upsmon is not logged in to my-ups from the host ({GATEWAY}, or {OURS} beside our "
        f"upsmon's login) (logins on my-ups: {OURS}, {NAS})",
    )
    assert stopped.secondaries == ((Secondary(HOST_UPSMON, "my-ups", from_host=True), False),)
    # The Pi's upsmon, through Docker's proxy: from the bridge's gateway.
    whole = path(LEGACY, {"my-ups": (GATEWAY, OURS, NAS)})
    assert whole.broken == () and whole.armed
    assert whole.secondaries == ((Secondary(HOST_UPSMON, "my-ups", from_host=True), True),)


def test_the_fleets_secondaries_each_from_where_it_must_come() -> None:
    assert path(FLEET, {"my-ups": (OURS, GATEWAY, NAS)}).armed
    no_pi = path(FLEET, {"my-ups": (OURS, NAS)})
    assert [s.name for s, ok in no_pi.secondaries if not ok] == ["pi1"]
    assert no_pi.broken[0].startswith("pi1: the host's own upsmon is not logged in to my-ups from the host")
    no_nas = path(FLEET, {"my-ups": (OURS, GATEWAY, "192.168.1.99")})
    assert no_nas.broken == (
        f"nas is not logged in to my-ups from {NAS} (logins on my-ups: {OURS}, {GATEWAY}, 192.168.1.99)",
    )
    # upsd listening on "::" lists an IPv4 client as IPv4-mapped: the same address.
    assert path(FLEET, {"my-ups": (OURS, f"::ffff:{GATEWAY}", f"::ffff:{NAS}")}).armed


def test_with_host_networking_ours_and_the_hosts_both_come_from_loopback_so_two_are_needed() -> None:
    lan = ("192.168.1.1",)  # the container's default gateway is then the LAN's router
    one = path(LEGACY, {"my-ups": (OURS,)}, gateways=lan)
    assert not one.armed and "the host's own upsmon is not logged in to my-ups" in one.broken[0]
    assert path(LEGACY, {"my-ups": (OURS, OURS)}, gateways=lan).armed
    # Our upsmon stopped: the one loopback login is the host's (but the path is broken).
    stopped = path(LEGACY, {"my-ups": (OURS,)}, gateways=lan, upsmon=False)
    assert stopped.broken == ("upsmon is not running",) and stopped.secondaries[0][1] is True


def test_our_own_upsmon_not_logged_in_is_named() -> None:
    broken = path(LEGACY, {"my-ups": (GATEWAY,)}).broken
    assert broken == (f"my-ups: our upsmon is not logged in (logins on my-ups: {GATEWAY})",)


# --- secondaries by address, and from anywhere else ------------------------------------------


def test_a_secondary_without_from_counts_among_logins_neither_ours_nor_the_hosts() -> None:
    anywhere = {"shutdown": {"secondary": [secondary("pi1", origin="host"), secondary("nas"), secondary("desk")]}}
    short = path(anywhere, {"my-ups": (OURS, GATEWAY, NAS)})
    assert [s.name for s, ok in short.secondaries if not ok] == ["desk"]
    assert short.broken == (
        "desk is not logged in to my-ups (no login from an address that is neither ours nor the host's) "
        f"(logins on my-ups: {OURS}, {GATEWAY}, {NAS})",
    )
    assert path(anywhere, {"my-ups": (OURS, GATEWAY, NAS, "192.168.1.31")}).armed
    # The host's login (from the gateway, or a second from loopback) never counts for one of them.
    alone = {"shutdown": {"secondary": [secondary("nas")]}, **HALTS}
    assert not path(alone, {"my-ups": (OURS, GATEWAY)}).armed
    assert not path(alone, {"my-ups": (OURS, OURS)}).armed
    assert path(alone, {"my-ups": (OURS, NAS)}).armed


def test_each_login_counts_once_and_goes_where_it_lets_every_secondary_be_met() -> None:
    """nas may come from either of its addresses, desk only from the first: one login from
    each address meets both, whichever order they are listed in."""
    both = {
        "shutdown": {"secondary": [secondary("nas", origin=[NAS, "192.168.1.31"]), secondary("desk", origin=[NAS])]},
        **HALTS,
    }
    assert path(both, {"my-ups": (OURS, NAS, "192.168.1.31")}).armed
    one = path(both, {"my-ups": (OURS, NAS)})
    assert [ok for _, ok in one.secondaries] == [True, False]
    # Two hosts behind one address (a NAT): two logins from it are needed.
    twins = {"shutdown": {"secondary": [secondary("a", origin=[NAS]), secondary("b", origin=[NAS])]}, **HALTS}
    assert not path(twins, {"my-ups": (OURS, NAS)}).armed
    assert path(twins, {"my-ups": (OURS, NAS, NAS)}).armed


def test_each_secondary_is_checked_on_its_own_ups() -> None:
    """A login to another UPS is no login to this one (LIST CLIENT is per UPS)."""
    two = {"shutdown": {"secondary": [secondary("nas", origin=[NAS])]}}
    d, expected = decision(two, {"my-ups": (OURS,), "other-ups": (NAS,)})
    assert not health.shutdown_path(d, expected).armed


# --- placeholders, and UPSes upsd does not serve ----------------------------------------------


def test_a_secondary_on_the_placeholder_while_the_real_ups_has_another_name_is_broken_by_name() -> None:
    """inventory's pi-cabin.lan: its rule pins cabin-ups, so my-ups is a placeholder that
    reads "Driver not connected" and never goes OB, LB or FSD."""
    cabin = {"device": [PINNED], "shutdown": {"secondary": [secondary("pi-cabin.lan", origin="host")]}}
    broken = path(cabin, {"cabin-ups": (OURS,), "my-ups": (GATEWAY,)})
    assert broken.broken == ("pi-cabin.lan watches my-ups, a placeholder; the UPS on the bus is cabin-ups",)
    assert broken.secondaries[0][1] is False and not broken.armed
    # An older rollout's expect_secondaries on UPS_NAME: the same break.
    legacy = path({"device": [PINNED], **LEGACY}, {"cabin-ups": (OURS,), "my-ups": (GATEWAY,)})
    assert legacy.broken == ("the host's own upsmon watches my-ups, a placeholder; the UPS on the bus is cabin-ups",)
    # host_ups names the real one: whole once the Pi's upsmon is logged in there.
    fixed = {"device": [PINNED], "shutdown": {"host_ups": "cabin-ups", "expect_secondaries": 1}}
    assert path(fixed, {"cabin-ups": (OURS, GATEWAY), "my-ups": ()}).armed
    assert not path(fixed, {"cabin-ups": (OURS,), "my-ups": (GATEWAY,)}).armed


def test_with_no_ups_on_the_bus_the_placeholder_is_all_there_is() -> None:
    """Nothing to watch instead: the secondary logged in to the placeholder is whole (and
    sees OB at once when its UPS is plugged in under that name)."""
    assert path(LEGACY, {"my-ups": (GATEWAY,)}, on_bus=False).armed


def test_a_secondary_on_a_ups_upsd_does_not_serve_is_named() -> None:
    typo = {"shutdown": {"secondary": [secondary("nas", ups="rack-ups")]}}
    # Served as a placeholder (every secondary's UPS is: decide/desired.py), so with a UPS on
    # the bus under another name it is named as one.
    assert path(typo, {"my-ups": (OURS, NAS)}).broken == (
        "nas watches rack-ups, a placeholder; the UPS on the bus is my-ups",
    )
    # upsd not reloaded yet (it serves only my-ups): not served, by name.
    assert path(typo, {"my-ups": (NAS,)}, on_bus=False).broken == (
        "nas watches rack-ups, which upsd does not serve (it serves my-ups)",
    )


def test_logins_not_listed_are_not_known_and_not_armed() -> None:
    unknown = path(FLEET, None)
    assert unknown.broken == ("upsd did not list its logins (LIST CLIENT): not known whether pi1, nas logged in",)
    assert [ok for _, ok in unknown.secondaries] == [None, None] and not unknown.armed


def test_no_secondaries_expected_no_login_is_read_and_upsmon_disabled_checks_nothing() -> None:
    assert path(HALTS, None) == health.ShutdownPath((), (), True)
    off = path({"upsmon": {"enabled": False}, **FLEET}, None)
    assert off == health.ShutdownPath()


def test_compose_alone_is_healthy_but_not_armed_nothing_halts_the_host() -> None:
    """compose.yaml alone: nothing broken, so `health` passes (NUT is served), but the
    container's SHUTDOWNCMD only logs and no secondary from the host is expected, so a low
    battery would halt nothing: not armed, and why. The fleet's ARMED says the same."""
    alone = path({}, None)
    assert alone.broken == () and not alone.armed and alone.unarmed == health.NOTHING_HALTS
    d, expected = decision({}, None)
    assert health.verdict(d, expected).healthy
    assert path(FLEET, {"my-ups": (OURS, GATEWAY, NAS)}).armed  # the host's own upsmon halts it
    # In a container, the owner's own SHUTDOWNCMD (the README's example) halts nothing either.
    assert path(HALTS, None).armed and not path(HALTS, None, contained=True).armed
    assert path({**HALTS, **FLEET}, {"my-ups": (OURS, GATEWAY, NAS)}, contained=True).armed
    said = {"armed": False, "broken": [], "unarmed": health.NOTHING_HALTS, "secondaries": []}
    assert report.armed(said, None) == (False, (health.NOTHING_HALTS,))


def test_the_verdict_and_status_read_the_same_rule() -> None:
    d, expected = decision(LEGACY, {"my-ups": (OURS, NAS)})
    v = health.verdict(d, expected)
    assert not v.healthy and v.text == "unhealthy: shutdown path: " + health.shutdown_path(d, expected).broken[0]
    d, expected = decision(LEGACY, {"my-ups": (OURS, GATEWAY)})
    assert health.verdict(d, expected).text == "healthy: upsd serves my-ups"


# --- fleet status ARMED ------------------------------------------------------------------------


def test_fleet_armed_is_the_agents_rule_and_an_agent_that_only_counts_is_not_enough() -> None:
    pi = [{"name": "pi1", "ups": "my-ups", "from": "host", "logged_in": True}]
    assert report.armed({"armed": True, "broken": [], "secondaries": pi}, "running") == (True, ())
    old = report.armed({"armed": True, "broken": []}, "running")  # an older agent: a login count
    assert old[0] is None and "counts logins" in old[1][0]
    assert report.armed({"armed": True, "broken": []}, None) == (True, ())  # host_shutdown off: nothing to tell
    unchecked = report.armed({"armed": True, "broken": [], "secondaries": []}, "running")
    assert unchecked == (
        False,
        ("the agent does not check the Pi's own upsmon's login (no [[shutdown.secondary]] from the host)",),
    )
    why = "pi1: the host's own upsmon is not logged in to my-ups from the host (...)"
    assert report.armed({"armed": False, "broken": [why], "secondaries": pi}, "running") == (False, (why,))


# --- [shutdown] in config.toml ---------------------------------------------------------------


def test_the_shutdown_table_reads_host_ups_and_each_secondary() -> None:
    cfg = parse(
        {
            "shutdown": {
                "ups_off_delay": 210,
                "host_ups": "cabin-ups",
                "secondary": [
                    secondary("pi-cabin.lan", "cabin-ups", "host"),
                    secondary(
                        "nas.lan", "cabin-ups", ["192.168.1.20", "::ffff:192.168.1.21", "fd00::20"], halt_seconds=180
                    ),
                    secondary("desk", "cabin-ups"),
                ],
            }
        }
    )
    assert cfg.host_ups == ("cabin-ups",)
    assert cfg.shutdown_secondaries == (
        Secondary("pi-cabin.lan", "cabin-ups", from_host=True),
        Secondary("nas.lan", "cabin-ups", addresses=("192.168.1.20", "192.168.1.21", "fd00::20"), halt_seconds=180),
        Secondary("desk", "cabin-ups"),
    )
    # Several UPSes feed the host: one secondary per UPS may share a name.
    several = parse(
        {
            "shutdown": {
                "host_ups": ["a-ups", "b-ups"],
                "secondary": [secondary("pi1", "a-ups", "host"), secondary("pi1", "b-ups", "host")],
            }
        }
    )
    assert several.host_ups == ("a-ups", "b-ups") and len(several.shutdown_secondaries) == 2


def test_expect_secondaries_is_one_secondary_from_the_host_on_host_ups(tmp_path: Path) -> None:
    assert parse(LEGACY).shutdown_secondaries == (Secondary(HOST_UPSMON, "my-ups", from_host=True),)
    on = parse({"shutdown": {"expect_secondaries": 2, "host_ups": ["a-ups", "b-ups"]}}).shutdown_secondaries
    assert on == (Secondary(HOST_UPSMON, "a-ups", from_host=True), Secondary(HOST_UPSMON, "b-ups", from_host=True))
    # Said by the fleet's own entry already: not twice.
    assert (
        parse({"shutdown": {"expect_secondaries": 1, **FLEET["shutdown"]}}).shutdown_secondaries
        == parse(FLEET).shutdown_secondaries
    )
    # host_ups defaults to UPS_NAME, with a file or without.
    file = tmp_path / "config.toml"
    file.write_text("[shutdown]\nexpect_secondaries = 1\n")
    assert load(file, "rack-ups").shutdown_secondaries == (Secondary(HOST_UPSMON, "rack-ups", from_host=True),)
    assert load(None, "rack-ups").host_ups == ("rack-ups",)
    assert parse({}).shutdown_secondaries == ()


def test_an_older_files_unsafe_values_are_raised_not_refused_so_an_upgrade_keeps_nut() -> None:
    """fsd_clear_after below 60 and, with expect_secondaries (no halt_seconds of its own),
    ups_off_delay below 90 were taken by earlier releases: raised to the least that is safe,
    each said in `raised` (logged at start). New keys stay strict (the table below)."""
    cfg = parse({"shutdown": {"fsd_clear_after": 10, "ups_off_delay": 60, "expect_secondaries": 1}})
    assert (cfg.fsd_clear_after, cfg.ups_off_delay) == (60, 90)
    assert [note.split(" is raised")[0] for note in cfg.raised] == [
        "shutdown.fsd_clear_after 10",
        "shutdown.ups_off_delay 60",
    ]
    assert parse({"shutdown": {"fsd_clear_after": 60, "ups_off_delay": 120, "expect_secondaries": 1}}).raised == ()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"fsd_clear_after": "5m"}, "shutdown.fsd_clear_after must be a whole number from 0 to 86400"),
        (
            {
                "ups_off_delay": 200,
                "secondary": [secondary("pi1", origin="host"), secondary("nas.lan", halt_seconds=180)],
            },
            "shutdown.ups_off_delay (200) is less than nas.lan's halt_seconds (180, shutdown.secondary[1]) + 30: "
            "the UPS would cut its power before it has halted; give ups_off_delay = 210 or more "
            "(or 0: never cut the load)",
        ),
        ({"host_ups": []}, "shutdown.host_ups must be a UPS name or a non-empty list of UPS names"),
        ({"host_ups": 3}, "shutdown.host_ups must be a UPS name or a non-empty list of UPS names"),
        ({"host_ups": "Cabin UPS"}, "shutdown.host_ups='Cabin UPS' is not a valid UPS name"),
        ({"host_ups": ["a", "a"]}, "shutdown.host_ups: a listed twice"),
        ({"secondary": {"name": "nas"}}, r"shutdown.secondary must be an array of tables: [[shutdown.secondary]]"),
        ({"secondary": ["nas"]}, "shutdown.secondary[0] must be a table"),
        ({"secondary": [{"ups": "my-ups"}]}, "shutdown.secondary[0].name must be a non-empty printable ASCII string"),
        ({"secondary": [{"name": "nas"}]}, "shutdown.secondary[0] (nas): ups must be the name of the UPS"),
        (
            {"secondary": [secondary("nas", ups="My UPS")]},
            "shutdown.secondary[0] (nas): ups='My UPS' is not a valid UPS name",
        ),
        ({"secondary": [secondary("nas", origin="lan")]}, 'shutdown.secondary[0] (nas): from must be "host"'),
        ({"secondary": [secondary("nas", origin=[])]}, 'shutdown.secondary[0] (nas): from must be "host"'),
        (
            {"secondary": [secondary("nas", origin=["nas.lan"])]},
            "shutdown.secondary[0] (nas): from: 'nas.lan' is not an IP address",
        ),
        (
            {"secondary": [secondary("nas", halt_seconds=0)]},
            "shutdown.secondary[0] (nas): halt_seconds must be a whole number",
        ),
        ({"secondary": [secondary("nas", port=3493)]}, "shutdown.secondary[0]: unknown key(s) port"),
        (
            {"secondary": [secondary("nas"), secondary("nas")]},
            "shutdown.secondary[1] (nas): nas on my-ups is shutdown.secondary[0] already",
        ),
        ({"expect": 1}, "shutdown: unknown key(s) expect"),
    ],
)
def test_a_bad_shutdown_table_is_refused_naming_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse({"shutdown": table})


def test_ups_off_delay_zero_never_cuts_so_no_halt_time_limits_it() -> None:
    assert (
        parse({"shutdown": {"ups_off_delay": 0, "secondary": [secondary("nas", halt_seconds=900)]}}).ups_off_delay == 0
    )
    assert (
        parse({"shutdown": {"ups_off_delay": 210, "secondary": [secondary("nas", halt_seconds=180)]}}).ups_off_delay
        == 210
    )


def test_a_bad_shutdown_table_in_the_file_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text('[[shutdown.secondary]]\nname = "nas"\nups = "my-ups"\nfrom = ["999.1.1.1"]\n')
    with pytest.raises(ConfigError, match=re.escape(f"{file}: shutdown.secondary[0] (nas): from: '999.1.1.1'")):
        load(file)


# --- observe/routes.py --------------------------------------------------------------------------


def _hex4(address: str) -> str:
    """An IPv4 address as /proc/net/route prints it: the kernel's word, in this CPU's order."""
    return f"{int.from_bytes(bytes(int(b) for b in address.split('.')), sys.byteorder):08X}"


def test_the_default_gateways_are_read_from_the_kernels_routing_tables(tmp_path: Path) -> None:
    route, route6 = tmp_path / "route", tmp_path / "ipv6_route"
    header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    route.write_text(
        header
        + f"eth0\t00000000\t{_hex4(GATEWAY)}\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        + f"eth0\t{_hex4('172.17.0.0')}\t00000000\t0001\t0\t0\t0\t{_hex4('255.255.0.0')}\t0\t0\t0\n"
    )
    zero = "0" * 32
    route6.write_text(
        f"fd000000000000000000000000000000 40 {zero} 00 {zero} 00000100 00000001 00000000 00000001 eth0\n"
        f"{zero} 00 {zero} 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003 eth0\n"
    )
    assert routes.gateways(route, route6) == (GATEWAY, "fd00::1")
    assert routes.gateways(tmp_path / "none", tmp_path / "none6") == ()  # no table: no gateway
    route.write_text(header + "eth0\t00000000\tnot-hex\t0003\n")
    assert routes.gateways(route, tmp_path / "none6") == ()


def test_the_pis_own_upsmon_from_its_lan_address_arms_the_path_when_marked_this_host() -> None:
    """nut_listen on one LAN address: the Pi's own upsmon dials it and upsd sees that address
    (Docker's DNAT keeps it), so the fleet writes `from = [address]` and `this_host = true`:
    the login is matched by address, and it is what halts this host (armed). The fleet's
    ARMED takes the mark as it takes from = "host"."""
    lan = "192.168.1.10"
    own = {"shutdown": {"secondary": [secondary("pi1", origin=[lan], this_host=True)]}}
    assert path(own, {"my-ups": (OURS, lan)}, contained=True).armed
    assert not path(own, {"my-ups": (OURS, NAS)}, contained=True).armed
    unmarked = {"shutdown": {"secondary": [secondary("pi1", origin=[lan])]}}
    assert path(unmarked, {"my-ups": (OURS, lan)}, contained=True).unarmed == health.NOTHING_HALTS
    with pytest.raises(ConfigError, match="this_host must be true or false"):
        parse({"shutdown": {"secondary": [secondary("pi1", origin="host", this_host=False)]}})
    pi = [{"name": "pi1", "ups": "my-ups", "from": [lan], "this_host": True, "logged_in": True}]
    assert report.armed({"armed": True, "broken": [], "secondaries": pi}, "running") == (True, ())
