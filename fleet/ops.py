"""Two operations pyinfra has no equivalent for, written like pyinfra's own: small,
documented, idempotent (no commands when the host is already as asked)."""

from __future__ import annotations

import hashlib
import shlex
import time
from collections.abc import Callable
from io import BytesIO
from typing import Any

from pyinfra import logger
from pyinfra.api.command import FunctionCommand, StringCommand
from pyinfra.api.exceptions import OperationError
from pyinfra.api.operation import operation
from pyinfra.context import host
from pyinfra.facts.files import File, Sha256File

from fleet import image as images
from fleet.data import HostConfig


def _reported(function: Callable[..., None]) -> Callable[..., bool]:
    """A FunctionCommand body whose failure is a message, not a traceback: it is logged
    in red on the host's lines and the operation fails (pyinfra: a command returning False)."""

    def run(state: Any, host: Any, *args: Any) -> bool:
        try:
            function(state, host, *args)
        except (OperationError, images.ImageError) as exc:
            for line in str(exc).splitlines():
                host.log_styled(line, fg="red", log_func=logger.error)
            return False
        return True

    run.__name__ = function.__name__
    return run


def _refuse(state: Any, host: Any, message: str) -> None:
    raise OperationError(message)


@operation(is_idempotent=False)
def refuse(message: str) -> Any:
    """
    Fail this host with `message` and change nothing (the other hosts go on).

    + message: what is wrong, naming the host and the data key
    """
    yield FunctionCommand(_reported(_refuse), (message,), {})


def _sudo() -> bool:
    """Whether this operation runs with sudo (a Pi reached as `pi` with `_sudo = True`)."""
    arguments: dict[str, Any] = dict(host.current_op_global_arguments or {})
    return bool(arguments.get("_sudo"))


def _run(host: Any, command: str, sudo: bool, what: str) -> list[str]:
    ok, output = host.run_shell_command(StringCommand(command), _sudo=sudo)
    if not ok:
        raise OperationError(f"{what} failed: {' / '.join(output.stderr_lines[-3:]) or 'no output'}")
    return list(output.stdout_lines)


def _put_secret(state: Any, host: Any, path: str, content: str, sudo: bool) -> None:
    # A private dir of the SSH user's own (mktemp -d: 0700), so the secret is never
    # readable by anyone else on its way, then moved into place as root with mode 0600.
    private = _run(host, "mktemp -d", False, "mktemp")[-1].strip()
    try:
        if not host.put_file(BytesIO(content.encode()), f"{private}/secret", _sudo=False):
            raise OperationError(f"uploading the secret for {path} failed")
        target = shlex.quote(path)
        _run(host, f"install -m 600 -o root -g root {shlex.quote(private)}/secret {target}", sudo, f"install {path}")
    finally:
        host.run_shell_command(StringCommand(f"rm -rf {shlex.quote(private)}"), _sudo=False)


@operation()
def secret_file(path: str, content: str) -> Any:
    """
    A file holding a secret (a password for a Docker secret), mode 0600, owned by root.

    + path: where (its directory must exist)
    + content: the secret

    Unlike files.put, the content is never printed, not even with --diff: the log says only
    whether the file is created or changed. It travels through a private temp dir (0700) of
    the SSH user, never a shared one. Changes only when its digest or mode differs.
    """
    want = hashlib.sha256(content.encode()).hexdigest()
    have = host.get_fact(Sha256File, path=path)
    info = host.get_fact(File, path=path)
    mode_ok = isinstance(info, dict) and info.get("mode") == 600
    if have == want and mode_ok:
        host.noop(f"secret {path} is up to date")
        return
    host.log(f"Will {'create' if have is None else 'update'} {path} (a secret: its content is not shown)")
    yield FunctionCommand(_reported(_put_secret), (path, content, _sudo()), {})


