"""Notifications (NOTIFY_URLS) of `nut-reconcile run` against real NUT (dummy-ups, upsd,
upsmon), sent by Apprise to a webhook receiver on loopback (`json://`)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from testbed import await_true
from testbed.nut import Sandbox, nut_processes
from testbed.webhook import Receiver

pytestmark = pytest.mark.nut

AWAIT = 60.0  # a ceiling for correctness (upsmon's POLLFREQ and FINALDELAY), not a speed target
TOKEN = "tok3n-never-logged"  # in a URL: must never reach a log


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def one_driver(box: Sandbox) -> int | None:
    pids = [pid for pid, comm in nut_processes(box.conf) if comm == "dummy-ups"]
    return pids[0] if len(pids) == 1 else None


def notify_env(receiver: Receiver, **extra: str) -> dict[str, str]:
    return {"NOTIFY_URLS": receiver.url, "HOST_NAME": "pi-test", "SCAN_INTERVAL": "0.5", "SETTLE_TIME": "0.5", **extra}


def test_plug_unplug_and_a_stale_heal_are_sent_and_the_urls_never_logged(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    config = sandbox.root / "config.toml"
    config.write_text(config.read_text().replace("[upsd]\n", "[upsd]\nmaxage = 5\n"))
    urls = sandbox.root / "notify_urls"
    urls.write_text(f"{receiver.url}?token={TOKEN}\n")
    env = notify_env(receiver, NOTIFY_URLS="", NOTIFY_URLS_FILE=str(urls), NOTIFY_DEBOUNCE="0")
    env["STALE_RESTART_AFTER"] = "3"
    sandbox.start_run(env=env)
    assert sandbox.await_upsc("Error: Driver not connected", timeout=AWAIT), sandbox.run_output()
    sandbox.bus.plug("1-1")
    assert await_true(lambda: receiver.has("my-ups: plugged in"), AWAIT), receiver.titles()
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()

    # A frozen driver: stale data, the agent restarts it, and says how long it was stale.
    assert sandbox.await_log("event=start.driver ups=my-ups", timeout=AWAIT), sandbox.run_output()
    assert await_true(lambda: one_driver(sandbox) is not None, AWAIT)
    frozen = one_driver(sandbox)
    assert frozen is not None
    os.kill(frozen, signal.SIGSTOP)
    assert await_true(lambda: receiver.has("my-ups: data fresh again"), AWAIT), receiver.titles()
    healed = receiver.find("my-ups: data fresh again")[0]["message"]
    assert "It was stale for" in healed and "charge 91 %" in healed, healed
    assert healed.startswith("UPS my-ups (") and "on pi-test" in healed, healed  # its model, its host

    sandbox.bus.unplug("1-1")
    assert await_true(lambda: receiver.has("my-ups: unplugged"), AWAIT), receiver.titles()
    unplugged = receiver.find("my-ups: unplugged")[0]["message"]
    assert "It left port 1-1" in unplugged and "served again when it comes back" in unplugged
    assert TOKEN not in sandbox.run_output()
    assert "services=json" in sandbox.run_output()


def test_a_flapping_device_gives_one_message_then_one_summary_per_window(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    window = 8.0
    sandbox.start_run(env=notify_env(receiver, SETTLE_TIME="0", SCAN_INTERVAL="0.2", NOTIFY_DEBOUNCE=f"{window:g}"))
    assert sandbox.await_upsc("Error: Driver not connected", timeout=AWAIT), sandbox.run_output()
    sandbox.bus.plug("1-1")
    assert await_true(lambda: len(receiver.titles()) == 1, AWAIT), receiver.titles()
    for flap in range(1, 4):
        sandbox.bus.unplug("1-1")
        assert sandbox.await_log("event=ups.unplugged", count=flap, timeout=AWAIT), sandbox.run_output()
        sandbox.bus.plug("1-1")
        assert sandbox.await_log("event=ups.plugged", count=flap + 1, timeout=AWAIT), sandbox.run_output()
    # Six events within the window: one summary at its end, none before.
    assert await_true(lambda: len(receiver.titles()) == 2, AWAIT), receiver.titles()
    summary = receiver.messages[1]["message"]
    assert "unplugged x3" in summary and "plugged in x3" in summary, summary
    # The summary opened the next window, and nothing happened in it: no third message.
    assert not await_true(lambda: len(receiver.titles()) > 2, window + 2)


def test_a_receiver_that_hangs_never_slows_a_pass_and_its_sender_is_killed(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    receiver.hang.set()
    # rto: Apprise's own read timeout, longer than ours, so that our kill is what ends it.
    env = notify_env(receiver, NOTIFY_URLS=receiver.url + "?rto=90", NOTIFY_TIMEOUT="6", NOTIFY_DEBOUNCE="0")
    sandbox.start_run(env=env)
    assert sandbox.await_upsc("Error: Driver not connected", timeout=AWAIT), sandbox.run_output()
    sandbox.bus.plug("1-1")
    assert await_true(lambda: receiver.in_flight == 1, AWAIT), receiver.titles()
    # The pass goes on while the message hangs: the UPS is served, unplugged and served again.
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    sandbox.bus.unplug("1-1")
    assert sandbox.await_upsc("Error: Driver not connected", timeout=AWAIT), sandbox.run_output()
    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    assert receiver.titles() == ["[pi-test] my-ups: plugged in"]  # the first one still hangs
    # Our timeout kills the sender; the next messages go out once the receiver answers.
    assert sandbox.await_log('error="timed out after 6 s (killed)"', timeout=AWAIT), sandbox.run_output()
    receiver.hang.clear()
    receiver.release.set()
    assert await_true(lambda: len(receiver.find("my-ups: plugged in")) == 2, AWAIT), receiver.titles()
    assert receiver.find("my-ups: unplugged")


def test_urls_apprise_refuses_turn_notifications_off_logged_by_index_and_nut_is_served(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    # One Apprise takes, one whose scheme it does not know, one its Telegram service refuses
    # (no bot token): every one holds the token, which must never reach a log.
    urls = f"{receiver.url}?token={TOKEN} bogus://{TOKEN}@example tgram://{TOKEN}/"
    sandbox.start_run(env=notify_env(receiver, NOTIFY_URLS=urls, NOTIFY_DEBOUNCE="0"))
    assert sandbox.await_log("event=notify.off", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log("event=start.upsmon", timeout=AWAIT), sandbox.run_output()
    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()  # NUT is served all the same
    assert "my-ups" in sandbox.served()
    out = sandbox.run_output()
    off = next(line for line in out.splitlines() if "event=notify.off" in line)
    assert "level=error" in off and "notifications are off" in off, off
    assert "URL 2 of 3 (bogus://): a service Apprise " in off and "does not know" in off, off
    assert "URL 3 of 3 (tgram://): Apprise " in off and "refuses it" in off, off
    assert "URL 1" not in off, off  # the one Apprise takes is not named
    assert TOKEN not in out and TOKEN not in sandbox.log.read_text()
    # Off as a whole: no notifier, and upsmon hands no notice to a socket nobody opens.
    assert "event=notify.ready" not in out and "event=notify.sent" not in out, out
    assert "NOTIFYCMD" not in (sandbox.conf / "upsmon.conf").read_text()
    assert receiver.messages == []


def test_a_bad_notify_events_value_is_refused_naming_it(sandbox: Sandbox, receiver: Receiver) -> None:
    result = sandbox.cli("apply", env={"NOTIFY_URLS": receiver.url, "NOTIFY_EVENTS": "default,onfire"})
    assert result.returncode == 2 and "NOTIFY_EVENTS" in result.stderr and "onfire" in result.stderr
