"""NUT's config files as they are on disk."""

from __future__ import annotations

import os
from pathlib import Path

from reconcile.model import FileState

MANAGED_HEADER = "# Managed by nut-reconcile: edits are overwritten. Delete this line to manage the file yourself."
# upssched.conf: read by upssched at each ONBATT/ONLINE it is run for (no daemon reloads it).
FILES = ("nut.conf", "ups.conf", "upsd.conf", "upsd.users", "upssched.conf", "upsmon.conf")


Contents = dict[str, tuple[tuple[int, int, int], str]]


def read_file(confpath: Path, name: str, contents: Contents | None = None) -> FileState:
    """`contents` (kept by a long-running caller) skips re-reading a file whose inode,
    mtime and size are the ones it had: an atomic write always makes a new inode."""
    # Plain strings, not Path: a running agent does this for five files at every tick.
    folder = os.fspath(confpath)
    path = os.path.join(folder, name)
    try:
        st = os.stat(path)
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        known = contents.get(path) if contents is not None else None
        if known is not None and known[0] == key:
            content: str | None = known[1]
        else:
            with open(path, encoding="utf-8", errors="replace") as handle:
                content = handle.read()
            if contents is not None:
                contents[path] = (key, content)
        mtime: float | None = st.st_mtime
    except FileNotFoundError:
        content, mtime = None, None
    except OSError:
        # Unreadable: treat as someone else's file, never overwrite it.
        return FileState(name, "", managed=False, writable=False)
    managed = content is None or content.startswith(MANAGED_HEADER)
    if content is None:
        writable = os.access(folder, os.W_OK)
    else:
        # access() reports EROFS for a read-only mount, also for root.
        writable = os.access(path, os.W_OK) and os.access(folder, os.W_OK)
    return FileState(name, content, managed=managed, writable=writable, mtime=mtime)


def read_files(confpath: Path, contents: Contents | None = None) -> dict[str, FileState]:
    return {name: read_file(confpath, name, contents) for name in FILES}
