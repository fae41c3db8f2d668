"""The agent's state files are input: a corrupt or hostile one is set aside and the agent
keeps serving; a process that only looks like ours is never signalled."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from testbed.nut import Sandbox

pytestmark = pytest.mark.nut

AWAIT = 30.0
SERVING = {"my-ups": "OL"}


def serving(box: Sandbox) -> None:
    box.dummy_rule(box.data_file())
    box.bus.plug("1-1", serial="A1")
    box.cli("apply", check=True)
    assert box.await_converged(SERVING) is None


def aside(box: Sandbox, name: str) -> list[str]:
    return sorted(p.name for p in box.agent.glob(f"{name}.corrupt-*"))


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe garbage",
        json.dumps({"primary": None, "names": {"051d:0002:serial=A1": "x\nSHUTDOWNCMD /bin/sh -c evil"}}).encode(),
        json.dumps({"primary": None, "names": {"051d:0002:serial=A1": "ok", "other": "ok"}}).encode(),
        json.dumps({"primary": None, "names": {"k": "x]\n[evil]\n  driver = evil\n  port = /etc/shadow"}}).encode(),
    ],
    ids=["not-json", "not-utf8", "shutdowncmd-injection", "one-name-twice", "section-injection"],
)
def test_a_corrupt_or_hostile_names_file_is_set_aside_and_service_goes_on(sandbox: Sandbox, content: bytes) -> None:
    serving(sandbox)
    (sandbox.agent / "names.json").write_bytes(content)
    result = sandbox.cli("apply")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "event=state.corrupt" in result.stdout and "names.json" in result.stdout
    assert len(aside(sandbox, "names.json")) == 1
    assert sandbox.await_converged(SERVING) is None
    for name in ("ups.conf", "upsmon.conf"):
        text = (sandbox.conf / name).read_text()
        assert "evil" not in text and "SHUTDOWNCMD /bin/sh" not in text
    # fresh names were written, valid
    assert json.loads((sandbox.agent / "names.json").read_text())["primary"] == "051d:0002:serial=A1"


def test_the_run_loop_keeps_serving_through_a_corrupt_names_file(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.start_run()
    assert sandbox.await_upsc("Error: Driver not connected", timeout=AWAIT), sandbox.run_output()
    (sandbox.agent / "names.json").write_text("{not json")
    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    assert "event=state.corrupt" in sandbox.run_output() and "event=tick.failed" not in sandbox.run_output()


@pytest.mark.parametrize(
    "content",
    [
        b"[]",
        json.dumps({"monuser": "has-a\nnewline-1", "upsmon": "fine-password-1"}).encode(),
        json.dumps({"monuser": "equals=splits-it", "upsmon": "fine-password-1"}).encode(),
        json.dumps({"monuser": 12345678, "upsmon": "fine-password-1"}).encode(),
        json.dumps({"monuser": "fine-password-2", "upsmon": "fine-password-1", "root": "x"}).encode(),
    ],
    ids=["not-an-object", "newline", "equals", "number", "unknown-key"],
)
def test_a_corrupt_or_hostile_secrets_file_is_set_aside_never_echoed(sandbox: Sandbox, content: bytes) -> None:
    serving(sandbox)
    old = json.loads((sandbox.agent / "secrets.json").read_text())
    (sandbox.agent / "secrets.json").write_bytes(content)
    result = sandbox.cli("apply")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "event=state.corrupt" in result.stdout and len(aside(sandbox, "secrets.json")) == 1
    for secret in ("has-a", "newline-1", "equals=splits-it", "fine-password-1", "fine-password-2", "12345678"):
        assert secret not in result.stdout + result.stderr + sandbox.log.read_text()
    new = json.loads((sandbox.agent / "secrets.json").read_text())
    assert set(new) == {"monuser", "upsmon"} and new != old
    assert oct((sandbox.agent / "secrets.json").stat().st_mode & 0o777) == "0o600"
    users = (sandbox.conf / "upsd.users").read_text()
    assert new["monuser"] in users and "newline" not in users
    # upsd reloaded the new passwords and upsmon logs in with its own: still served
    assert sandbox.await_converged(SERVING) is None


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("procs.json", b'{"upsd": {"program": "rm -rf /", "pid": 1, "start": 0}}'),  # not a program name
        ("seen.json", b'{"ups": {"my-ups": {"key": "k", "device": "/etc/shadow"}}}'),  # not a device
        ("status.json", b'{"by": "run", "outcome": "ok", "state": {"devi'),  # cut short mid-write
    ],
    ids=["procs.json", "seen.json", "status.json"],
)
def test_other_corrupt_state_files_are_set_aside_and_never_stop_service(
    sandbox: Sandbox, name: str, content: bytes
) -> None:
    serving(sandbox)
    (sandbox.agent / name).write_bytes(content)
    status = sandbox.cli("status")
    assert status.returncode == 0  # read-only commands only warn, and move nothing
    assert "event=state.corrupt" in status.stderr and "read as empty" in status.stderr, status.stderr
    assert aside(sandbox, name) == []
    result = sandbox.cli("apply")
    assert result.returncode == 0, result.stdout + result.stderr
    corrupt = [line for line in result.stdout.splitlines() if "event=state.corrupt" in line]
    assert len(corrupt) == 1 and f"/{name} " in corrupt[0] and "moved_to=" in corrupt[0], result.stdout
    assert len(aside(sandbox, name)) == 1
    path = sandbox.agent / name
    assert not path.exists() or path.read_bytes() != content  # written afresh where there is something to keep
    assert sandbox.await_converged(SERVING) is None


def test_a_stranger_named_upsd_at_upsd_pid_is_reported_and_never_signalled(sandbox: Sandbox) -> None:
    # A process that only looks like upsd (a copy of sleep named upsd), in our PID file.
    fake = sandbox.root / "upsd"
    shutil.copy("/bin/sleep", fake)
    stranger = subprocess.Popen([str(fake), "300"])
    try:
        sandbox.state.mkdir(exist_ok=True)
        (sandbox.state / "upsd.pid").write_text(f"{stranger.pid}\n")
        result = sandbox.cli("apply")
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"event=process.stranger program=upsd pid={stranger.pid}" in result.stdout
        assert "never signalled" in result.stdout
        assert stranger.poll() is None  # alive: not a TERM, not a HUP
        assert (sandbox.state / "upsd.pid").read_text() == f"{stranger.pid}\n"  # its PID file untouched
        assert "upsd" not in sandbox.processes()
    finally:
        stranger.kill()
        stranger.wait(5)
    # Once it is gone, the same stale PID file is cleared and our upsd starts.
    result = sandbox.cli("apply")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sandbox.await_converged({"my-ups": "Driver not connected"}) is None


def test_a_recorded_pid_now_used_by_another_process_is_never_signalled(sandbox: Sandbox) -> None:
    # After a reboot or a container restart, the PID the agent recorded for its upsd may
    # belong to another process, even one with the same name.
    fake = sandbox.root / "upsd"
    shutil.copy("/bin/sleep", fake)
    other = subprocess.Popen([str(fake), "300"])
    try:
        start = int(Path(f"/proc/{other.pid}/stat").read_text().rpartition(")")[2].split()[19])
        sandbox.agent.mkdir(mode=0o700)
        record = {"upsd": {"program": "upsd", "pid": other.pid, "start": start - 100, "loaded": []}}
        (sandbox.agent / "procs.json").write_text(json.dumps(record))
        result = sandbox.cli("apply")
        assert result.returncode == 0, result.stdout + result.stderr
        assert other.poll() is None  # never signalled
        assert sandbox.await_converged({"my-ups": "Driver not connected"}) is None  # our own upsd serves
        assert json.loads((sandbox.agent / "procs.json").read_text())["upsd"]["pid"] != other.pid
    finally:
        other.kill()
        other.wait(5)


def test_a_name_not_seen_for_the_forget_time_is_freed_unless_a_rule_pins_the_unit(sandbox: Sandbox) -> None:
    """names.json never forgot a fingerprint: a UPS whose serial changes at each
    enumeration took a new name forever. Now one not seen for NAMES_FORGET_DAYS (30) is
    forgotten and its name freed; a unit a [[device]] rule names by serial is kept."""
    import time

    today = int(time.time() // 86400)
    sandbox.dummy_rule(sandbox.data_file("pinned.dev"), serial="PINNED")
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.agent.mkdir(mode=0o700)
    old, pinned, recent = "051d:0002:serial=OLD", "051d:0002:serial=PINNED", "051d:0002:serial=RECENT"
    book = {
        "primary": None,
        "names": {old: "my-ups-2", pinned: "my-ups-3", recent: "my-ups-4"},
        "seen": {old: today - 31, pinned: today - 400, recent: today - 29},
    }
    (sandbox.agent / "names.json").write_text(json.dumps(book))
    sandbox.bus.plug("1-1", serial="A")
    sandbox.bus.plug("1-2", serial="NEW")
    result = sandbox.cli("apply")
    assert result.returncode == 0, result.stdout + result.stderr
    # NEW takes the name OLD left, not my-ups-5
    assert sandbox.await_converged({"my-ups": "OL", "my-ups-2": "OL"}) is None
    kept = json.loads((sandbox.agent / "names.json").read_text())
    assert old not in kept["names"] and old not in kept["seen"]
    assert kept["names"][pinned] == "my-ups-3" and kept["names"][recent] == "my-ups-4"
    assert kept["names"]["051d:0002:serial=NEW"] == "my-ups-2"
    assert kept["seen"]["051d:0002:serial=NEW"] == today and kept["seen"][recent] == today - 29
