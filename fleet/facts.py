"""Facts about a Pi that pyinfra has no fact for. (Docker's own facts come from
pyinfra.facts.docker: DockerImage, DockerContainer; the architecture from server.Arch.)"""

from __future__ import annotations

from pyinfra.api.facts import FactBase


class ComposeCommand(FactBase[str]):
    """How compose is invoked here: "docker compose" (v2, the Docker CLI plugin: trixie,
    current Raspberry Pi OS), else "docker-compose" (bookworm's 1.29, or a standalone v2),
    else "" (none)."""

    def command(self) -> str:
        return (
            "if timeout 20 docker compose version >/dev/null 2>&1; then echo 'docker compose'; "
            "elif timeout 20 docker-compose version >/dev/null 2>&1; then echo docker-compose; "
            "else echo; fi"
        )

    def process(self, output: list[str]) -> str:
        return output[0].strip() if output else ""


class DockerReady(FactBase[bool]):
    """Whether a Docker engine answers here (the client alone is not enough)."""

    def command(self) -> str:
        return "timeout 20 docker info >/dev/null 2>&1 && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[0].strip() == "yes"
