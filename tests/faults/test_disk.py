"""A full disk (ENOSPC) and a read-only config dir, for real: the config dir is a small
tmpfs mounted for the test. A failed step stops the steps that need it; NUT keeps
serving what it served; the next pass with space converges."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.nut import Sandbox

pytestmark = pytest.mark.nut


def mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=10, check=False)
    if result.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"mount {' '.join(args)}: {result.stderr.strip()}")
        pytest.skip(f"cannot mount here: {result.stderr.strip()}")


@contextlib.contextmanager
def small_fs(path: Path) -> Iterator[None]:
    """`path` on its own 256 KiB tmpfs, its content carried over."""
    saved = {p.name: (p.read_bytes(), p.stat()) for p in path.iterdir()}
    mount("-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(path))
    try:
        for name, (data, st) in saved.items():
            (path / name).write_bytes(data)
            os.chmod(path / name, st.st_mode & 0o7777)
            os.chown(path / name, st.st_uid, st.st_gid)
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, timeout=10)


def fill(path: Path) -> Path:
    """Take every free block of the file system `path` is on."""
    ballast = path / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == 28, exc  # ENOSPC, nothing else
    finally:
        os.close(fd)
    return ballast


def test_enospc_on_upsmon_conf_during_an_unplug_skips_every_step_that_needs_it(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.bus.plug("1-1")
    sandbox.cli("apply", check=True)
    assert sandbox.await_converged({"my-ups": "OL"}) is None
    with small_fs(sandbox.conf):
        before = {p.name: p.read_text() for p in sandbox.conf.iterdir()}
        ballast = fill(sandbox.conf)
        sandbox.bus.unplug("1-1")
        result = sandbox.cli("apply")
        out = result.stdout
        assert result.returncode == 1, out + result.stderr
        assert 'event=step.failed step="write upsmon.conf (stop watching my-ups)"' in out
        assert "No space left on device" in out
        for skipped in ("reload upsmon", "stop driver my-ups (dummy-ups)", "write ups.conf (update)", "reload upsd"):
            assert f'event=step.skipped step="{skipped}' in out, skipped
        assert "event=stop.driver" not in out and "event=reload.upsd" not in out
        # Nothing half-written, no temp file left; NUT serves what it served.
        assert {p.name: p.read_text() for p in sandbox.conf.iterdir() if p != ballast} == before
        assert sandbox.processes() == {"upsd": 1, "upsmon": 1, "dummy-ups": 1}
        assert sandbox.upsc("my-ups", "ups.status") == (0, "OL")

        ballast.unlink()
        assert sandbox.cli("apply").returncode == 0
        assert sandbox.await_converged({"my-ups": "Driver not connected"}) is None
        assert "MONITOR" not in (sandbox.conf / "upsmon.conf").read_text()


def test_a_read_only_config_dir_is_reported_nut_keeps_serving_and_it_converges_once_writable(
    sandbox: Sandbox,
) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.cli("apply", check=True)
    with small_fs(sandbox.conf):
        mount("-o", "remount,ro", str(sandbox.conf))
        sandbox.bus.plug("1-1")
        result = sandbox.cli("apply")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "event=file.skip file=ups.conf" in result.stdout and "read-only" in result.stdout
        # What NUT had still runs: my-ups served, not connected (the new section could not be written)
        assert sandbox.await_converged({"my-ups": "Driver not connected"}) is None
        mount("-o", "remount,rw", str(sandbox.conf))
        assert sandbox.cli("apply").returncode == 0
        assert sandbox.await_converged({"my-ups": "OL"}) is None


UPSMON_FAST = "\n[upsmon]\npollfreq = 1\ndeadtime = 3\n"


def test_a_full_agent_volume_keeps_nothing_from_starting_and_an_unplug_on_battery_is_held(sandbox: Sandbox) -> None:
    """A container restarted on a full SD card: no state file can be written (the process
    ledger before each start, seen.json when the UPS goes on battery). Every daemon starts
    all the same, and what could not be written is kept in memory, so the unplug on
    battery is held as it would be with a disk."""
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.write_config(UPSMON_FAST)
    sandbox.bus.plug("1-1")
    first = sandbox.start_run()
    assert sandbox.await_converged({"my-ups": "OL"}) is None, sandbox.run_output()
    first.terminate()  # as `docker restart` does: it stops every daemon it started
    assert first.wait(timeout=15) == 0
    assert sandbox.processes() == {}
    with small_fs(sandbox.agent):
        fill(sandbox.agent)
        sandbox.start_run()
        assert sandbox.await_converged({"my-ups": "OL"}) is None, sandbox.run_output()
        assert sandbox.await_log("event=start.upsmon", count=2), sandbox.run_output()
        assert sandbox.processes() == {"upsd": 1, "upsmon": 1, "dummy-ups": 1}
        out = sandbox.run_output()
        assert "event=state.write file=procs.json" in out and "No space left on device" in out, out

        sandbox.data_file(**{"ups.status": "OB DISCHRG"})
        assert sandbox.await_log('event=ups.power ups=my-ups status="on battery'), sandbox.run_output()
        sandbox.bus.unplug("1-1")
        assert sandbox.await_log("event=ups.held ups=my-ups"), sandbox.run_output()
        assert "MONITOR my-ups@" in (sandbox.conf / "upsmon.conf").read_text()
        out = sandbox.run_output()
        assert not (sandbox.agent / "seen.json").exists()  # never written: held from memory
        # Logged once while it lasts, not at every tick.
        assert out.count("event=state.write file=seen.json") == 1, out
        assert out.count("event=state.write file=procs.json") == 1, out
