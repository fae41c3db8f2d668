"""What configuration a NUT process runs with, as digests, to compare with what it should.

The agent records, for each process it starts or reloads, the digests of the files (or,
for a driver, of its ups.conf section) it loaded then. A process whose record differs
from the files as they should be is reloaded or restarted, whatever happened in between
(a crash after a file was written and before the reload, a user's edit of a file the
agent does not manage): the plan compares states, not events.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

Loaded = tuple[tuple[str, str], ...]

UPSD_FILES = ("ups.conf", "upsd.conf", "upsd.users")
_HEADER_LINE = re.compile(r"^\s*\[([^\]]*)\]\s*$")


@lru_cache(maxsize=64)
def digest(text: str | None) -> str:
    if text is None:
        return "absent"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def section_blocks(text: str | None) -> dict[str, str]:
    """ups.conf section name -> its text, to tell which sections changed."""
    return dict(_section_blocks(text or ""))


@lru_cache(maxsize=16)
def _section_blocks(text: str) -> tuple[tuple[str, str], ...]:
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        header = _HEADER_LINE.match(line)
        if header:
            current = blocks.setdefault(header.group(1), [])
        if current is not None:
            current.append(line.rstrip())
    return tuple((name, "\n".join(lines).strip()) for name, lines in blocks.items())


def of_files(files: dict[str, str | None], names: tuple[str, ...]) -> Loaded:
    return tuple((name, digest(files.get(name))) for name in names)


def of_section(block: str | None) -> Loaded:
    return (("section", digest(block)),)
