"""What the run loop sleeps on: the kernel's uevents (when they can be heard), a
self-pipe that a signal writes to, and a timeout (the `schedule` package's idle time
until the next timed job, timers.py).

One select() for all three, so the agent uses no CPU between wake-ups: no timer thread,
no polling of the bus while the kernel speaks for it.
"""

from __future__ import annotations

import os
import select
import signal
from dataclasses import dataclass

from reconcile import logfmt
from reconcile.observe.uevents import Listener


@dataclass(frozen=True)
class Heard:
    uevents: int = 0  # messages of our subsystem
    overflowed: bool = False  # the kernel dropped some: a pass must look at everything
    signalled: bool = False

    @property
    def nudge(self) -> bool:
        return self.uevents > 0 or self.overflowed


class Wakeups:
    def __init__(self, listener: Listener | None) -> None:
        self.listener = listener
        self.overflows = 0
        # Why a self-pipe: a signal that arrives during select() runs its handler, and
        # Python then retries select() with the rest of its timeout (PEP 475). With the
        # pipe as the wakeup fd, the signal's byte makes select() return at once.
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)

    @classmethod
    def open(cls, enabled: bool, subsystem: str) -> Wakeups:
        """Listen if enabled and possible; else say once why the agent polls."""
        if not enabled:
            logfmt.info("uevents.off", reason="UEVENTS=0", mode="polling")
            return cls(None)
        try:
            listener = Listener.open(subsystem)
        except OSError as exc:  # a kernel without it, a sandbox that forbids netlink, a user namespace
            logfmt.warning("uevents.off", reason=f"{type(exc).__name__}: {exc}", mode="polling")
            return cls(None)
        logfmt.info("uevents.on", subsystem=subsystem)
        return cls(listener)

    @property
    def listening(self) -> bool:
        return self.listener is not None

    def wait(self, timeout: float) -> Heard:
        """Sleep until a uevent, a signal, or `timeout` seconds."""
        fds: list[int] = [self._read] + ([self.listener.fileno()] if self.listener else [])
        ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
        signalled = self._read in ready
        if signalled:
            while True:  # empty the pipe: one byte per signal
                try:
                    if not os.read(self._read, 512):
                        break
                except BlockingIOError:
                    break
        if self.listener is None or self.listener.fileno() not in ready:
            return Heard(signalled=signalled)
        return self._drain(signalled)

    def _drain(self, signalled: bool) -> Heard:
        assert self.listener is not None
        try:
            drained = self.listener.drain()
        except OSError as exc:
            # Not ENOBUFS (the listener handles that): the socket itself is broken. Poll
            # from now on rather than spin on it; the pass still runs, so nothing is missed.
            logfmt.error("uevents.failed", error=f"{type(exc).__name__}: {exc}", mode="polling")
            self.listener.close()
            self.listener = None
            return Heard(overflowed=True, signalled=signalled)
        for event in drained.events:
            logfmt.debug("uevent", action=event.action, devpath=event.devpath, devtype=event.devtype)
        if drained.overflowed:
            self.overflows += 1
            # Said once at info (a busy bus may overflow again and again); then at DEBUG.
            log = logfmt.warning if self.overflows == 1 else logfmt.debug
            log("uevents.overflow", count=self.overflows, then="a full pass")
        return Heard(len(drained.events), drained.overflowed, signalled)

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        for fd in (self._read, self._write):
            os.close(fd)
        if self.listener is not None:
            self.listener.close()
            self.listener = None
