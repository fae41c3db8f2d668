"""A pinned host_ups with no UPS attached (decide/desired.py): served as a placeholder, as
UPS_NAME is, so the Pi's upsmon reads "Driver not connected" and can log in, instead of
"Unknown UPS". What the fleet writes for inventory's pi-cabin: a [[device]] rule pinning
cabin-ups, host_ups = "cabin-ups" and the Pi's own upsmon as a secondary on it. Pure: the
desired files, the plan between them, and `health` over what upsd would then serve."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from reconcile.decide import health
from reconcile.decide.decision import Decision, decide
from reconcile.decide.desired import build
from reconcile.decide.loaded import section_blocks
from reconcile.decide.plan import Desired, make_plan
from reconcile.decide.render import render_all, render_upsmon_with
from reconcile.decide.supervision import Supervision
from reconcile.model import Daemon, ProcId, Served, Ups
from reconcile.nutsyntax import parse_sections, section_drivers
from reconcile.userconfig import Secondary, UserConfig, parse
from tests.unit.test_decision_and_events import device, inputs, observation
from tests.unit.test_plan import SECRETS, kinds, needs, running

GATEWAY = "172.17.0.1"  # the bridge's gateway: where the Pi's own upsmon arrives from in the container
OURS = "127.0.0.1"  # where our upsmon comes from
NAS = "192.168.1.30"
PINNED = {"match": {"vendorid": "051d", "productid": "0002"}, "name": "cabin-ups"}
PI = {"name": "pi-cabin.lan", "ups": "cabin-ups", "from": "host"}
# What the fleet writes for pi-cabin (fleet/templates/config.toml.j2).
CABIN: dict[str, Any] = {"device": [PINNED], "shutdown": {"host_ups": "cabin-ups", "secondary": [PI]}}
NO_DRIVER = "# nut-reconcile: no driver"


def cabin_desired(plugged: bool, user: UserConfig | None = None) -> Desired:
    """The desired files for pi-cabin, cabin-ups on the bus or not."""
    cfg = parse(CABIN) if user is None else user
    usb = device()
    upses = [Ups(usb, "usbhid-ups", "rule", True, cfg.rules[0] if cfg.rules else None)] if plugged else []
    names = {u.key: "cabin-ups" for u in upses}
    config, problems = build(upses, [], names, "my-ups", cfg, SECRETS, "/run/nut", "root")
    assert problems == ()
    return Desired(
        files=render_all(config),
        upsmon_enabled=config.upsmon_enabled,
        held=frozenset(),
        monitors=config.monitors,
        upsmon_with=lambda m: render_upsmon_with(config, m),
    )


def blocks(ups_conf: str) -> dict[str, dict[str, str | None]]:
    """ups.conf's sections: name -> options (the no-driver mark as a key of its own)."""
    _, sections = parse_sections(ups_conf)
    text = section_blocks(ups_conf)
    return {
        s.name: {**dict(s.options), **({"(no driver)": None} if NO_DRIVER in text[s.name] else {})} for s in sections
    }


# --- ups.conf and upsmon.conf ----------------------------------------------------------------


def test_unplugged_cabin_ups_is_a_placeholder_and_plugged_the_real_section() -> None:
    unplugged = blocks(cabin_desired(plugged=False).files["ups.conf"])
    assert sorted(unplugged) == ["cabin-ups", "my-ups"]
    for name in ("cabin-ups", "my-ups"):
        # The same kind as UPS_NAME's: no driver started, clients read "Driver not connected".
        assert unplugged[name] == {
            "driver": "usbhid-ups",
            "port": "auto",
            "desc": "No UPS attached",
            "(no driver)": None,
        }
    plugged = blocks(cabin_desired(plugged=True).files["ups.conf"])
    assert "(no driver)" not in plugged["cabin-ups"]
    assert (plugged["cabin-ups"]["vendorid"], plugged["cabin-ups"]["productid"]) == ("051d", "0002")
    assert plugged["my-ups"]["(no driver)"] is None  # UPS_NAME's placeholder stays, as before


def test_every_secondarys_ups_and_each_host_ups_gets_one_once() -> None:
    user = {
        "device": [PINNED],
        "shutdown": {
            "host_ups": ["cabin-ups", "shed-ups"],
            "secondary": [PI, {"name": "nas", "ups": "rack-ups", "from": [NAS]}, {**PI, "ups": "shed-ups"}],
        },
    }
    text = cabin_desired(plugged=False, user=parse(user)).files["ups.conf"]
    assert list(section_drivers(text)) == ["cabin-ups", "my-ups", "rack-ups", "shed-ups"]
    assert all("(no driver)" in options for options in blocks(text).values())


def test_the_placeholder_gets_no_monitor_and_upsmon_conf_is_what_my_ups_alone_gives() -> None:
    """Never watched by our upsmon: no MONITOR, MINSUPPLIES 0, as the UPS_NAME placeholder
    alone (a default config) gives today; plugged, cabin-ups is watched as any UPS is."""
    unplugged = cabin_desired(plugged=False).files["upsmon.conf"]
    alone = cabin_desired(plugged=False, user=UserConfig()).files["upsmon.conf"]
    assert unplugged == alone
    assert "MONITOR" not in unplugged and "MINSUPPLIES 0\n" in unplugged
    plugged = cabin_desired(plugged=True).files["upsmon.conf"]
    assert 'MONITOR cabin-ups@127.0.0.1:3493 1 upsmon "' in plugged and "MINSUPPLIES 1\n" in plugged
    assert "MONITOR my-ups" not in plugged


