"""Facts about a Pi that pyinfra has no fact for. (Docker's own facts come from
pyinfra.facts.docker: DockerImage, DockerContainer; the architecture from server.Arch.)"""

from __future__ import annotations

import json

from pyinfra.api.facts import FactBase

from fleet import digest


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


class OnBattery(FactBase[list[str]]):
    """The UPSes the running ups-nut-smart container's upsd reports on battery or in FSD
    (its `nut-reconcile status --json`); empty when none, or when no container runs."""

    def command(self) -> str:
        return "timeout 30 docker exec ups-nut-smart nut-reconcile status --json 2>/dev/null || true"

    def process(self, output: list[str]) -> list[str]:
        try:
            served = json.loads("\n".join(output) or "{}").get("served") or {}
        except (ValueError, AttributeError):
            return []
        return sorted(
            name
            for name, view in served.items()
            if isinstance(view, dict) and {"OB", "FSD"} & set(str(view.get("status") or "").split())
        )


class DockerCE(FactBase[bool]):
    """Whether Docker's own packages (docker-ce) are installed, running or not: then the
    engine is there, and Debian's docker.io must not be installed over it."""

    def command(self) -> str:
        return (
            "dpkg-query -W -f='${Status}' docker-ce 2>/dev/null | grep -q 'install ok installed' && echo yes || echo no"
        )

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[0].strip() == "yes"


class FilesDigest(FactBase[str]):
    """The digest of the live project dir (fleet/digest.py), as the container's label holds
    it for the files it was created from; "" when the dir holds no deployment."""

    def command(self, project_dir: str) -> str:
        return digest.shell(project_dir)

    def process(self, output: list[str]) -> str:
        text = output[0].strip() if output else ""
        return text if len(text) == 64 else ""
