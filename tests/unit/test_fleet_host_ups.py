"""Each host watches the UPS that powers it (issue 26): host_ups for the Pi's own upsmon and
each nut_clients host, NUT's MINSUPPLIES for several, the agent's [shutdown] secondaries,
nut_listen on one address, halt_seconds against ups_off_delay, fsd_clear_after at least 60,
and bad data for one host stopping the hosts whose files depend on it. Pure: the rendered
text and the messages, no host needed."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from typing import Any

import pytest
from pyinfra.api.config import Config
from pyinfra.api.inventory import Inventory
from pyinfra.api.state import State
from pyinfra.context import ctx_config, ctx_state

# Why pyinfra_cli: its make_inventory is what `pyinfra INVENTORY ...` reads a file with.
from pyinfra_cli.inventory import make_inventory  # type: ignore[import-untyped]

from fleet import clients, data, render
from fleet.clients import Member
from fleet.config import HostConfig
from fleet.facts import ClientUsers
from testbed import REPO

CABIN = {"match": {"vendorid": "0764", "productid": "0501"}, "name": "cabin-ups"}
SHED = {"match": {"vendorid": "051d", "productid": "0002"}, "name": "shed-ups"}


def load(
    host: str = "pi1",
    members: Iterable[Member] = (),
    live: Iterable[str] | None = None,
    **given: Any,
) -> HostConfig:
    return data.load(
        host,
        lambda key: given.get(key, data.DEFAULTS[key]),
        {},
        members,
        None if live is None else lambda project_dir: live,
    )


def client(name: str = "nas", known: bool = True, **given: Any) -> Member:
    return Member(name, {"ups_server": "pi1", **given}.get, known)


def load_client(given: dict[str, Any], pi: dict[str, Any]) -> clients.ClientConfig:
    return clients.load_client("nas", lambda k: {"ups_server": "pi1", **given}.get(k), lambda k, d: pi.get(k, d))


def monitors(text: str) -> list[str]:
    return re.findall(r"^MONITOR (\S+) 1 ", text, re.M)


def minsupplies(text: str) -> int:
    return int(re.findall(r"^MINSUPPLIES (\d+)$", text, re.M)[0])


def shutdown(config: HostConfig) -> dict[str, Any]:
    table: dict[str, Any] = tomllib.loads(render.agent_config(config))["shutdown"]
    return table


def test_by_default_the_pi_watches_ups_name_and_the_agent_expects_its_upsmon_from_the_host() -> None:
    config = load()
    upsmon = render.host_upsmon(config)
    assert monitors(upsmon) == ["my-ups@127.0.0.1:3493"] and minsupplies(upsmon) == 1
    table = shutdown(config)
    assert table["host_ups"] == "my-ups" and "expect_secondaries" not in table
    assert table["secondary"] == [{"name": "pi1", "ups": "my-ups", "from": "host", "halt_seconds": 60}]
    # Without host_shutdown no upsmon on the Pi is expected; the UPS that powers it is still said.
    off = shutdown(load(host_shutdown=False))
    assert off["host_ups"] == "my-ups" and "secondary" not in off


def read_example() -> Inventory:
    """The top-level `inventory`, read as pyinfra's CLI reads it (group_data beside it)."""
    run = State(check_for_changes=False)
    run.cwd = str(REPO)
    with ctx_state.use(run), ctx_config.use(Config()):  # type: ignore[no-untyped-call]
        return make_inventory("inventory", cwd=str(REPO))  # type: ignore[no-any-return]


def test_the_example_pi_cabin_watches_its_pinned_name_not_the_placeholder() -> None:
    """inventory's pi-cabin.lan pins `cabin-ups`: its upsmon (and the agent) must name that
    UPS, or it reads "Driver not connected" on my-ups and never sees OB, LB or FSD."""
    inventory = read_example()
    rendered = {}
    for host in inventory:

        def get(key: str, host: Any = host) -> Any:
            return host.data.get(key, data.DEFAULTS[key])

        config = data.load(host.name, get, {}, clients.members(inventory))
        rendered[host.name] = (monitors(render.host_upsmon(config)), shutdown(config)["host_ups"])
    assert rendered["pi-cabin.lan"] == (["cabin-ups@127.0.0.1:3493"], "cabin-ups")
    assert rendered["pi-rack.lan"] == (["my-ups@127.0.0.1:3493"], "my-ups")