# --- the plan between them -------------------------------------------------------------------


def test_the_placeholder_alone_is_in_sync_no_driver_started() -> None:
    d = cabin_desired(plugged=False)
    assert make_plan(d, running(d)).in_sync


def test_an_agent_that_served_no_cabin_ups_placeholder_adds_it_by_an_upsd_reload_only() -> None:
    """An older agent's files (no placeholder for cabin-ups): ups.conf gains it and upsd
    reloads; no driver is started and upsmon is left alone."""
    before = cabin_desired(plugged=False, user=UserConfig())
    plan = make_plan(cabin_desired(plugged=False), running(before))
    assert kinds(plan) == ["write ups.conf", "reload_upsd"]
    assert "[cabin-ups]" in plan.writes[0].content


def test_plug_and_unplug_of_cabin_ups_keep_nuts_safe_order() -> None:
    unplugged, plugged = cabin_desired(plugged=False), cabin_desired(plugged=True)
    plug = make_plan(plugged, running(unplugged))
    assert kinds(plug) == [
        "write ups.conf",
        "start_driver cabin-ups",
        "reload_upsd",
        "write upsmon.conf",
        "reload_upsmon",
    ]
    assert needs(plug) == [[], [0], [0], [2], [3]]
    unplug = make_plan(unplugged, running(plugged, {"cabin-ups": "usbhid-ups"}))
    # MONITOR out first, then the driver stops, then the section turns back into a placeholder.
    assert kinds(unplug) == [
        "write upsmon.conf",
        "reload_upsmon",
        "stop_driver cabin-ups",
        "write ups.conf",
        "reload_upsd",
    ]
    assert needs(unplug) == [[], [0], [1], [1, 2], [3]]
    assert NO_DRIVER in section_blocks(unplug.writes[1].content)["cabin-ups"]


# --- health over what upsd then serves -------------------------------------------------------


def deployed(
    user: Mapping[str, Any], on_bus: bool, logins: Mapping[str, tuple[str, ...]]
) -> tuple[Decision, tuple[Secondary, ...]]:
    """The agent's decision once its files are applied: upsd serves exactly the sections of
    the ups.conf it wants (a UPS on the bus ok, a placeholder "Driver not connected"), our
    upsmon runs with the upsmon.conf it wants, and upsd lists `logins`."""
    cfg = parse(dict(user))
    bus = [device()] if on_bus else []
    at_start = decide(observation(*bus), Supervision(), dataclasses.replace(inputs(), user=cfg))
    files = render_all(at_start.config)
    real = set(at_start.names.values())
    served = {
        name: Served("ok", "OL") if name in real else Served("DRIVER-NOT-CONNECTED", None)
        for name in section_drivers(files["ups.conf"])
    }
    obs = dataclasses.replace(observation(*bus, served=served), logins=logins, gateways=(GATEWAY,))
    d = decide(obs, Supervision(), dataclasses.replace(inputs(), user=cfg))
    daemon = Daemon(ProcId(4242, 1), ())
    on_disk = dict(d.actual.files)
    on_disk["upsmon.conf"] = dataclasses.replace(on_disk["upsmon.conf"], content=files["upsmon.conf"])
    d = dataclasses.replace(
        d,
        owned=dataclasses.replace(d.owned, upsd=daemon, upsmon=daemon),
        actual=dataclasses.replace(d.actual, files=on_disk),
    )
    return d, cfg.shutdown_secondaries


def test_no_ups_on_the_bus_and_the_pi_logged_in_to_the_cabin_ups_placeholder_is_whole() -> None:
    d, secondaries = deployed(CABIN, on_bus=False, logins={"cabin-ups": (GATEWAY,), "my-ups": ()})
    assert set(d.obs.facts.served or {}) == {"cabin-ups", "my-ups"}  # served: a login is possible
    found = health.shutdown_path(d, secondaries)
    assert found.broken == () and found.armed
    assert found.secondaries == ((secondaries[0], True),)
    assert health.verdict(d, secondaries).healthy
    # The Pi's upsmon not logged in (yet): named, as on a real UPS.
    missing = health.shutdown_path(*deployed(CABIN, on_bus=False, logins={"cabin-ups": ()}))
    assert missing.broken == (
        f"pi-cabin.lan: the host's own upsmon is not logged in to cabin-ups from the host ({GATEWAY}, or "
        f"{OURS} beside our upsmon's login) (no login on cabin-ups)",
    )


def test_cabin_ups_on_the_bus_and_the_pi_on_it_is_whole() -> None:
    d, secondaries = deployed(CABIN, on_bus=True, logins={"cabin-ups": (OURS, GATEWAY), "my-ups": ()})
    assert d.names == {device().fingerprint: "cabin-ups"}
    assert health.shutdown_path(d, secondaries).armed and health.verdict(d, secondaries).healthy


def test_cabin_ups_on_the_bus_and_a_secondary_on_the_my_ups_placeholder_is_broken_by_name() -> None:
    on_my_ups = {"device": [PINNED], "shutdown": {"secondary": [{**PI, "ups": "my-ups"}]}}
    d, secondaries = deployed(on_my_ups, on_bus=True, logins={"cabin-ups": (OURS,), "my-ups": (GATEWAY,)})
    found = health.shutdown_path(d, secondaries)
    assert found.broken == ("pi-cabin.lan watches my-ups, a placeholder; the UPS on the bus is cabin-ups",)
    assert not found.armed
    assert not health.verdict(d, secondaries).healthy
