"""The uevent parser, the wake-up timer and the early settle: pure, time passed in."""

from __future__ import annotations

import pytest

from reconcile import logfmt
from reconcile.decide import forced, wake
from reconcile.decide.settle import Settle
from reconcile.model import UsbDevice
from reconcile.observe import uevents
from reconcile.wakeups import Wakeups

D1 = (UsbDevice("1-1", "051d", "0002", 1, 2),)
D2 = (UsbDevice("1-1", "051d", "0002", 1, 3),)

ADD = (
    b"add@/devices/pci0000:00/usb1/1-1\0ACTION=add\0DEVPATH=/devices/pci0000:00/usb1/1-1\0"
    b"SUBSYSTEM=usb\0DEVTYPE=usb_device\0SEQNUM=7\0"
)


def test_a_kernel_message_is_parsed() -> None:
    assert uevents.parse(ADD) == uevents.Uevent("add", "/devices/pci0000:00/usb1/1-1", "usb", "usb_device")


@pytest.mark.parametrize(
    "message",
    [
        b"libudev\0\xfe\xed\xca\xfe" + b"\0" * 32,  # udev's own format (group 2), not the kernel's
        b"add /devices/x\0SUBSYSTEM=usb\0",  # no '@'
        b"@/devices/x\0",  # no action
        b"add@devices/x\0",  # a relative path
        b"add@/devices/x\0ACTION=remove\0SUBSYSTEM=usb\0",  # the header and the fields disagree
        b"",
    ],
)
def test_what_is_not_a_kernel_uevent_is_refused(message: bytes) -> None:
    assert uevents.parse(message) is None


def test_a_nudge_runs_a_pass_now_but_not_sooner_than_the_gap() -> None:
    assert wake.nudge_delay(12.0, None) == 0.0  # no pass yet
    assert wake.nudge_delay(12.0, 10.0) == 0.0
    assert wake.nudge_delay(10.01, 10.0) == pytest.approx(wake.MIN_GAP - 0.01)  # a burst: one pass reads it all


def test_a_pass_asks_for_the_passes_its_deadlines_need() -> None:
    assert wake.one_shots(10.0, None, None) == {wake.SETTLE: None, wake.FSD_CLEAR: None}
    assert wake.one_shots(10.0, 11.5, 310.0) == {wake.SETTLE: 1.5, wake.FSD_CLEAR: 300.0}
    assert wake.one_shots(10.0, 9.0, 10.0) == {wake.SETTLE: 0.0, wake.FSD_CLEAR: 0.0}  # due: at once


def test_the_periodic_jobs_are_the_pass_and_with_simulate_its_clock() -> None:
    assert wake.jobs(4.0, False) == (wake.Job(wake.PASS, 4.0),)
    assert wake.jobs(2.0, True) == (wake.Job(wake.PASS, 2.0), wake.Job(wake.SIMULATE, wake.SIMULATE_STEP))


def test_a_clock_set_is_a_jump_and_a_drift_is_not() -> None:
    assert wake.clock_jump(100.0, 100.5) == 0.0
    assert wake.clock_jump(100.0, -3500.0) == -3600.0  # NTP, or DST, set it back an hour
    assert wake.clock_jump(100.0, 86500.0) == 86400.0


def test_fsd_may_be_called_off_once_on_line_for_clear_after() -> None:
    assert forced.clear_at(None, 300.0) is None and forced.clear_at(50.0, None) is None
    assert forced.clear_at(50.0, 300.0) == 350.0


def test_the_interval_depends_on_whether_uevents_are_heard() -> None:
    assert wake.interval(True, 2.0, 4.0) == 4.0 and wake.interval(False, 2.0, 4.0) == 2.0
    assert wake.too_slow(5.0, 5) and not wake.too_slow(4.0, 5)


def test_a_clean_plug_settles_once_read_the_same_twice_settle_min_apart() -> None:
    s = Settle().observe((), 0.0, 2.0, settle_min=0.5)
    s = s.observe(D1, 10.0, 2.0, settle_min=0.5)  # the uevent's scan
    assert s.settled == () and s.deadline(2.0, 0.5) == 10.5
    assert s.observe(D1, 10.3, 2.0, settle_min=0.5).settled == ()  # too soon
    s = s.observe(D1, 10.5, 2.0, settle_min=0.5)
    assert s.settled == D1 and s.changed == 10.5


def test_the_early_settle_keeps_one_change_per_settle_window() -> None:
    s = Settle().observe((), 0.0, 2.0, settle_min=0.5).observe(D1, 10.0, 2.0, settle_min=0.5)
    s = s.observe(D1, 10.5, 2.0, settle_min=0.5)
    assert s.settled == D1
    # unplugged at once: read the same twice, but the last change is 0.6 s old
    s = s.observe((), 10.6, 2.0, settle_min=0.5).observe((), 11.2, 2.0, settle_min=0.5)
    assert s.settled == D1 and s.deadline(2.0, 0.5) == 12.5
    s = s.observe((), 12.5, 2.0, settle_min=0.5)
    assert s.settled == () and s.changed == 12.5


def test_descriptors_that_change_between_reads_start_the_wait_again() -> None:
    s = Settle().observe((), 0.0, 2.0, settle_min=0.5).observe(D1, 10.0, 2.0, settle_min=0.5)
    s = s.observe(D2, 10.5, 2.0, settle_min=0.5)  # re-enumerated: not the same twice
    assert s.settled == () and s.seen == 10.5 and s.deadline(2.0, 0.5) == 11.0


def test_without_settle_min_only_the_settle_time_counts() -> None:
    s = Settle().observe((), 0.0, 2.0).observe(D1, 10.0, 2.0).observe(D1, 11.0, 2.0)
    assert s.settled == () and s.deadline(2.0) == 12.0


def test_where_the_socket_cannot_be_opened_the_agent_polls_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(subsystem: str, buffer: int | None = None) -> uevents.Listener:
        raise PermissionError(1, "Operation not permitted")

    logfmt.setup(False, None)
    monkeypatch.setattr(uevents.Listener, "open", staticmethod(refuse))
    w = Wakeups.open(True, "usb")
    try:
        assert not w.listening
        assert not w.wait(0).nudge  # nothing to hear: only the timeout wakes it
    finally:
        w.close()
    w = Wakeups.open(False, "usb")
    w.close()
    out = capsys.readouterr().out
    assert "event=uevents.off" in out and "PermissionError" in out and "mode=polling" in out
    assert "UEVENTS=0" in out
