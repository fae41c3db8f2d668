"""upsd's MAXCONN: the setting, the rule against the open-files limit (decide/limits.py), the render."""

from __future__ import annotations

import tomllib

import pytest

from reconcile.decide.desired import build
from reconcile.decide.limits import LOWEST, RESERVE, Fit, LimitError, fit
from reconcile.decide.render import render_file
from reconcile.model import NutConfig, UsbDevice
from reconcile.nutsyntax import tokenize
from reconcile.userconfig import DEFAULT_MAXCONN, ConfigError, UserConfig, parse
from tests.unit.test_render_and_files import SECRETS, build_one


def test_maxconn_is_1024_unless_configured_and_refused_outside_its_range() -> None:
    assert DEFAULT_MAXCONN == 1024 and UserConfig().maxconn == 1024 and parse({}).maxconn == 1024
    assert parse({"upsd": {"maxconn": 64}}).maxconn == 64
    for bad in (0, -1, 15, 1048577, "1024", 10.5, True):
        with pytest.raises(ConfigError, match=r"^upsd\.maxconn must be a whole number from 16 to 1048576$"):
            parse({"upsd": {"maxconn": bad}})


@pytest.mark.parametrize(
    ("asked", "soft", "hard", "maxconn", "raise_to"),
    [
        (1024, 1048576, 1048576, 1024, None),  # Docker's huge limit: MAXCONN caps upsd's table, the limit stays
        (1024, None, None, 1024, None),  # unlimited
        (1024, 1024 + RESERVE, 4096, 1024, None),  # just enough
        (1024, 1024, 524288, 1024, 1024 + RESERVE),  # Debian's 1024:524288: raised to what upsd needs, no more
        (1024, 1024, None, 1024, 1024 + RESERVE),  # unlimited hard limit
        (1024, 256, 1024 + RESERVE, 1024, 1024 + RESERVE),  # the hard limit is just enough
        (1024, 256, 512, 512 - RESERVE, 512),  # too low a hard limit: lowered, soft raised to it
        (1024, 512, 512, 512 - RESERVE, None),  # soft already at the hard limit
        (64, 20, 80, 64, 64 + RESERVE),
        (1024, 20, LOWEST + RESERVE, LOWEST, LOWEST + RESERVE),  # the least that still runs
    ],
)
def test_the_rule(asked: int, soft: int | None, hard: int | None, maxconn: int, raise_to: int | None) -> None:
    got = fit(asked, soft, hard)
    assert got == Fit(maxconn, raise_to, asked, soft, hard)
    assert got.lowered == (maxconn < asked)
    # What NUT 2.8.6 checks at start: MAXCONN within the (raised) soft limit less its reserve of 8.
    effective = raise_to or soft
    assert effective is None or got.maxconn <= effective - 8


def test_a_hard_limit_with_no_room_for_upsd_is_refused_with_the_numbers() -> None:
    with pytest.raises(LimitError) as err:
        fit(1024, 20, LOWEST + RESERVE - 1)
    message = str(err.value)
    assert (
        f"hard limit of open files is {LOWEST + RESERVE - 1}" in message and f"at least {LOWEST + RESERVE}" in message
    )
    assert "--ulimit nofile=" in message


def maxconn_lines(config: NutConfig) -> list[str]:
    return [" ".join(tokens) for tokens in tokenize(render_file("upsd.conf", config)) if tokens[0] == "MAXCONN"]


def test_upsd_conf_carries_maxconn_from_the_user_config() -> None:
    config, _ = build_one(UsbDevice("1-1", "051d", "0002", 1, 2))
    assert maxconn_lines(config) == ["MAXCONN 1024"]
    # The agent hands desired.build the fitted value (cycle.Agent.load puts it in UserConfig).
    fitted, _ = build([], [], {}, "my-ups", UserConfig(maxconn=496), SECRETS, "/run/nut", "root")
    assert fitted.maxconn == 496 and maxconn_lines(fitted) == ["MAXCONN 496"]


def test_the_fleet_writes_nut_maxconn_only_when_given_and_checks_it_with_the_agents_rule() -> None:
    from fleet import data, render

    def config(**given: object) -> dict[str, object]:
        host = data.load("pi1", lambda key: given.get(key, data.DEFAULTS[key]), {})
        parsed: dict[str, object] = tomllib.loads(render.agent_config(host))["upsd"]
        return parsed

    assert "maxconn" not in config()  # the agent's default: the Pi's file stays as it was
    assert config(nut_maxconn=64)["maxconn"] == 64
    with pytest.raises(data.DataError, match=r"^host pi1: data nut_maxconn: must be a whole number from 16 to"):
        config(nut_maxconn=0)
