"""Whether the agent runs in a container: then its SHUTDOWNCMD cannot halt the host it runs
on (the host's own upsmon does), whatever command it names."""

from __future__ import annotations

from pathlib import Path

# The marker files Docker and Podman put at the root of every container they start.
MARKERS = (Path("/.dockerenv"), Path("/run/.containerenv"))


def inside(markers: tuple[Path, ...] = MARKERS) -> bool:
    return any(m.exists() for m in markers)
