"""Which processes are ours, and which UPSes stay held: pure decisions, no I/O."""

from __future__ import annotations

import pytest

from reconcile.decide.loaded import of_files, of_section, section_blocks
from reconcile.decide.ownership import sort_out
from reconcile.decide.power import Seen, changes, held, remember
from reconcile.model import FileState, Owned, ProcFact, ProcId, Served, Ups, UsbDevice

HZ = 100
UPS_CONF = "[my-ups]\n  driver = dummy-ups\n  port = a.dev\n"


def files(mtime: float = 50.0) -> dict[str, FileState]:
    return {"ups.conf": FileState("ups.conf", UPS_CONF, True, True, mtime)}


def fact(
    key: str, program: str, pid: int, start: int, marked: bool | None = False, source: str = "pidfile"
) -> ProcFact:
    return ProcFact(key, program, ProcId(pid, start), source, marked)


def test_a_recorded_process_is_ours_with_what_it_loaded() -> None:
    ledger = {"upsd": Owned("upsd", 10, 500, (("ups.conf", "d1"),))}
    owned = sort_out([fact("upsd", "upsd", 10, 500)], ledger, files(), 0.0, HZ)
    assert owned.upsd is not None and owned.upsd.loaded == (("ups.conf", "d1"),)
    assert owned.strangers == () and owned.ledger == ledger


def test_a_reused_pid_is_a_stranger_and_never_ours() -> None:
    # Same PID and name as recorded, but a later start time: another process.
    ledger = {"upsd": Owned("upsd", 10, 500)}
    owned = sort_out([fact("upsd", "upsd", 10, 900)], ledger, files(), 0.0, HZ)
    assert owned.upsd is None
    assert [(s.program, s.pid) for s in owned.strangers] == [("upsd", 10)]
    assert owned.ledger == {}  # the dead record is dropped


def test_a_process_started_after_the_recorded_intent_is_ours() -> None:
    # Killed between starting the driver and recording its PID: the intent says so.
    ledger = {"driver:my-ups": Owned("dummy-ups", None, 700, (("section", "d2"),))}
    owned = sort_out([fact("driver:my-ups", "dummy-ups", 33, 701)], ledger, files(), 0.0, HZ)
    assert owned.drivers["my-ups"].proc == ProcId(33, 701)
    assert owned.ledger["driver:my-ups"] == Owned("dummy-ups", 33, 701, (("section", "d2"),))
    before = sort_out([fact("driver:my-ups", "dummy-ups", 33, 650)], ledger, files(), 0.0, HZ)
    assert before.drivers == {} and len(before.strangers) == 1


def test_an_unrecorded_process_started_for_our_dirs_is_adopted_with_what_it_can_have_loaded() -> None:
    boot = 1000.0  # booted at wall time 1000; the driver started 10 s later (tick 1000 at 100 Hz)
    old = sort_out([fact("driver:my-ups", "dummy-ups", 40, 1000, marked=True)], {}, files(mtime=1005.0), boot, HZ)
    assert old.adopted == ("driver:my-ups",)
    assert old.drivers["my-ups"].loaded == of_section(section_blocks(UPS_CONF)["my-ups"])
    # ups.conf written after the process started: it cannot have loaded it.
    newer = sort_out([fact("driver:my-ups", "dummy-ups", 40, 1000, marked=True)], {}, files(mtime=1011.0), boot, HZ)
    assert newer.drivers["my-ups"].loaded == ()
    # Environment unreadable or someone else's: a stranger.
    for marked in (None, False):
        other = sort_out([fact("upsd", "upsd", 41, 1000, marked=marked)], {}, files(), boot, HZ)
        assert other.upsd is None and other.strangers[0].pid == 41


def test_two_processes_for_one_key_the_recorded_one_wins() -> None:
    ledger = {"upsmon": Owned("upsmon", 50, 5)}
    facts = [
        fact("upsmon", "upsmon", 60, 9, source="/run/nut/upsmon.pid"),
        fact("upsmon", "upsmon", 50, 5, source="record"),
    ]
    owned = sort_out(facts, ledger, files(), 0.0, HZ)
    assert owned.upsmon is not None and owned.upsmon.proc.pid == 50
    assert [(s.pid, s.source) for s in owned.strangers] == [(60, "/run/nut/upsmon.pid")]


def test_adopted_upsd_knows_only_the_files_older_than_itself() -> None:
    fs = {
        "ups.conf": FileState("ups.conf", "a", True, True, 10.0),
        "upsd.conf": FileState("upsd.conf", "b", True, True, 30.0),
        "upsd.users": FileState("upsd.users", "c", True, True, 10.0),
    }
    owned = sort_out([fact("upsd", "upsd", 7, 2000, marked=True)], {}, fs, 0.0, HZ)  # started at 20 s
    assert owned.upsd is not None
    assert owned.upsd.loaded == of_files({"ups.conf": "a", "upsd.users": "c"}, ("ups.conf", "upsd.users"))


# --- power ---------------------------------------------------------------------------

DEV = UsbDevice("1-1", "051d", "0002", 1, 2, "S1")
UPS = Ups(DEV, "usbhid-ups", "udev-rules", True)
MON, MON2, UPSD = ProcId(11, 1), ProcId(12, 2), ProcId(10, 1)


