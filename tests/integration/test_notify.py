"""Notifications (NOTIFY_URLS) of `nut-reconcile run` against real NUT (dummy-ups, upsd,
upsmon), sent by Apprise to a webhook receiver on loopback (`json://`)."""

from __future__ import annotations

import http.server
import json
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from testbed import await_true
from testbed.nut import Sandbox, free_port, nut_processes

pytestmark = pytest.mark.nut

AWAIT = 60.0  # a ceiling for correctness (upsmon's POLLFREQ and FINALDELAY), not a speed target
TOKEN = "tok3n-never-logged"


class Receiver:
    """A webhook on loopback: keeps every JSON body Apprise's json:// posts. With `hang`
    set, it takes each request and does not answer until `release` is set."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.in_flight = 0
        self.lock = threading.Lock()
        self.hang = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.messages.append(body)
                    receiver.in_flight += 1
                if receiver.hang.is_set():
                    receiver.release.wait(120)  # the server's own thread: a receiver that hangs
                with receiver.lock:
                    receiver.in_flight -= 1
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up (killed) while we hung

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def titles(self) -> list[str]:
        with self.lock:
            return [str(m.get("title")) for m in self.messages]

    def find(self, fragment: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if fragment in str(m.get("title"))]

    def has(self, fragment: str) -> bool:
        return bool(self.find(fragment))

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


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


def test_a_real_low_battery_shutdown_sends_upsmons_notices_with_charge_runtime_and_what_next(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    record = sandbox.root / "shutdowns"
    sandbox.dummy_rule(sandbox.data_file(**{"battery.runtime": "1500"}))
    sandbox.write_config(
        f"\n[upsmon]\npollfreq = 1\ndeadtime = 3\nshutdown_cmd = \"/bin/sh -c 'echo ran >> {record}'\"\n"
    )
    sandbox.start_run(env=notify_env(receiver))
    assert sandbox.await_log("event=notify.ready", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log("event=start.upsmon", timeout=AWAIT), sandbox.run_output()
    upsmon_conf = (sandbox.conf / "upsmon.conf").read_text()
    assert "NOTIFYCMD" in upsmon_conf and "NOTIFYFLAG ONBATT SYSLOG+EXEC" in upsmon_conf
    # NUT 2.8.6 runs NOTIFYCMD's program by its full path: the first word is one.
    program = upsmon_conf.split("NOTIFYCMD ", 1)[1].strip('"').split()[0]
    assert os.path.isabs(program) and os.access(program, os.X_OK), program
    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log("event=ups.no_power_cycle", timeout=AWAIT), sandbox.run_output()

    sandbox.data_file(**{"ups.status": "OB DISCHRG", "battery.charge": "60", "battery.runtime": "1500"})
    assert await_true(lambda: receiver.has("my-ups: on battery"), AWAIT), receiver.titles()
    onbatt = receiver.find("my-ups: on battery")[0]
    assert onbatt["title"] == "[pi-test] my-ups: on battery" and onbatt["type"] == "warning"
    body = onbatt["message"]
    assert "UPS my-ups" in body and "pi-test" in body
    assert "charge 60 %" in body and "runtime 25 min" in body
    assert "Next: This host shuts down when the battery runs low (LB)" in body

    sandbox.data_file(**{"ups.status": "OB LB", "battery.charge": "4", "battery.runtime": "60"})
    assert await_true(record.exists, AWAIT), (sandbox.agent / "upsmon.log").read_text()
    assert await_true(lambda: receiver.has("my-ups: battery low"), AWAIT), receiver.titles()
    assert await_true(lambda: receiver.has("[pi-test] shutting down"), AWAIT), receiver.titles()
    lowbatt = receiver.find("my-ups: battery low")[0]
    assert lowbatt["type"] == "failure" and "charge 4 %" in lowbatt["message"]
    # dummy-ups offers no shutdown.return: the message says the UPS is not power-cycled.
    assert "not power-cycled" in lowbatt["message"], lowbatt["message"]
    assert "event=upsmon.notice type=SHUTDOWN" in sandbox.run_output()
    status = json.loads(sandbox.cli("status", "--json", check=True).stdout)
    # The chain's last events: upsmon's SHUTDOWN, then the agent's power cycle (refused here).
    assert status["recent"]["last_event"]["kind"] in ("upsmon.SHUTDOWN", "ups.power_cycle"), receiver.titles()


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


def test_a_url_apprise_refuses_stops_the_start_naming_it_by_index_not_by_its_token(sandbox: Sandbox) -> None:
    result = sandbox.cli("run", env={"NOTIFY_URLS": f"json://127.0.0.1:9/ok bogus://{TOKEN}@example"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "NOTIFY_URLS" in result.stderr and "URL 2" in result.stderr, result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert not (sandbox.conf / "upsd.conf").exists()  # nothing written before the check


def test_a_bad_notify_events_value_is_refused_naming_it(sandbox: Sandbox, receiver: Receiver) -> None:
    result = sandbox.cli("apply", env={"NOTIFY_URLS": receiver.url, "NOTIFY_EVENTS": "default,onfire"})
    assert result.returncode == 2 and "NOTIFY_EVENTS" in result.stderr and "onfire" in result.stderr
