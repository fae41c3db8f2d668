"""observe/container.inside: the marker files Docker and Podman leave, read from a temp dir."""

from __future__ import annotations

from pathlib import Path

from reconcile.observe import container


def test_a_container_is_known_by_its_runtimes_marker_file(tmp_path: Path) -> None:
    docker, podman = tmp_path / ".dockerenv", tmp_path / ".containerenv"
    assert not container.inside((docker, podman))
    podman.write_text("")
    assert container.inside((docker, podman))
