"""NUT's config files as they are on disk."""

from __future__ import annotations

import os
from pathlib import Path

from reconcile.model import FileState

MANAGED_HEADER = "# Managed by nut-reconcile: edits are overwritten. Delete this line to manage the file yourself."
FILES = ("nut.conf", "ups.conf", "upsd.conf", "upsd.users", "upsmon.conf")


def read_file(confpath: Path, name: str) -> FileState:
    path = confpath / name
    try:
        content: str | None = path.read_text(encoding="utf-8", errors="replace")
        mtime: float | None = path.stat().st_mtime
    except FileNotFoundError:
        content, mtime = None, None
    except OSError:
        # Unreadable: treat as someone else's file, never overwrite it.
        return FileState(name, "", managed=False, writable=False)
    managed = content is None or content.startswith(MANAGED_HEADER)
    if content is None:
        writable = os.access(confpath, os.W_OK)
    else:
        # access() reports EROFS for a read-only mount, also for root.
        writable = os.access(path, os.W_OK) and os.access(confpath, os.W_OK)
    return FileState(name, content, managed=managed, writable=writable, mtime=mtime)


def read_files(confpath: Path) -> dict[str, FileState]:
    return {name: read_file(confpath, name) for name in FILES}