@pytest.mark.parametrize(
    ("devices", "wanted"),
    [
        ([CABIN], "cabin-ups"),
        ([{**CABIN, "powers_host": False}], "my-ups"),  # watched for the network only
        ([{**CABIN, "ignore": True}], "my-ups"),  # never served
        ([{"match": CABIN["match"]}], "my-ups"),  # no name pinned
        ([CABIN, {**SHED, "powers_host": False}], "cabin-ups"),
    ],
)
def test_the_default_host_ups_is_the_one_powering_rules_pinned_name_else_ups_name(
    devices: list[dict[str, Any]], wanted: str
) -> None:
    config = load(devices=devices)
    assert config.host_ups == (wanted,)
    assert monitors(render.host_upsmon(config)) == [f"{wanted}@127.0.0.1:3493"]


def test_two_powering_rules_with_different_names_are_refused_naming_the_host_and_the_rules() -> None:
    with pytest.raises(data.DataError) as caught:
        load(devices=[CABIN, {"match": {"vendorid": "0463"}}, SHED])
    message = str(caught.value)
    assert message.startswith("host pi1: data host_ups: none given, and device[0] (cabin-ups), device[2] (shed-ups)")
    assert "set host_ups" in message and "powers_host = false" in message
    # Either answer the message offers resolves it.
    assert load(devices=[CABIN, SHED], host_ups="shed-ups").host_ups == ("shed-ups",)
    assert load(devices=[CABIN, {**SHED, "powers_host": False}]).host_ups == ("cabin-ups",)


def test_several_upses_feeding_the_pi_are_one_monitor_each_with_minsupplies() -> None:
    both = load(devices=[CABIN, SHED], host_ups=["cabin-ups", "shed-ups"])
    upsmon = render.host_upsmon(both)
    assert monitors(upsmon) == ["cabin-ups@127.0.0.1:3493", "shed-ups@127.0.0.1:3493"] and minsupplies(upsmon) == 2
    table = shutdown(both)
    assert table["host_ups"] == ["cabin-ups", "shed-ups"]
    assert [(s["ups"], s["from"]) for s in table["secondary"]] == [("cabin-ups", "host"), ("shed-ups", "host")]
    # A dual-PSU host that runs on either: one is enough.
    one = load(devices=[CABIN, SHED], host_ups=["cabin-ups", "shed-ups"], host_minsupplies=1)
    assert minsupplies(render.host_upsmon(one)) == 1


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"host_ups": []}, "host_ups: [] is not a UPS name or a list of them"),
        ({"host_ups": 5}, "host_ups: 5 is not a UPS name or a list of them"),
        ({"host_ups": "cabin ups"}, "host_ups: 'cabin ups' is not a valid UPS name"),
        ({"host_ups": ["my-ups", "my-ups"]}, "host_ups: 'my-ups' is given twice"),
        (
            {"host_ups": "cabin-ups", "devices": [{**CABIN, "powers_host": False}]},
            "host_ups: 'cabin-ups' is pinned by device[0], which says powers_host = false",
        ),
        (
            {"host_ups": ["my-ups", "my-ups-2"], "host_minsupplies": 3},
            "host_minsupplies: 3 is not a whole number from 1 to 2",
        ),
        (
            {"host_ups": "cabn-ups", "devices": [CABIN]},
            "host_ups: 'cabn-ups' is no name the Pi serves a UPS under: its UPSes are 'my-ups' (ups_name), "
            "'cabin-ups' (pinned by devices), and my-ups-2, my-ups-3... for more",
        ),
        ({"host_minsupplies": 0}, "host_minsupplies: 0 is not a whole number from 1 to 1"),
        ({"host_minsupplies": True}, "host_minsupplies: True is not a whole number"),
        ({"devices": [{"match": {"vendorid": 1309}, "name": "x"}]}, "devices: device[0].match.vendorid"),
    ],
)
def test_bad_host_ups_data_names_the_host_and_the_key(given: dict[str, Any], message: str) -> None:
    with pytest.raises(data.DataError, match=re.escape(f"host pi1: data {message}")):
        load(**given)


