"""Start, stop and reload NUT's daemons and drivers. Every call has a timeout.

Drivers and upsd run as NUT's own daemons with their PID files in the state dir, so
a one-shot `apply` and the long-running `run` see and control the same processes.
upsmon runs in the foreground (-F) with privilege separation off (-p), detached in
its own session, and the agent keeps its PID: Debian's upsmon writes its PID file to
a compiled-in path that NUT_ALTPIDPATH does not move.

Every signal goes to a process named by (PID, start time), checked through a pidfd
right before it is sent: a PID that now belongs to another process is never signalled.
Reloads are NUT's own: SIGHUP, which is all `upsd -c reload` / `upsmon -c reload` send.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from reconcile import logfmt
from reconcile.model import ProcId
from reconcile.observe import processes
from reconcile.observe.running import UPSMON_OWN_PIDFILES
from reconcile.settings import Settings
from reconcile.waiting import await_true, await_value

STOP_TIMEOUT = 4.0
START_CONFIRM = 5.0

# upsmon children launched by this process; polled so none is left a zombie.
_children: dict[int, subprocess.Popen[bytes]] = {}
_PR_SET_CHILD_SUBREAPER = 36
_reaper = {"on": False}


class DaemonError(RuntimeError):
    pass


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


# --- signals, only ever to the process we mean --------------------------------------


def send(proc: ProcId, program: str, sig: signal.Signals) -> bool:
    """Signal exactly this process. False when it is gone (or its PID now names another
    process, which is then left alone)."""
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return False
    except OSError as exc:
        raise DaemonError(f"pidfd_open({proc.pid}): {exc.strerror}") from None
    try:
        # The pidfd pins the process: if it is still the one we mean now, the signal
        # can only reach it.
        if processes.proc_id(proc.pid, program) != proc:
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def _gone(proc: ProcId, program: str) -> bool:
    reap()
    return processes.proc_id(proc.pid, program) != proc


def terminate(proc: ProcId, program: str, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, await the exit, SIGKILL if it does not come."""
    if not send(proc, program, signal.SIGTERM):
        return
    reap()
    if not await_true(lambda: _gone(proc, program), timeout):
        logfmt.warning("process.kill", pid=proc.pid, program=program, why=f"no exit {timeout:g}s after SIGTERM")
        if send(proc, program, signal.SIGKILL):
            await_true(lambda: _gone(proc, program), 1.0)
    if not _gone(proc, program):
        raise DaemonError(f"{program} (pid {proc.pid}) did not exit")


def _confirm(pidfile: Path, program: str, not_before: int, what: str) -> ProcId:
    """The process that wrote `pidfile`, started by us (no earlier than `not_before`)."""

    def started() -> ProcId | None:
        pid = processes.read_pid(pidfile)
        proc = None if pid is None else processes.proc_id(pid, program)
        return proc if proc is not None and proc.start >= not_before else None

    proc = await_value(started, START_CONFIRM)
    if proc is None:
        raise DaemonError(f"{what} did not stay up")
    return proc


def _clear_dead_pidfile(pidfile: Path, program: str) -> None:
    """A PID file whose process is gone makes NUT wait for it (drivers: 5 s) or refuse
    to start (upsd, upsmon). One naming a live `program` is left alone: the plan never
    starts a second one over a process that is not ours."""
    pid = processes.read_pid(pidfile)
    if pidfile.exists() and (pid is None or processes.proc_id(pid, program) is None):
        logfmt.debug("pidfile.stale", path=pidfile)
        _remove(pidfile)


# --- drivers -------------------------------------------------------------------


def driver_pidfile(settings: Settings, driver: str, ups: str) -> Path:
    return settings.statepath / f"{driver}-{ups}.pid"


def start_driver(settings: Settings, ups: str, driver: str, not_before: int) -> ProcId:
    pidfile = driver_pidfile(settings, driver, ups)
    _clear_dead_pidfile(pidfile, driver)
    _run(settings, [_need(settings.binaries.upsdrvctl, "upsdrvctl"), "-u", settings.run_user, "start", ups])
    return _confirm(pidfile, driver, not_before, f"driver {driver} for {ups}")


def signal_stop(proc: ProcId, driver: str) -> None:
    """Ask a driver to exit without waiting: a driver takes up to its poll interval
    (~2 s) to go, and nothing but a new driver for the same UPS needs to wait for it."""
    send(proc, driver, signal.SIGTERM)


def stop_driver(settings: Settings, ups: str, driver: str, proc: ProcId, timeout: float = STOP_TIMEOUT) -> None:
    """Stop and await the exit (after signal_stop, or on its own)."""
    terminate(proc, driver, timeout)
    # A driver killed hard leaves its PID file and socket behind; remove them only if
    # they are still that driver's.
    pidfile = driver_pidfile(settings, driver, ups)
    if processes.read_pid(pidfile) == proc.pid:
        _remove(pidfile)
        _remove(settings.statepath / f"{driver}-{ups}")


# --- upsd -----------------------------------------------------------------------


def start_upsd(settings: Settings, not_before: int) -> ProcId:
    pidfile = settings.statepath / "upsd.pid"
    _clear_dead_pidfile(pidfile, "upsd")
    _run(settings, [_need(settings.binaries.upsd, "upsd"), "-u", settings.upsd_user])
    return _confirm(pidfile, "upsd", not_before, "upsd")


def reload(proc: ProcId, program: str) -> None:
    """NUT's reload (upsd and upsmon re-read their files and keep their clients)."""
    if not send(proc, program, signal.SIGHUP):
        raise DaemonError(f"{program} (pid {proc.pid}) is gone: nothing to reload")


def stop_upsd(settings: Settings, proc: ProcId, timeout: float = STOP_TIMEOUT) -> None:
    terminate(proc, "upsd", timeout)
    pidfile = settings.statepath / "upsd.pid"
    if processes.read_pid(pidfile) == proc.pid:
        _remove(pidfile)


# --- upsmon ---------------------------------------------------------------------


def start_upsmon(settings: Settings) -> ProcId:
    binary = _need(settings.binaries.upsmon, "upsmon")
    # upsmon refuses to start while its PID file names any live process. After a
    # container restart that PID often belongs to something else (even our upsd).
    for path in sorted({*UPSMON_OWN_PIDFILES, settings.statepath / "upsmon.pid"}):
        _clear_dead_pidfile(path, "upsmon")
    log_path = settings.agent_dir / "upsmon.log"
    _cap(log_path, settings.log_file_max)
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
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
    proc = await_value(lambda: processes.proc_id(child.pid, "upsmon"), START_CONFIRM)
    if proc is None:
        raise DaemonError("upsmon did not stay up")
    return proc


def _cap(path: Path, limit: int) -> None:
    """Keep upsmon's own log (which only grows) to one rotation, like the agent's."""
    try:
        if path.stat().st_size > limit:
            os.replace(path, path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


def stop_upsmon(proc: ProcId, timeout: float = STOP_TIMEOUT) -> None:
    terminate(proc, "upsmon", timeout)
