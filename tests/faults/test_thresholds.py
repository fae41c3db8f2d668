"""The owner's own shutdown thresholds ([[device]] low_battery_percent, low_runtime_seconds,
on_battery_max_seconds), end to end against the real upsd, dummy-ups, upsmon and upssched.

Driven by the SIMULATE demo's drill, as an owner would try them: `drill on-battery --charge 45`
pins the simulated UPS on battery at 45 %. With low_battery_percent = 50 the driver itself
raises LB (ignorelb + override.battery.charge.low), upsmon as primary sets FSD and runs
its (recording) shutdown command; without it, 45 % on battery is no reason to halt.
on_battery_max_seconds goes through upssched: upsmon's ONBATT reaches the agent's relay,
which runs upssched; its timer runs `upsmon -c fsd` unless ONLINE cancelled it first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconcile.nutsyntax import tokenize
from testbed import await_true
from testbed.nut import Sandbox
from testbed.webhook import Receiver

pytestmark = pytest.mark.nut

AWAIT = 60.0  # a ceiling, not a target
SIM = {"SIMULATE": "1", "SIMULATE_CYCLE": "86400", "SCAN_INTERVAL": "0.5", "SETTLE_TIME": "0.5"}
SIM_RULE = '[[device]]\nmatch = {vendorid = "051d", productid = "0002"}\n'  # the simulated UPS's
# upsmon's own timing here: POLLFREQ 1 s, then FINALDELAY 5 s before SHUTDOWNCMD.
UPSMON_WINDOW = 1 + 5


def start(box: Sandbox, rule: str = "", env: dict[str, str] | None = None) -> Path:
    """The SIMULATE demo served on line by the running agent, with `rule` added to the
    simulated UPS's [[device]] rule; returns the file the shutdown command appends to."""
    record = box.root / "shutdowns"
    box.rules.append(SIM_RULE + rule)
    box.write_config(f"\n[upsmon]\npollfreq = 1\ndeadtime = 3\nshutdown_cmd = \"/bin/sh -c 'echo ran >> {record}'\"\n")
    box.env.update(SIM)
    box.start_run(env=env)
    assert box.await_upsc("OL CHRG", timeout=AWAIT), box.run_output()
    assert box.await_log("event=start.upsmon", timeout=AWAIT), box.run_output()
    return record


def drill(box: Sandbox, *args: str) -> None:
    box.cli("drill", *args, check=True)


def upsmon_log(box: Sandbox) -> str:
    path = box.agent / "upsmon.log"
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize("threshold", [True, False], ids=["low_battery_percent=50", "no-threshold"])
def test_the_drill_at_45_percent_halts_with_low_battery_percent_50_and_not_without(
    sandbox: Sandbox, threshold: bool
) -> None:
    record = start(sandbox, "low_battery_percent = 50\n" if threshold else "")
    section = (sandbox.conf / "ups.conf").read_text()
    assert ("ignorelb" in section and 'override.battery.charge.low = "50"' in section) is threshold, section
    drill(sandbox, "on-battery", "--charge", "45")
    assert sandbox.await_upsc("45", var="battery.charge", timeout=AWAIT), sandbox.run_output()
    if threshold:
        # The driver's own LB (dummy-ups, as any NUT driver with ignorelb), then upsmon's FSD.
        assert sandbox.upsc(var="battery.charge.low")[1] == "50"
        assert await_true(record.exists, AWAIT), upsmon_log(sandbox) + sandbox.run_output()
        assert {"FSD", "OB", "LB"} <= set(sandbox.upsc(var="ups.status")[1].split()), sandbox.upsc()
        assert record.read_text().splitlines() == ["ran"]
    else:
        assert await_true(lambda: "on battery" in upsmon_log(sandbox), AWAIT), upsmon_log(sandbox)
        assert sandbox.upsc(var="ups.status")[1] == "OB DISCHRG"  # 45 % on battery: no LB from anyone
        # No event to await for "never": upsmon would halt within a poll and FINALDELAY.
        assert not await_true(record.exists, UPSMON_WINDOW + 4)
        assert "FSD" not in sandbox.upsc(var="ups.status")[1]


def test_on_battery_longer_than_on_battery_max_seconds_runs_the_shutdown(sandbox: Sandbox) -> None:
    record = start(sandbox, "on_battery_max_seconds = 10\n")
    conf = tokenize((sandbox.conf / "upssched.conf").read_text())
    assert ["AT", "ONBATT", f"my-ups@127.0.0.1:{sandbox.port}", "START-TIMER", "onbatt-my-ups", "10"] in conf, conf
    drill(sandbox, "on-battery")  # 80 %: far above any low battery
    began = time.monotonic()
    assert await_true(record.exists, AWAIT), upsmon_log(sandbox) + sandbox.run_output()
    # upssched's timer, not the battery: no LB, and upsmon was told by `upsmon -c fsd`.
    assert time.monotonic() - began >= 10 - 1, upsmon_log(sandbox)
    assert "User requested FSD" in upsmon_log(sandbox), upsmon_log(sandbox)
    status = sandbox.upsc(var="ups.status")[1].split()
    assert "FSD" in status and "LB" not in status, status
    assert record.read_text().splitlines() == ["ran"]


def test_back_on_line_before_on_battery_max_seconds_cancels_the_timer(sandbox: Sandbox) -> None:
    record = start(sandbox, "on_battery_max_seconds = 10\n")
    drill(sandbox, "on-battery")
    assert await_true(lambda: "on battery" in upsmon_log(sandbox), AWAIT), upsmon_log(sandbox)
    drill(sandbox, "on-line")
    assert await_true(lambda: "on line power" in upsmon_log(sandbox), AWAIT), upsmon_log(sandbox)
    # No event to await for "never": the window is the timer's 10 s from ONBATT plus upsmon's
    # own, with margin.
    assert not await_true(record.exists, 10 + UPSMON_WINDOW + 4), upsmon_log(sandbox)
    assert "FSD" not in sandbox.upsc(var="ups.status")[1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def test_with_notifications_on_the_notice_says_the_thresholds_and_the_timer_still_runs(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    """One NOTIFYCMD for both: the relay hands ONBATT to the agent and runs upssched."""
    env = {"NOTIFY_URLS": receiver.url, "HOST_NAME": "pi-test"}
    record = start(sandbox, "low_battery_percent = 30\non_battery_max_seconds = 10\n", env)
    drill(sandbox, "on-battery")
    assert await_true(lambda: receiver.has("my-ups: on battery"), AWAIT), receiver.titles()
    body = receiver.find("my-ups: on battery")[0]["message"]
    assert "Next: This host shuts down at 30 % / after 10 s on battery, whichever comes first." in body, body
    assert await_true(record.exists, AWAIT), upsmon_log(sandbox) + sandbox.run_output()
    assert "User requested FSD" in upsmon_log(sandbox), upsmon_log(sandbox)
    status = json.loads(sandbox.cli("status", "--json", check=True).stdout)
    assert status["thresholds"]["my-ups"] == {
        "low_battery_percent": 30,
        "low_runtime_seconds": None,
        "on_battery_max_seconds": 10,
        "text": "shuts down at 30 % / after 10 s on battery",
    }
