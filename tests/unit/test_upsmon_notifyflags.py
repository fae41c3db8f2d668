"""CVE-2026-54161 (GHSA-mjgp-j4gm-6qg5), kept out: upsmon in NUT 2.8.3-2.8.5 hands alarm text
the UPS server sent to a shell with `NOTIFYFLAG ALARM ...EXEC`, and its wall() path has the
same flaw (docs/security.md). No upsmon.conf we write may give ALARM (or OTHER, whose text
is the server's too) EXEC, or any notify type WALL, and since a type without a NOTIFYFLAG
line gets NUT's default, SYSLOG+WALL, every type must have one.

Read with the project's NUT tokenizer (as upsmon's parser reads it), for every upsmon.conf:
the agent's (templates/upsmon.conf.j2) across the settings that shape it, and the fleet's
host and client files (fleet/templates/) across host data.
"""

from __future__ import annotations

from typing import Any

import pytest

from fleet import clients, data, render
from reconcile.cycle import simulator_for
from reconcile.decide.desired import build
from reconcile.decide.render import render_file
from reconcile.model import UPSMON_NOTICES, Secrets, Ups, UsbDevice
from reconcile.nutsyntax import NOTIFY_TYPES, tokenize
from reconcile.settings import AGENT_NOTICES, load
from reconcile.simulate import PORT, PRODUCTID, SERIAL, VENDORID
from reconcile.userconfig import UserConfig

# The notify types of NUT 2.8.4's upsmon as its source spells them (clients/upsmon.h,
# notifylist[]), and those added since: SHUTDOWN_HOSTSYNC (2.8.5), SUSPEND_TIMEJUMP_UNEXPECTED
# (2.8.6). Written out here, not taken from reconcile.nutsyntax: this is what that list is
# checked against.
NUT_2_8_4 = {
    *("ONLINE", "ONBATT", "LOWBATT", "FSD", "COMMOK", "COMMBAD", "SHUTDOWN", "REPLBATT", "NOCOMM"),
    *("NOPARENT", "CAL", "NOTCAL", "OFF", "NOTOFF", "BYPASS", "NOTBYPASS", "ECO", "NOTECO", "ALARM"),
    *("NOTALARM", "OVER", "NOTOVER", "TRIM", "NOTTRIM", "BOOST", "NOTBOOST", "OTHER", "NOTOTHER"),
    *("SUSPEND_STARTING", "SUSPEND_FINISHED"),
}
NUT_LATER = {"SHUTDOWN_HOSTSYNC", "SUSPEND_TIMEJUMP_UNEXPECTED"}
# Notices whose text is the server's (ups.alarm, unclassified status tokens): never EXEC.
SERVER_TEXT = {"ALARM", "OTHER"}


def notify_lines(text: str) -> tuple[dict[str, set[str]], list[list[str]]]:
    """NOTIFYFLAG type -> its flags (upsmon splits them on '+'), and the NOTIFYCMD lines."""
    flags: dict[str, set[str]] = {}
    commands = []
    for words in tokenize(text):
        if words[0].upper() == "NOTIFYFLAG":
            assert len(words) == 3, f"a NOTIFYFLAG line upsmon reads otherwise: {words}"
            kind = words[1].upper()  # upsmon compares types case-insensitively
            assert kind not in flags, f"two NOTIFYFLAG lines for {kind}: the last one wins"
            flags[kind] = {flag.upper() for flag in words[2].split("+")}
        elif words[0].upper() == "NOTIFYCMD":
            commands.append(words)
    return flags, commands


def assert_not_exposed(text: str, may_exec: set[str]) -> dict[str, set[str]]:
    flags, commands = notify_lines(text)
    assert set(flags) == set(NOTIFY_TYPES), sorted(set(NOTIFY_TYPES) ^ set(flags))
    assert set(flags) >= NUT_2_8_4 | NUT_LATER, sorted((NUT_2_8_4 | NUT_LATER) - set(flags))  # none at the default
    assert [kind for kind, given in flags.items() if "WALL" in given] == []
    assert [kind for kind, given in flags.items() if "SYSLOG" not in given] == []  # each still logged
    executed = {kind for kind, given in flags.items() if "EXEC" in given}
    assert not executed & SERVER_TEXT, executed
    assert executed <= may_exec, sorted(executed - may_exec)
    assert bool(executed) == bool(commands), (executed, commands)  # EXEC only with a NOTIFYCMD
    return flags