def seen(status: str = "OB DISCHRG", upsmon: ProcId | None = MON) -> Seen:
    return Seen("my-ups", UPS.key, DEV, False, status, upsmon, UPSD)


def test_on_battery_is_remembered_and_on_line_forgotten() -> None:
    names = {UPS.key: "my-ups"}
    ob = remember({}, {UPS.key: UPS}, names, {"my-ups": Served("ok", "OB DISCHRG")}, MON, UPSD, {})
    assert ob == {"my-ups": seen()}
    assert changes({}, ob) == [("my-ups", "on battery (OB DISCHRG)")]
    # upsd cannot tell now (stale): what was known is kept
    assert remember(ob, {UPS.key: UPS}, names, {"my-ups": Served("DATA-STALE", None)}, MON, UPSD, {}) == ob
    assert remember(ob, {UPS.key: UPS}, names, {"my-ups": Served("ok", "OL CHRG")}, MON, UPSD, {}) == {}


def test_a_ups_gone_on_battery_is_held_while_the_upsmon_that_saw_it_runs() -> None:
    memory = {"my-ups": seen()}
    assert held(memory, set(), MON, UPSD) == memory
    assert held(memory, {UPS.key}, MON, UPSD) == {}  # back on the bus: served as usual
    assert held(memory, set(), MON2, UPSD) == {}  # a new upsmon never heard it: NUT assumes OL
    assert held(memory, set(), None, UPSD) == {}
    assert held({"my-ups": seen("OL")}, set(), MON2, UPSD) == {}


def test_fsd_holds_while_the_upsd_that_has_the_flag_runs() -> None:
    memory = {"my-ups": seen("FSD OB LB", upsmon=None)}
    assert held(memory, set(), MON2, UPSD) == memory
    assert held(memory, set(), MON2, ProcId(99, 9)) == {}


def test_only_on_battery_or_fsd_is_remembered_and_held_not_low_battery_on_line() -> None:
    """OL LB is a UPS charging after an outage: upsmon's DEADTIME rule needs OB, so a hold
    would only keep `health` unhealthy until upsmon restarted."""
    names = {UPS.key: "my-ups"}
    assert remember({}, {UPS.key: UPS}, names, {"my-ups": Served("ok", "OL LB CHRG")}, MON, UPSD, {}) == {}
    assert remember({}, {UPS.key: UPS}, names, {"my-ups": Served("ok", "FSD OL")}, MON, UPSD, {}) == {
        "my-ups": seen("FSD OL")
    }
    # An older version recorded LB as on battery: such a record holds nothing.
    assert held({"my-ups": seen("OL LB")}, set(), MON, UPSD) == {}


def test_a_ups_that_does_not_power_this_host_is_never_held() -> None:
    from reconcile.model import DeviceRule

    rule = DeviceRule(index=0, vendorid="051d", powers_host=False)
    other = Ups(DEV, "usbhid-ups", "rule", True, rule=rule)
    names = {other.key: "my-ups"}
    assert remember({}, {other.key: other}, names, {"my-ups": Served("ok", "OB DISCHRG")}, MON, UPSD, {}) == {}


def test_a_confirmed_process_is_answered_from_its_pidfd_until_it_exits() -> None:
    import subprocess
    import sys

    from reconcile.observe import processes

    alive = processes.Pidfds()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        name = processes.stat(child.pid)
        assert name is not None
        first = alive.proc_id(child.pid, name[0])
        assert first is not None and first == processes.proc_id(child.pid, name[0])
        alive.refresh()
        assert alive.proc_id(child.pid, name[0]) == first  # still there: from the pidfd
        assert alive.proc_id(child.pid, "upsd") is None  # asked as another program: /proc says no
        child.kill()
        child.wait(10)
        alive.refresh()  # exited: the pidfd turned readable, so /proc is read again
        assert alive.proc_id(child.pid, name[0]) is None
    finally:
        child.kill()
        child.wait(10)
        alive.close()


def test_how_a_held_process_was_started_is_read_once_until_it_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stranger at a PID file (a host's own upsmon at NUT's fixed /run/nut/upsmon.pid)
    has its environment read once, not at every pass; a new process at its PID is read anew."""
    import os
    import subprocess
    import sys

    from reconcile.observe import processes

    reads: list[int] = []
    real = processes.started_for

    def counting(pid: int, marker: dict[str, str], binary: str | None = None) -> bool | None:
        reads.append(pid)
        return real(pid, marker, binary)

    monkeypatch.setattr(processes, "started_for", counting)
    marker = {"NUT_STATEPATH": "/nowhere-of-ours"}
    alive = processes.Pidfds()
    env = {**os.environ, "NUT_STATEPATH": "/elsewhere"}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        name = processes.stat(child.pid)
        assert name is not None
        proc = alive.proc_id(child.pid, name[0])
        assert proc is not None
        for _ in range(3):
            alive.refresh()
            assert alive.started_for(proc, marker) is False  # not started for our directories
        assert reads == [child.pid]  # read once while held
        assert alive.started_for(proc, {"NUT_STATEPATH": "/elsewhere"}) is True  # another marker: read
        assert len(reads) == 2
        child.kill()
        child.wait(10)
        alive.refresh()  # exited: forgotten, so a later process at this PID is read again
        assert alive.started_for(proc, marker) is False
        assert len(reads) == 3
    finally:
        child.kill()
        child.wait(10)
        alive.close()
