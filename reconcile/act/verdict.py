"""The health verdict `run` records at every tick, for the image's HEALTHCHECK.

Docker's check (docker/nut-health.sh, a POSIX sh script) reads the one line and the
file's age, so it need not start Python (which, every 30 s, was most of the idle
container's CPU). The file holds the verdict's text and a newline, mode 0644. It is
rewritten (atomically, files.write_atomic) only when the text changed; an unchanged
verdict only bumps its mtime (one utime call): the mtime says the loop is alive, and a
stuck loop shows as a file growing old. A write that fails is logged once and never
raised: a bad tick must not stop the loop.
"""

from __future__ import annotations

import os
from pathlib import Path

from reconcile import logfmt
from reconcile.act.files import write_atomic
from reconcile.model import Verdict

MODE = 0o644  # anyone may read it: the check may run as any user, and it holds no secret


class VerdictFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.written: str | None = None  # what the file holds (None: not known, write it)
        self.failing = False  # a failure was logged, and nothing has worked since

    def record(self, v: Verdict) -> None:
        content = v.text + "\n"
        try:
            if content != self.written or not self._touch():
                self.written = None  # until the write is done: a failed one is tried again
                write_atomic(self.path, content, mode=MODE)
                self.written = content
        except OSError as exc:
            if not self.failing:
                logfmt.warning(
                    "health.record",
                    file=str(self.path),
                    error=exc.strerror or str(exc),
                    why="the image's HEALTHCHECK will call the agent unhealthy; logged once until it works",
                )
            self.failing = True
            return
        if self.failing:
            logfmt.info("health.recorded", file=str(self.path))
            self.failing = False

    def _touch(self) -> bool:
        """The mtime bumped to now; False when the file is gone (removed behind our back)."""
        try:
            os.utime(self.path, follow_symlinks=False)  # (a link put there is not followed)
        except FileNotFoundError:
            return False
        return True
