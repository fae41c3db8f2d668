"""Start, stop and reload NUT's daemons and drivers. Every call has a timeout.

Drivers and upsd run as NUT's own daemons with their PID files in the state dir, so
a one-shot `apply` and the long-running `run` see and control the same processes.
upsmon runs in the foreground (-F) with privilege separation off (-p), detached in
its own session, and the agent keeps its PID: Debian's upsmon writes its PID file to
a compiled-in path that NUT_ALTPIDPATH does not move.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from reconcile import logfmt
from reconcile.observe.processes import alive, running_pid
from reconcile.settings import Settings
from reconcile.waiting import await_true, await_value

STOP_TIMEOUT = 4.0
START_CONFIRM = 5.0

# upsmon children launched by this process; polled so none is left a zombie.
_children: dict[int, subprocess.Popen[bytes]] = {}
_PR_SET_CHILD_SUBREAPER = 36
_reaper = {"on": False}


def become_subreaper() -> bool:
    """Make daemons we start (they fork and leave their parent) our children again.

    Why: as PID 1 in a container we get them anyway; anywhere else they would go to
    the system's init, and their exits would pile up as zombies nobody reaps.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        ok = bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        ok = False
    _reaper["on"] = ok or os.getpid() == 1
    return ok


class DaemonError(RuntimeError):
    pass


def _run(settings: Settings, argv: list[str]) -> str:
    logfmt.debug("exec", argv=" ".join(argv))
    try:
        result = subprocess.run(
            argv,
            env=settings.nut_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=settings.command_timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DaemonError(f"{argv[0]} timed out after {settings.command_timeout:g}s") from None
    except OSError as exc:
        raise DaemonError(f"{argv[0]}: {exc.strerror}") from None
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        last = output.splitlines()[-1] if output else "no output"
        raise DaemonError(f"{os.path.basename(argv[0])} exited {result.returncode}: {last}")
    logfmt.debug("exec.done", argv=argv[0], output=output[-500:])
    return output


def _need(path: str | None, program: str) -> str:
    if path is None:
        raise DaemonError(f"{program} not found (install NUT, or set NUT_{program.upper().replace('-', '_')})")
    return path


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def terminate(pid: int, program: str, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, await the exit, SIGKILL if it does not come."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    reap()
    if not await_true(lambda: _gone(pid, program), timeout):
        logfmt.warning("process.kill", pid=pid, program=program, why=f"no exit {timeout:g}s after SIGTERM")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        await_true(lambda: _gone(pid, program), 1.0)


def _gone(pid: int, program: str) -> bool:
    reap()
    return not alive(pid, program)


def reap() -> None:
    """Collect exited children: our upsmon, and (as PID 1 in a container) daemons
    reparented to us. Called only between steps, never while a subprocess.run is
    waiting, so it cannot steal that child's exit status."""
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]
    if _reaper["on"] or os.getpid() == 1:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return


# --- drivers -------------------------------------------------------------------


def driver_pidfile(settings: Settings, driver: str, ups: str) -> Path:
    return settings.statepath / f"{driver}-{ups}.pid"


def start_driver(settings: Settings, ups: str, driver: str) -> int:
    pidfile = driver_pidfile(settings, driver, ups)
    if pidfile.exists() and running_pid(pidfile, driver) is None:
        # A stale PID file makes the new driver wait 5 s to "terminate the other one".
        _remove(pidfile)
    _run(settings, [_need(settings.binaries.upsdrvctl, "upsdrvctl"), "-u", settings.run_user, "start", ups])
    pid = await_value(lambda: running_pid(pidfile, driver), START_CONFIRM)
    if pid is None:
        raise DaemonError(f"driver {driver} for {ups} did not stay up")
    return pid


def signal_stop(pid: int) -> None:
    """Ask a driver to exit without waiting: a driver takes up to its poll interval
    (~2 s) to go, and nothing but a new driver for the same UPS needs to wait for it."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def stop_driver(settings: Settings, ups: str, driver: str, pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """Stop and await the exit (after signal_stop, or on its own)."""
    terminate(pid, driver, timeout)
    # Drivers killed hard leave their PID file and socket behind.
    _remove(driver_pidfile(settings, driver, ups))
    _remove(settings.statepath / f"{driver}-{ups}")


# --- upsd -----------------------------------------------------------------------


def start_upsd(settings: Settings) -> int:
    pidfile = settings.statepath / "upsd.pid"
    if pidfile.exists() and running_pid(pidfile, "upsd") is None:
        _remove(pidfile)
    _run(settings, [_need(settings.binaries.upsd, "upsd"), "-u", settings.run_user])
    pid = await_value(lambda: running_pid(pidfile, "upsd"), START_CONFIRM)
    if pid is None:
        raise DaemonError("upsd did not stay up")
    return pid


def reload_upsd(settings: Settings, pid: int) -> None:
    _run(settings, [_need(settings.binaries.upsd, "upsd"), "-c", "reload", "-P", str(pid)])


def stop_upsd(settings: Settings, pid: int, timeout: float = STOP_TIMEOUT) -> None:
    terminate(pid, "upsd", timeout)
    _remove(settings.statepath / "upsd.pid")


# --- upsmon ---------------------------------------------------------------------


def upsmon_pidfile(settings: Settings) -> Path:
    return settings.agent_dir / "upsmon.pid"


# Where upsmon itself writes its PID file: NUT's compiled-in PIDPATH (/run/nut for
# Debian, the state dir for our source build).
_UPSMON_OWN_PIDFILES = ("/run/nut/upsmon.pid", "/var/run/nut/upsmon.pid")


def _clear_stale_upsmon_pidfiles(settings: Settings) -> None:
    """upsmon refuses to start while its PID file names any live process. After a
    container restart that PID often belongs to something else (even our upsd).
    A live upsmon that is not ours (a host's own NUT) is reported, not killed."""
    for path in sorted({Path(p) for p in _UPSMON_OWN_PIDFILES} | {settings.statepath / "upsmon.pid"}):
        if not path.exists():
            continue
        other = running_pid(path, "upsmon")
        if other is None:
            logfmt.debug("upsmon.stale-pidfile", path=path)
            _remove(path)
        else:
            raise DaemonError(
                f"another upsmon (pid {other}, {path}) is running and NUT allows one per PID file: "
                "stop it, or set [upsmon] enabled = false"
            )


def start_upsmon(settings: Settings) -> int:
    binary = _need(settings.binaries.upsmon, "upsmon")
    _clear_stale_upsmon_pidfiles(settings)
    settings.agent_dir.mkdir(parents=True, exist_ok=True)
    log = open(settings.agent_dir / "upsmon.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        child = subprocess.Popen(
            [binary, "-p", "-F"],
            env=settings.nut_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # survives a one-shot `apply`; no terminal signals
        )
    except OSError as exc:
        raise DaemonError(f"upsmon: {exc.strerror}") from None
    finally:
        log.close()
    _children[child.pid] = child
    # If it dies (a bad config), the next observation sees no live PID and restarts it with backoff.
    upsmon_pidfile(settings).write_text(f"{child.pid}\n", encoding="ascii")
    return child.pid


def reload_upsmon(settings: Settings, pid: int) -> None:
    _run(settings, [_need(settings.binaries.upsmon, "upsmon"), "-c", "reload", "-P", str(pid)])


def stop_upsmon(settings: Settings, pid: int, timeout: float = STOP_TIMEOUT) -> None:
    terminate(pid, "upsmon", timeout)
    _remove(upsmon_pidfile(settings))
