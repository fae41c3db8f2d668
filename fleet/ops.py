"""Operations pyinfra has no equivalent for, written like pyinfra's own: small,
documented, idempotent (no commands when the host is already as asked). The health gate
and the rollback are in fleet/rollback.py."""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Callable
from io import BytesIO
from typing import Any

from pyinfra import logger
from pyinfra.api.command import FunctionCommand, StringCommand
from pyinfra.api.exceptions import OperationError
from pyinfra.api.operation import operation
from pyinfra.context import host
from pyinfra.facts.docker import DockerImage
from pyinfra.facts.files import File, Sha256File

from fleet import image as images


def reporting(function: Callable[..., None]) -> Callable[..., bool]:
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
    yield FunctionCommand(reporting(_refuse), (message,), {})


def uses_sudo() -> bool:
    """Whether this operation runs with sudo (a Pi reached as `pi` with `_sudo = True`)."""
    arguments: dict[str, Any] = dict(host.current_op_global_arguments or {})
    return bool(arguments.get("_sudo"))


def _run(host: Any, command: str, sudo: bool, what: str) -> list[str]:
    ok, output = host.run_shell_command(StringCommand(command), _sudo=sudo)
    if not ok:
        raise OperationError(f"{what} failed: {' / '.join(output.stderr_lines[-3:]) or 'no output'}")
    return list(output.stdout_lines)


def _put_secret(state: Any, host: Any, path: str, content: str, mode: str, group: str, sudo: bool) -> None:
    # A private dir of the SSH user's own (mktemp -d: 0700), so the secret is never
    # readable by anyone else on its way, then moved into place as root with its mode.
    private = _run(host, "mktemp -d", False, "mktemp")[-1].strip()
    try:
        if not host.put_file(BytesIO(content.encode()), f"{private}/secret", _sudo=False):
            raise OperationError(f"uploading the secret for {path} failed")
        target, owner = shlex.quote(path), f"-m {shlex.quote(mode)} -o root -g {shlex.quote(group)}"
        _run(host, f"install {owner} {shlex.quote(private)}/secret {target}", sudo, f"install {path}")
    finally:
        host.run_shell_command(StringCommand(f"rm -rf {shlex.quote(private)}"), _sudo=False)


@operation()
def secret_file(path: str, content: str, mode: str = "600", group: str = "root") -> Any:
    """
    A file holding a secret (a password for a Docker secret, an upsmon.conf), owned by root.

    + path: where (its directory must exist)
    + content: the secret
    + mode: its mode (octal digits, default 600)
    + group: its group (default root; the host's upsmon.conf is root:nut 640)

    Unlike files.put, the content is never printed, not even with --diff: the log says only
    whether the file is created or changed. It travels through a private temp dir (0700) of
    the SSH user, never a shared one. Changes only when its digest or mode differs.
    """
    want = hashlib.sha256(content.encode()).hexdigest()
    have = host.get_fact(Sha256File, path=path)
    info = host.get_fact(File, path=path)
    mode_ok = isinstance(info, dict) and info.get("mode") == int(mode) and info.get("group") == group
    if have == want and mode_ok:
        host.noop(f"secret {path} is up to date")
        return
    host.log(f"Will {'create' if have is None else 'update'} {path} (a secret: its content is not shown)")
    yield FunctionCommand(reporting(_put_secret), (path, content, mode, group, uses_sudo()), {})


def _upload_and_load(state: Any, host: Any, ref: str, local: images.LocalImage, remote: str, sudo: bool) -> None:
    archive = images.saved(local)
    if not host.put_file(str(archive), remote, _sudo=sudo):
        raise OperationError(f"uploading {archive} to {remote} failed")
    command = (
        f"timeout 900 docker load -i {shlex.quote(remote)} >/dev/null"
        f" && docker tag {shlex.quote(local.id)} {shlex.quote(ref)}; rc=$?; rm -f {shlex.quote(remote)}; exit $rc"
    )
    _run(host, command, sudo, f"docker load of {ref}")


CONTAINER = "ups-nut-smart"  # the container's name, and its service's in compose.yaml
PROJECT = "ups-nut-smart"
STAGE = ".next"  # <project_dir>/.next: the files of this run until they go live


def compose_up(project_dir: str, compose: str, recreate: bool = True) -> str:
    """compose's `up -d` for the project: with --force-recreate (compose sees a new image or
    env, not a changed config.toml or secret), or, with recreate=False, only what compose
    itself finds changed (a container that runs as its files say is left running)."""
    here = shlex.quote(project_dir)
    up = f"{compose} --project-directory {here} --project-name {PROJECT} -f {here}/compose.yaml up -d"
    return f"timeout 900 {up}" + (" --force-recreate" if recreate else "") + " --remove-orphans"


def compose_build(project_dir: str, compose: str) -> str:
    """compose's `build` of the staged compose.yaml, before anything goes live. Why the
    staged dir as the project's: compose reads a service's env_file and secrets when it loads
    the file, and on a first deploy only the staged ones exist. Why the second file: the build
    context (<project_dir>/build) is not staged, so it is given by its absolute path."""
    here, stage = shlex.quote(project_dir), shlex.quote(f"{project_dir}/{STAGE}")
    context = f"services:\\n  {CONTAINER}:\\n    build:\\n      context: %s\\n"
    where = shlex.quote(json.dumps(f"{project_dir}/build"))  # a JSON string is a YAML string
    files = f"-f {stage}/compose.yaml -f {stage}/build.yaml"
    return (
        f"cd {here} && printf '{context}' {where} > {stage}/build.yaml"
        f" && timeout 3600 {compose} --project-directory {stage} --project-name {PROJECT} {files} build"
    )


@operation(is_idempotent=False)
def image_built(project_dir: str, compose: str) -> Any:
    """
    The image built on the host (image_source = build) from the staged compose.yaml and
    <project_dir>/build, tagged with the name compose.yaml gives it; nothing live changes.

    + project_dir: the project dir on the host
    + compose: how compose is invoked on the host
    """
    yield StringCommand(compose_build(project_dir, compose))


@operation()
def image_loaded(ref: str, local: images.LocalImage, upload_dir: str) -> Any:
    """
    The host has the controller's image `local` under the name `ref`.

    + ref: the image name the host's compose file uses
    + local: the controller's image (built for the host's architecture)
    + upload_dir: a directory on the host for the compressed archive while it is loaded

    Reads the host's image ID for `ref` (pyinfra's DockerImage fact) and ships the image
    (`docker save | gzip`, upload, `docker load`) only when it differs; the save is made
    once per image for all hosts of a run.
    """
    found: Any = host.get_fact(DockerImage, object_id=ref)
    host_id = found[0]["Id"] if found else None
    if host_id == local.id:
        host.noop(f"image {ref} is {local.short} here already, as on the controller")
        return
    have = host_id.removeprefix("sha256:")[:12] if host_id else "none"
    host.log(f"Will ship image {ref}: {local.short} on the controller, {have} on the host")
    archive = f"{upload_dir}/.image-{local.short}.tar.gz"
    yield FunctionCommand(reporting(_upload_and_load), (ref, local, archive, uses_sudo()), {})
