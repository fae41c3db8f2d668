"""Facts about a Pi that pyinfra has no fact for. (Docker's own facts come from
pyinfra.facts.docker: DockerImage, DockerContainer; the architecture from server.Arch.)"""

from __future__ import annotations

import json
import shlex

from pyinfra.api.facts import FactBase

from fleet import digest
from fleet.report import AGENT_TIMEOUT, ENGINE_TIMEOUT, Reading, parse_reading


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


class ClientUsers(FactBase[list[str]]):
    """The nut_clients users (`[users."client-..."]`) of the config.toml that runs on the Pi:
    whose clients it serves now (fleet/clients.py of_pi). [] when there is none."""

    def command(self, project_dir: str) -> str:
        path = shlex.quote(f"{project_dir}/config.toml")
        return f"grep -o '^\\[users\\.\"\\?client-[A-Za-z0-9_.-]*' {path} 2>/dev/null || true"

    def process(self, output: list[str]) -> list[str]:
        return sorted({line.strip().removeprefix("[users.").lstrip('"') for line in output if line.strip()})


class AgentStatus(FactBase[Reading]):
    """The agent's `nut-reconcile status --json` in the container (fleet/report.py reads
    it), or why there is none: no Docker, the engine not answering, no container, the
    container not running, the agent not answering in AGENT_TIMEOUT s. The command itself
    always succeeds (a host without an answer is a row of the status, not a failed fact)."""

    def command(self, container: str) -> str:
        here = shlex.quote(container)
        return (
            "if ! command -v docker >/dev/null 2>&1; then echo 'docker: none'; exit 0; fi; "
            f"s=$(timeout {ENGINE_TIMEOUT} docker inspect -f '{{{{.State.Status}}}}' {here} 2>&1); rc=$?; "
            'if [ "$rc" -ne 0 ]; then case "$s" in *"No such"*) echo "container: missing" ;; '
            '*) echo "engine: $rc $(printf %s "$s" | tail -n 1)" ;; esac; exit 0; fi; '
            'echo "container: $s"; [ "$s" = running ] || exit 0; '
            # Why stderr is dropped: stdout is the JSON alone; the exit code says what failed.
            f"out=$(timeout {AGENT_TIMEOUT} docker exec {here} nut-reconcile status --json 2>/dev/null); "
            'echo "agent: $?"; printf "%s\\n" "$out"'
        )

    def process(self, output: list[str]) -> Reading:
        return parse_reading(output)

    @staticmethod
    def default() -> Reading:  # the command failed (sudo refused, the connection dropped)
        return Reading(why="no answer from the host (pyinfra's error is on stderr)")


class HostUpsmon(FactBase[str]):
    """The host's own upsmon (nut-client, fleet/host_nut.py): "running", "stopped" (NUT's
    upsmon installed, not running) or "absent". Told by Debian's PID file and /proc, not by
    pgrep: the container's upsmon is a process of the host too (its PID file is in the
    container's own /var/run/nut)."""

    def command(self) -> str:
        return (
            "pid=$(cat /run/nut/upsmon.pid 2>/dev/null); "
            'case "$pid" in ""|*[!0-9]*) pid=0 ;; esac; '
            'if [ "$(cat /proc/$pid/comm 2>/dev/null)" = upsmon ]; then echo running; '
            "elif [ -x /sbin/upsmon ] || [ -x /usr/sbin/upsmon ]; then echo stopped; else echo absent; fi"
        )

    def process(self, output: list[str]) -> str:
        return output[0].strip() if output else "unknown"