@pytest.mark.parametrize(
    ("listen", "dialled", "origin"),
    [
        ("0.0.0.0", "127.0.0.1", "host"),
        ("::", "127.0.0.1", "host"),
        ("127.0.0.1", "127.0.0.1", "host"),
        # The port is published there only (the loopback would not answer), and the login
        # arrives from that address (Docker's DNAT of a local connection keeps its source).
        ("192.168.1.10", "192.168.1.10", ["192.168.1.10"]),
        ("fd00::10", "[fd00::10]", ["fd00::10"]),
    ],
)
def test_nut_listen_on_one_address_points_the_pis_upsmon_there(listen: str, dialled: str, origin: Any) -> None:
    config = load(nut_listen=listen, nut_port=3494)
    assert monitors(render.host_upsmon(config)) == [f"my-ups@{dialled}:3494"]
    assert f'"{listen}:3494:3494"' in render.compose(config)  # and that is where compose publishes it
    assert [s["from"] for s in shutdown(config)["secondary"]] == [origin]
    # From an address, it is still the Pi's own: marked so, the agent counts it as what
    # halts this host (armed), as from = "host".
    assert [s.get("this_host", s["from"] == "host") for s in shutdown(config)["secondary"]] == [True]
    assert "# The Pi's own upsmon" in render.agent_config(config)
    with pytest.raises(data.DataError, match="is less than this Pi's host_halt_seconds"):
        load(nut_listen=listen, host_halt_seconds=100)


def test_a_nut_client_watches_its_pis_host_ups_and_the_pi_expects_it_logged_in() -> None:
    pi = {"devices": [CABIN], "ssh_hostname": "10.0.0.5"}
    nas = load_client({}, pi)
    files = render.client_files(nas)["upsmon.conf"]
    assert monitors(files) == ["cabin-ups@10.0.0.5:3493"] and minsupplies(files) == 1
    config = load(members=[client("nas", nut_address="10.0.0.20", halt_seconds=80), client("desk")], devices=[CABIN])
    assert shutdown(config)["secondary"] == [
        {"name": "pi1", "ups": "cabin-ups", "from": "host", "halt_seconds": 60},
        {"name": "desk", "ups": "cabin-ups", "halt_seconds": 60},  # no nut_address: any address but ours
        {"name": "nas", "ups": "cabin-ups", "from": ["10.0.0.20"], "halt_seconds": 80},
    ]
    # Its own ups (one or several) wins over the Pi's.
    two = load_client(
        {"ups": ["cabin-ups", "my-ups-2"], "host_minsupplies": 1, "nut_address": ["10.0.0.20", "fd00::20"]}, pi
    )
    text = render.client_files(two)["upsmon.conf"]
    assert monitors(text) == ["cabin-ups@10.0.0.5:3493", "my-ups-2@10.0.0.5:3493"] and minsupplies(text) == 1
    assert [(s.ups, s.origin) for s in two.secondaries] == [
        ("cabin-ups", ("10.0.0.20", "fd00::20")),
        ("my-ups-2", ("10.0.0.20", "fd00::20")),
    ]


@pytest.mark.parametrize(
    ("given", "pi", "message"),
    [
        ({"halt_seconds": -1}, {}, "host nas: data halt_seconds: -1 is not a whole number of seconds from 1 to 3600"),
        (
            {"halt_seconds": 100},
            {},
            "host nas: data halt_seconds: 100 s + 30 s is more than pi1's ups_off_delay (120 s)",
        ),
        ({"nut_address": "nas.lan"}, {}, "host nas: data nut_address: 'nas.lan' is not an IP address"),
        (
            {"ups": ["my-ups", "my-ups-2"], "host_minsupplies": 3},
            {},
            "host nas: data host_minsupplies: 3 is not a whole",
        ),
        ({"ups": "rack-ups"}, {}, "host nas: data ups: 'rack-ups' is no name the Pi serves a UPS under"),
        ({"ups": "a b"}, {}, "host nas: data ups: 'a b' is not a valid UPS name"),
        # What its files are made of, bad in its Pi's data: it fails too, naming the Pi's key.
        ({}, {"nut_port": "x"}, "host nas: data ups_server: pi1's data nut_port: 'x' is not a port"),
        ({}, {"devices": [CABIN, SHED]}, "host nas: data ups: none given, and pi1's data host_ups"),
    ],
)
def test_bad_client_data_names_the_host_and_the_key(given: dict[str, Any], pi: dict[str, Any], message: str) -> None:
    with pytest.raises(clients.ClientError, match=re.escape(message)):
        load_client(given, pi)


def test_a_client_does_not_fail_for_its_pis_data_that_its_files_do_not_use() -> None:
    assert load_client({}, {"tz": "Not/A/Zone", "ups": "x"}).upses == ("my-ups",)
    assert load_client({"ups": "cabin-ups"}, {"devices": [CABIN, SHED]}).upses == ("cabin-ups",)


