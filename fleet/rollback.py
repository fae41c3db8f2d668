"""The rollback, in one place: what runs is kept before a run changes anything
(`snapshot`), and the health gate after it puts the host back on that when the new
container is not healthy (`healthy_or_rolled_back`).

What is kept, in <project_dir>/.rollback/: the image the container ran (tagged ROLLBACK_TAG
by its ID; the name it ran under in .rollback/image) and, when they are the ones it was
created from, its compose.yaml, .env, config.toml and secrets dir.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from typing import Any

from pyinfra.api.command import FunctionCommand, StringCommand
from pyinfra.api.exceptions import OperationError
from pyinfra.api.operation import operation
from pyinfra.context import host
from pyinfra.operations import server

from fleet.config import HostConfig
from fleet.digest import label_of
from fleet.facts import FilesDigest
from fleet.ops import CONTAINER, compose_up, reporting, uses_sudo

ROLLBACK_TAG = "ups-nut-smart-rollback:previous"
LIVE = "compose.yaml .env config.toml"  # the project dir's files but the secrets
CRASH_LOOP = 2  # restarts that make a container a failure at once


def _sh(host: Any, command: str, sudo: bool) -> tuple[bool, str]:
    ok, output = host.run_shell_command(StringCommand(command), _sudo=sudo)
    return ok, "\n".join([*output.stdout_lines, *output.stderr_lines])


def _healthy(host: Any, config: HostConfig, sudo: bool, timeout: float) -> str | None:
    """None once the container is healthy and upsc answers from inside it (a Pi with no
    UPS answers "Driver not connected"); else why not, when the time is up or it crash-loops."""
    upsc = f"{config.ups_name}@127.0.0.1:{config.nut_port}"
    deadline = time.monotonic() + timeout
    why = "not started"
    while True:
        ok, state = _sh(
            host, f"timeout 20 docker inspect -f '{{{{.State.Health.Status}}}} {{{{.RestartCount}}}}' {CONTAINER}", sudo
        )
        health, _, restarts = state.strip().partition(" ")
        if ok and health == "healthy":
            ok, answer = _sh(host, f"timeout 20 docker exec {CONTAINER} upsc {upsc} ups.status 2>&1", sudo)
            if ok or "Driver not connected" in answer:
                return None
            why = f"healthy, but upsc {upsc} says {answer.strip().splitlines()[-1:]}"
        else:
            why = f"health {health or 'unknown'}" + (f", {restarts} restarts" if restarts else "")
            if restarts.isdigit() and int(restarts) >= CRASH_LOOP:
                return f"{why}: it exits as soon as it starts"
        if time.monotonic() >= deadline:
            # What the container's own check says (the shutdown path, say), for the report.
            _, says = _sh(host, f"timeout 20 docker exec {CONTAINER} nut-reconcile health 2>&1", sudo)
            return f"{why} after {timeout:g}s" + (f" ({says.strip().splitlines()[-1]})" if says.strip() else "")
        time.sleep(2)  # polling the engine, with the deadline above


def _rollback(host: Any, config: HostConfig, compose: str, sudo: bool) -> str:
    here = shlex.quote(config.project_dir)
    restore = (
        f"cd {here} && test -f .rollback/compose.yaml"
        " && cp -a .rollback/compose.yaml .rollback/.env .rollback/config.toml ."
        " && rm -rf secrets"
        " && if [ -d .rollback/secrets ]; then cp -a .rollback/secrets secrets; else mkdir -m 0700 secrets; fi"
        # Why no tag for a digest reference (name@sha256:...): Docker refuses to tag one, and
        # needs none: the image it names is still here, by that digest.
        ' && ref="$(cat .rollback/image 2>/dev/null || true)"'
        f' && case "$ref" in ""|*@*) ;; *) docker tag {ROLLBACK_TAG} "$ref" ;; esac'
        f" && {compose_up(config.project_dir, compose)}"
    )
    ok, _ = _sh(host, restore, sudo)
    if not ok:
        # Never `down`: an unhealthy NUT server still serves what it can; none serves nothing.
        _, kept = _sh(host, f"cat {here}/.rollback/why 2>/dev/null || true", sudo)
        return (
            f"no earlier deployment to go back to ({kept.strip() or 'its restore failed'}):"
            " the new container is left running"
        )
    # The staged files as the live ones again, so that the next run's diff is against them.
    _sh(host, f"cd {here} && rm -rf .next && mkdir -m 0700 .next && cp -a {LIVE} secrets .next/", sudo)
    why = _healthy(host, config, sudo, config.gate_timeout)
    if why is None:
        return "rolled back to the previous image and files: healthy again"
    return f"rolled back to the previous image and files, but that is not healthy either ({why})"


def _gate(state: Any, host: Any, config: HostConfig, compose: str, changed: Callable[[], bool], sudo: bool) -> None:
    why = _healthy(host, config, sudo, config.gate_timeout)
    here = shlex.quote(config.project_dir)
    if why is None:
        # The snapshot's passwords are old now (a rotated secret must not linger).
        _sh(host, f"rm -rf {here}/.rollback/secrets", sudo)
        return
    _, logs = _sh(host, f"timeout 20 docker logs --tail 15 {CONTAINER} 2>&1", sudo)
    if not changed():
        # Nothing of this run is to blame (the container was only started): .rollback/ may
        # be weeks old, and going back to it would undo later runs.
        raise OperationError(
            f"health gate failed ({why}); nothing changed in this run, so nothing is rolled back:\n{logs}"
        )
    report = _rollback(host, config, compose, sudo)
    raise OperationError(f"health gate failed ({why}); {report}. Last log lines of the failed container:\n{logs}")


@operation(is_idempotent=False)
def healthy_or_rolled_back(config: HostConfig, compose: str, changed: Callable[[], bool]) -> Any:
    """
    The container is healthy and `upsc <ups_name>@127.0.0.1:<nut_port>` answers from inside
    it within the host's gate_timeout (default 120 s); otherwise the host is put back on its previous image and files
    (the snapshot taken before this run changed anything), brought up healthy again, and
    reported failed with the failed container's last log lines.

    + config: the host's validated data
    + compose: how compose is invoked on the host
    + changed: whether this run changed the host (else a failure is reported, not rolled back)

    Once healthy, the snapshot's secrets are removed: a rotated password is not kept.
    """
    yield FunctionCommand(reporting(_gate), (config, compose, changed, uses_sudo()), {})


def snapshot(config: HostConfig, container: Any, will_change: Callable[[], bool]) -> None:
    """What runs now, kept in .rollback/ for the health gate, taken only when this run will
    change something: the running container's image, by ID, and its files, but only when
    those on disk are the ones it was created from (its label, fleet/digest.py). Files edited
    by hand since, or a failed run's, never ran: no files are kept then, and a failed gate
    leaves the new container running (.rollback/why says why)."""
    here = shlex.quote(config.project_dir)
    keep = f"cd {here} && rm -rf .rollback && mkdir -m 0700 .rollback"
    if not container:
        why = "no container ran before this run"
        commands = [f"mkdir -p {here} && {keep} && echo {shlex.quote(why)} > .rollback/why"]
    else:
        image_id, image_ref = container[0]["Image"], container[0]["Config"]["Image"]
        ran = label_of(container)
        live = host.get_fact(FilesDigest, project_dir=config.project_dir)
        image = f"docker tag {shlex.quote(image_id)} {ROLLBACK_TAG} && echo {shlex.quote(image_ref)} > .rollback/image"
        if ran and live == ran:
            files = f"cp -a {LIVE} .rollback/ && {{ [ ! -d secrets ] || cp -a secrets .rollback/; }}"
        else:
            why = "the files on disk are not the ones the container was created from" + (
                " (changed by hand since?)" if ran else " (it predates the rollout's files label)"
            )
            files = f"echo {shlex.quote(why)} > .rollback/why"
        commands = [f"{keep} && {files} && {image}"]
    server.shell(name="Keep what runs now, for a rollback", commands=commands, _if=will_change)
