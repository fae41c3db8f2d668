"""The agent wakes on the kernel's uevents (real ones, through a virtual device), and the
periodic pass still converges when an event is lost or the socket overflows."""

from __future__ import annotations

import os
import signal
import socket

import pytest
from gevent import socket as gsocket  # pyinfra's dependency, so always here

from reconcile.observe import uevents
from testbed import await_true
from testbed.nut import UEVENT_ENV, Sandbox, synthetic_uevent

pytestmark = pytest.mark.nut

NOT_CONNECTED = "Error: Driver not connected"
AWAIT = 20.0  # a ceiling for correctness, not a speed target (see benchmarks/hotplug.py)
# Why an hour: within a test, only a uevent can make the agent look at the bus again.
NO_RESCAN = {**UEVENT_ENV, "RESCAN_INTERVAL": "3600"}


def test_a_real_uevent_reaches_the_listener_and_an_overflow_is_reported() -> None:
    listener = uevents.Listener.open("mem")
    small = uevents.Listener.open("mem", buffer=1)  # the kernel's minimum: a burst overflows it
    try:
        synthetic_uevent()
        assert await_true(lambda: bool(listener.drain().events), 5)
        for _ in range(200):
            synthetic_uevent()
        drained = small.drain()
        assert drained.overflowed and 0 < len(drained.events) < 200
        assert all(e.subsystem == "mem" and e.devpath == "/devices/virtual/mem/null" for e in drained.events)
        assert not small.drain().overflowed  # the socket goes on after ENOBUFS
    finally:
        listener.close()
        small.close()


def test_drain_never_blocks_under_a_green_thread_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyinfra patches gevent's socket in wherever it is imported (tests run both in one
    process): drain() must still return when nothing more is queued, not wait for data."""
    monkeypatch.setattr(socket, "socket", gsocket.socket)
    listener = uevents.Listener.open("mem")
    try:
        assert isinstance(listener.sock, gsocket.socket)
        assert listener.drain().events == ()  # nothing sent: returns at once (a wait would hit pytest's timeout)
        synthetic_uevent()
        assert await_true(lambda: bool(listener.drain().events), 5)
    finally:
        listener.close()


def test_a_uevent_wakes_the_agent_for_a_plug_and_an_unplug(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.start_run(env=NO_RESCAN)
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log("event=uevents.on subsystem=mem"), sandbox.run_output()

    sandbox.bus.plug("1-1")
    synthetic_uevent()
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    sandbox.bus.unplug("1-1")
    synthetic_uevent()
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()
    assert "event=uevent action=change devpath=/devices/virtual/mem/null" in sandbox.run_output()


def test_a_lost_uevent_is_made_up_for_by_the_periodic_pass(sandbox: Sandbox) -> None:
    # Subsystem usb: this machine has no USB, so no uevent ever announces the plug.
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.start_run(env={**UEVENT_ENV, "UEVENT_SUBSYSTEM": "usb", "RESCAN_INTERVAL": "2"})
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log("event=uevents.on subsystem=usb"), sandbox.run_output()
    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    assert "event=uevent " not in sandbox.run_output()


def test_an_overflowed_socket_is_answered_with_a_full_pass(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    agent = sandbox.start_run(env=NO_RESCAN, module="testbed.small_uevent_buffer")
    assert sandbox.await_upsc(NOT_CONNECTED, timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_log("event=uevents.on"), sandbox.run_output()
    # Stopped, the agent reads nothing: the burst overflows its socket, and the one uevent
    # that told of the plug is among the dropped or the kept, no one knows which.
    os.kill(agent.pid, signal.SIGSTOP)
    try:
        sandbox.bus.plug("1-1")
        for _ in range(300):
            synthetic_uevent()
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    assert sandbox.await_log("event=uevents.overflow"), sandbox.run_output()
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