def test_ups_off_delay_must_cover_the_slowest_host_plus_30_s_naming_it() -> None:
    with pytest.raises(data.DataError) as caught:
        load(members=[client("nas", halt_seconds=100), client("desk", halt_seconds=20)])
    assert str(caught.value).startswith(
        "host pi1: data ups_off_delay: 120 s is less than nut_clients host nas's halt_seconds (100 s) + 30 s: "
        "the UPS would cut nas's power before it has halted; give ups_off_delay = 130 or more"
    )
    assert load(members=[client("nas", halt_seconds=100)], ups_off_delay=130).ups_off_delay == 130
    with pytest.raises(
        data.DataError, match=re.escape("ups_off_delay: 120 s is less than this Pi's host_halt_seconds (95 s)")
    ):
        load(host_halt_seconds=95)
    assert load(host_halt_seconds=95, host_shutdown=False).host_halt_seconds == 95  # no upsmon on the Pi: no halt
    with pytest.raises(data.DataError, match="host pi1: data host_halt_seconds: 'slow' is not a whole number"):
        load(host_halt_seconds="slow")


@pytest.mark.parametrize("value", [10, 59])
def test_fsd_clear_after_is_at_least_60_naming_the_host_and_the_key(value: int) -> None:
    with pytest.raises(data.DataError, match=re.escape(f"host pi1: data fsd_clear_after: {value} is less than 60 s")):
        load(fsd_clear_after=value)
    assert load(fsd_clear_after=60).fsd_clear_after == 60
    with pytest.raises(data.DataError, match="host pi1: data fsd_clear_after: must be"):
        load(fsd_clear_after="soon")


def test_bad_data_for_a_client_stops_its_pi_before_anything_and_no_other_pi() -> None:
    """The test Pis' case: a client that fails would have its user dropped from its Pi by
    the same run (the host protected a minute ago could no longer log in)."""
    bad = client("nas", shutdown_after=0)
    with pytest.raises(data.DataError) as caught:
        load("pi1", [bad, client("desk")])
    assert str(caught.value) == (
        "host pi1: data nut_clients: host nas: data shutdown_after: 0 is not a whole number of seconds from 1 to 86400 "
        "(nothing is changed on pi1 either: its files hold that host's user)"
    )
    other = Member("nas", {"ups_server": "pi2", "shutdown_after": 0}.get)
    assert load("pi1", [other]).clients == ()  # its Pi is pi2, not this one


def test_a_client_whose_ups_server_names_no_host_stops_the_pi_that_serves_it_now() -> None:
    typo = client("nas", known=False, ups_server="pi-1")
    with pytest.raises(data.DataError) as caught:
        load("pi1", [typo], live=["client-nas", "client-desk"])
    assert str(caught.value).startswith(
        "host pi1: data nut_clients: host nas: data ups_server: 'pi-1' is not a host of this inventory "
        "(outside group nut_clients); pi1 serves it now (its upsd has the user client-nas)"
    )
    assert load("pi2", [typo], live=["client-desk"]).clients == ()  # a Pi that never served it goes on
    missing = client("nas", known=False, ups_server=None)
    with pytest.raises(data.DataError, match="host nas: data ups_server: required"):
        load("pi1", [missing], live=["client-nas"])

    def never(project_dir: str) -> list[str]:
        raise AssertionError("the live users are read only when a client's ups_server names no Pi")

    assert len(data.load("pi1", lambda k: data.DEFAULTS[k], {}, [client("nas")], never).clients) == 1


def test_the_live_client_users_fact_reads_the_users_of_the_running_config() -> None:
    config = render.agent_config(load(members=[client("nas"), client("NAS2.lan")]))
    lines = [line for line in config.splitlines() if line.startswith("[users.")]
    matched = [m.group(0) for line in lines if (m := re.match(r'^\[users\."?client-[A-Za-z0-9_.-]*', line))]
    assert ClientUsers().process(matched) == ["client-nas", "client-nas2.lan"]
    assert "config.toml" in ClientUsers().command("/opt/ups-nut-smart")


def test_members_of_an_inventory_know_whether_their_ups_server_is_a_pi() -> None:
    inventory = Inventory(  # type: ignore[no-untyped-call]
        (
            ["pi1", ("nas", {"ups_server": "pi1"}), ("typo", {"ups_server": "pi-1"}), ("chain", {"ups_server": "nas"})],
            {},
        ),
        pis=(["pi1"], {}),
        nut_clients=([("nas", {"ups_server": "pi1"}), "typo", "chain"], {}),
    )
    found = {m.name: (m.ups_server, m.server_known) for m in clients.members(inventory)}
    assert found == {"nas": ("pi1", True), "typo": ("pi-1", False), "chain": ("nas", False)}


def test_the_pi_data_a_client_reads_has_the_pis_own_defaults() -> None:
    assert {key: data.DEFAULTS[key] for key in clients.SERVER_DEFAULTS} == clients.SERVER_DEFAULTS
