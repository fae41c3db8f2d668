"""Atomic writes and the agent's directories.

A write goes to a temp file beside the target, is fsynced, renamed over the target,
and the directory is fsynced: a reader (upsd reloading) never sees half a file, a
failure leaves the old file as it was, and a crash leaves at most a temp file, which
`remove_leftovers` deletes at the next start (it may hold a password).
"""

from __future__ import annotations

import grp
import os
import re
import stat
import tempfile
from pathlib import Path

MODE = 0o640
_TMP_SUFFIX = ".tmp"


class DirError(RuntimeError):
    pass


def nut_gid() -> int | None:
    try:
        return grp.getgrnam("nut").gr_gid
    except KeyError:
        return None


def write_atomic(path: Path, content: str, mode: int = MODE, group: int | None = None) -> None:
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            # Mode first, content second: a password never sits in a readable file.
            os.fchmod(handle.fileno(), mode)
            if group is not None:
                # Why: NUT daemons that drop to the nut user must still read their config.
                os.fchown(handle.fileno(), -1, group)
            handle.write(content)
            handle.flush()
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


def remove_leftovers(directory: Path, names: tuple[str, ...]) -> list[Path]:
    """Delete the temp files a crash in write_atomic left for these names. Returns them."""
    pattern = re.compile(
        r"\.(" + "|".join(re.escape(n) for n in names) + r")\.[A-Za-z0-9_]{6,}" + re.escape(_TMP_SUFFIX)
    )
    removed: list[Path] = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return removed
    for entry in entries:
        if pattern.fullmatch(entry):
            try:
                os.unlink(directory / entry)
                removed.append(directory / entry)
            except FileNotFoundError:
                pass
    return removed


def ensure_private_dir(path: Path) -> None:
    """The agent's own dir: a real directory, ours, mode 0700 (names and passwords live
    there, and nothing another user wrote may be read back as our state)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise DirError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise DirError(f"{path}: not a directory (a symlink or file is never used as the agent's state dir)")
    if st.st_uid != os.geteuid():
        raise DirError(f"{path}: owned by uid {st.st_uid}, not by this user ({os.geteuid()}): not using it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def ensure_nut_statepath(path: Path) -> None:
    """NUT's state dir as NUT needs it: group nut, group-writable (upsd, dropped to nut,
    writes its PID file there) and setgid, so the sockets drivers create as root belong
    to group nut and upsd can connect to them. Left alone if someone else owns it."""
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    gid = nut_gid()
    st = os.stat(path)
    if gid is None or st.st_uid != os.geteuid():
        return
    if st.st_gid != gid:
        os.chown(path, -1, gid)
    if stat.S_IMODE(st.st_mode) != 0o2770:
        os.chmod(path, 0o2770)


def ensure_dir(path: Path) -> None:
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
