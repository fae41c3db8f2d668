"""Atomic config writes: temp file, fsync, rename. A reader (upsd reloading) never sees
half a file, and a failure leaves the old file as it was."""

from __future__ import annotations

import grp
import os
import tempfile
from pathlib import Path

MODE = 0o640


def nut_gid() -> int | None:
    try:
        return grp.getgrnam("nut").gr_gid
    except KeyError:
        return None


def write_atomic(path: Path, content: str, mode: int = MODE, group: int | None = None) -> None:
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if group is not None:
                # Why: NUT daemons that drop to the nut user must still read their config.
                os.fchown(handle.fileno(), -1, group)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