EVENTS = [n.lower() for n in (*UPSMON_NOTICES, *AGENT_NOTICES)]
EVENT_CHOICES = ["default", "all", *EVENTS, *(f"default,-{name}" for name in EVENTS)]


def agent_upsmon(env: dict[str, str], attached: bool) -> str:
    """The agent's upsmon.conf for these settings, wired as cycle.Agent.load wires them."""
    s = load({"NUT_STATEPATH": "/var/run/nut", "RECONCILE_STATE": "/var/lib/nut-reconcile", **env})
    rules = (simulator_for(s).rule(),) if s.simulate else ()
    user = UserConfig(rules=rules, notify_cmd=s.notify.notify_cmd if s.notify else None)
    usb = UsbDevice(PORT, VENDORID, PRODUCTID, 1, 2, SERIAL, "ups-nut-smart", "Simulated")
    ups = Ups(usb, "dummy-ups", "rule", False, rules[0]) if rules else Ups(usb, "usbhid-ups", "udev-rules", True)
    config, problems = build(
        [ups] if attached else [],
        [],
        {usb.fingerprint: "my-ups"},
        "my-ups",
        user,
        Secrets(None, "monpass123", "upsmonpass"),
        str(s.statepath),
        s.run_user,
    )
    assert problems == ()
    assert len(config.monitors) == int(attached)
    return render_file("upsmon.conf", config)


@pytest.mark.parametrize("simulate", ["0", "1"])
@pytest.mark.parametrize("attached", [False, True])
def test_the_agents_upsmon_conf_never_walls_or_execs_an_alarm_notifications_off(simulate: str, attached: bool) -> None:
    flags = assert_not_exposed(agent_upsmon({"SIMULATE": simulate}, attached), may_exec=set())
    assert all(given == {"SYSLOG"} for given in flags.values()), flags


@pytest.mark.parametrize("events", EVENT_CHOICES)
@pytest.mark.parametrize("simulate", ["0", "1"])
@pytest.mark.parametrize("attached", [False, True])
def test_the_agents_upsmon_conf_never_walls_or_execs_an_alarm_notifications_on(
    events: str, simulate: str, attached: bool
) -> None:
    env = {"NOTIFY_URLS": "json://127.0.0.1/hook", "NOTIFY_EVENTS": events, "SIMULATE": simulate}
    flags = assert_not_exposed(agent_upsmon(env, attached), may_exec=set(UPSMON_NOTICES))
    # upsmon hands every one of its notices to the agent, which picks (NOTIFY_EVENTS).
    assert {kind for kind, given in flags.items() if "EXEC" in given} == set(UPSMON_NOTICES)


HOSTS: list[dict[str, Any]] = [
    {},
    {"ups_name": "rack-ups", "nut_port": 3494, "host_shutdown_cmd": "/usr/local/bin/halt-me --now"},
    {"host_password": "given-host-pass-123", "ups_name": "ups", "synology_compat": True, "simulate": True},
    {"notify_urls": ["json://127.0.0.1/hook"], "notify_events": "all", "metrics_port": 9199},
]


@pytest.mark.parametrize("given", HOSTS)
def test_the_fleets_host_upsmon_conf_never_walls_and_never_execs(given: dict[str, Any]) -> None:
    config = data.load("pi1", lambda key: given.get(key, data.DEFAULTS[key]), {}, [("nas", "pi1")])
    assert_not_exposed(render.host_upsmon(config), may_exec=set())


CLIENTS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"ups_server": "pi1"}, {}),
    ({"ups_server": "pi1", "shutdown_after": 300}, {"ssh_hostname": "10.0.0.5", "nut_port": 3494}),
    ({"ups_server": "pi1", "shutdown_after": 60, "ups_server_address": "fd00::5"}, {"ups_name": "rack-ups"}),
    ({"ups_server": "pi1", "host_shutdown_cmd": "/sbin/poweroff"}, {"ssh_hostname": "pi1.lan"}),
]


@pytest.mark.parametrize(("given", "pi"), CLIENTS)
def test_the_fleets_client_upsmon_conf_never_walls_and_execs_upssched_for_onbatt_online_only(
    given: dict[str, Any], pi: dict[str, Any]
) -> None:
    client = clients.load_client("nas", lambda k: given.get(k), lambda k, d: pi.get(k, d))
    flags = assert_not_exposed(render.client_files(client)["upsmon.conf"], may_exec={"ONBATT", "ONLINE"})
    staged = given.get("shutdown_after") is not None
    assert {kind for kind, given in flags.items() if "EXEC" in given} == ({"ONBATT", "ONLINE"} if staged else set())
