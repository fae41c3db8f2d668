"""The agent's own open-files limit (RLIMIT_NOFILE), which every NUT daemon it starts inherits."""

from __future__ import annotations

import resource


def nofile() -> tuple[int | None, int | None]:
    """(soft, hard); None where the limit is unlimited (RLIM_INFINITY)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _finite(soft), _finite(hard)


def _finite(value: int) -> int | None:
    return None if value == resource.RLIM_INFINITY else value