def _upload_and_load(state: Any, host: Any, ref: str, local: images.LocalImage, remote: str, sudo: bool) -> None:
    archive = images.saved(local)
    if not host.put_file(str(archive), remote, _sudo=sudo):
        raise OperationError(f"uploading {archive} to {remote} failed")
    command = (
        f"timeout 900 docker load -i {shlex.quote(remote)} >/dev/null"
        f" && docker tag {shlex.quote(local.id)} {shlex.quote(ref)}; rc=$?; rm -f {shlex.quote(remote)}; exit $rc"
    )
    _run(host, command, sudo, f"docker load of {ref}")


@operation()
def image_loaded(ref: str, local: images.LocalImage, host_id: str | None, upload_dir: str) -> Any:
    """
    The host has the controller's image `local` under the name `ref`.

    + ref: the image name the host's compose file uses
    + local: the controller's image (built for the host's architecture)
    + host_id: the ID the host's `ref` has now (None: absent)
    + upload_dir: a directory on the host for the compressed archive while it is loaded

    Shipped (`docker save | gzip`, upload, `docker load`) only when the IDs differ; the save
    is made once per image for all hosts of a run.
    """
    if host_id == local.id:
        host.log(f"Image {ref}: {local.short} here already, as on the controller: not shipped")
        return
    have = host_id.removeprefix("sha256:")[:12] if host_id else "none"
    host.log(f"Will ship image {ref}: {local.short} on the controller, {have} on the host")
    archive = f"{upload_dir}/.image-{local.short}.tar.gz"
    yield FunctionCommand(_reported(_upload_and_load), (ref, local, archive, _sudo()), {})


# --- the health gate -------------------------------------------------------------------

CONTAINER = "ups-nut-smart"
PROJECT = "ups-nut-smart"
ROLLBACK_TAG = "ups-nut-smart-rollback:previous"
GATE_TIMEOUT = 120.0
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
            return f"{why} after {timeout:g}s"
        time.sleep(2)  # polling the engine, with the deadline above


def _rollback(host: Any, config: HostConfig, compose: str, sudo: bool) -> str:
    here = shlex.quote(config.project_dir)
    up = f"{compose} --project-directory {here} --project-name {PROJECT} -f {here}/compose.yaml"
    restore = (
        f"cd {here} && test -d .rollback"
        " && cp -a .rollback/compose.yaml .rollback/.env .rollback/config.toml ."
        " && rm -rf secrets"
        " && if [ -d .rollback/secrets ]; then cp -a .rollback/secrets secrets; else mkdir -m 0700 secrets; fi"
        f' && if [ -s .rollback/image ]; then docker tag {ROLLBACK_TAG} "$(cat .rollback/image)"; fi'
        f" && timeout 300 {up} up -d --force-recreate --remove-orphans"
    )
    ok, _ = _sh(host, restore, sudo)
    if not ok:
        _sh(host, f"timeout 120 {up} down", sudo)
        return "no earlier deployment to go back to: the new one was stopped"
    why = _healthy(host, config, sudo, GATE_TIMEOUT)
    if why is None:
        return "rolled back to the previous image and files: healthy again"
    return f"rolled back to the previous image and files, but that is not healthy either ({why})"


def _gate(state: Any, host: Any, config: HostConfig, compose: str, sudo: bool) -> None:
    why = _healthy(host, config, sudo, GATE_TIMEOUT)
    if why is None:
        return
    _, logs = _sh(host, f"timeout 20 docker logs --tail 15 {CONTAINER} 2>&1", sudo)
    report = _rollback(host, config, compose, sudo)
    raise OperationError(f"health gate failed ({why}); {report}. Last log lines of the failed container:\n{logs}")


@operation(is_idempotent=False)
def healthy_or_rolled_back(config: HostConfig, compose: str) -> Any:
    """
    The container is healthy and `upsc <ups_name>@127.0.0.1:<nut_port>` answers from inside
    it within GATE_TIMEOUT; otherwise the host is put back on its previous image and files
    (the snapshot taken before this run changed anything), brought up healthy again, and
    reported failed with the failed container's last log lines.

    + config: the host's validated data
    + compose: how compose is invoked on the host
    """
    yield FunctionCommand(_reported(_gate), (config, compose, _sudo()), {})
