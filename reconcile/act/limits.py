"""Raise the agent's soft open-files limit, before it starts upsd (which inherits it)."""

from __future__ import annotations

import resource


def raise_nofile(soft: int) -> str | None:
    """Set the soft RLIMIT_NOFILE to `soft` (at most the hard limit: no privilege needed).
    Returns None, or why it could not be set."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
