"""The rollout, as pyinfra @deploy steps. What one run converges on each host:

1. its data is valid (else the host fails before anything on it changes)
2. a Docker engine and compose are there (Debian's packages, if install_docker)
3. a snapshot of what runs now, if this run will change anything (for the rollback)
4. the project dir with the compose file, env file and the agent's TOML, every mode
   explicit, and the Docker secrets files (0600), whose content is never printed
5. the image, by image_source: load (shipped from the controller when the host's ID
   differs), build (on the host), or pull
6. the container, recreated only when its image or files changed (or started if it is
   not running), then the health gate: healthy, or rolled back to the snapshot and
   reported failed

A second run with nothing to do changes nothing: no upload, no recreate, no gate.
"""

from __future__ import annotations

import os
from io import StringIO
from typing import Any

from pyinfra.api.deploy import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.docker import DockerContainer
from pyinfra.facts.server import Arch
from pyinfra.operations import apt, docker, files, systemd

from fleet import data, ops, render, rollback
from fleet import image as images
from fleet.config import HostConfig
from fleet.facts import ComposeCommand, DockerReady

BUILD_CONTEXT = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "reconcile", "templates", "docker")


def fail(message: str) -> None:
    """Fail this host only (the others go on), changing nothing on it."""
    ops.refuse(name="Refuse this host", message=message)


def docker_engine(config: HostConfig) -> str | None:
    """How compose is invoked on the host, after installing Docker if it is missing and
    allowed; None (and the host failed) when it is missing and not allowed."""
    compose = host.get_fact(ComposeCommand)
    if host.get_fact(DockerReady) and compose:
        return compose
    if not config.install_docker:
        fail(
            f"host {config.host}: no working Docker engine with compose here, and install_docker is false: "
            "install docker.io and docker-compose (or Docker's own packages), or set install_docker = true"
        )
        return None
    # Debian's names on bookworm (compose 1.29) and trixie (compose v2) alike.
    apt.packages(
        name="Install Docker (docker.io, docker-compose)", packages=["docker.io", "docker-compose"], update=True
    )
    systemd.service(name="Run the Docker engine", service="docker.service", running=True, enabled=True)
    return compose or "docker-compose"


def project_files(config: HostConfig) -> list[OperationMeta]:
    here = config.project_dir
    changes = [
        files.directory(name="Project dir", path=here, mode="0755", user="root", group="root"),
        files.directory(name="Secrets dir", path=f"{here}/secrets", mode="0700", user="root", group="root"),
    ]
    for name, content in render.files(config).items():
        changes.append(
            files.put(
                name=f"Write {name}",
                src=StringIO(content),
                dest=f"{here}/{name}",
                mode="0644",
                user="root",
                group="root",
                create_remote_dir=False,  # so that --dry --diff shows the diff on a fresh host too
            )
        )
    secrets = config.secrets
    for name in ("nut_monuser_password", "nut_admin_password"):
        path = f"{here}/secrets/{name}"
        if name in secrets:
            changes.append(ops.secret_file(name=f"Secret {name}", path=path, content=secrets[name]))
        else:
            changes.append(files.file(name=f"No secret {name}", path=path, present=False))
    return changes


def image(config: HostConfig) -> list[OperationMeta]:
    if config.image_source == "pull":
        return [docker.image(name=f"Pull {config.image}", image=config.image, present=True)]
    if config.image_source == "build":
        context: list[OperationMeta] = []
        for item in BUILD_CONTEXT:
            src, dest = images.REPO / item, f"{config.project_dir}/build/{item}"
            if src.is_dir():
                context.append(
                    files.sync(
                        name=f"Build context: {item}/",
                        src=str(src),
                        dest=dest,
                        exclude=["*.pyc"],
                        exclude_dir=["__pycache__"],
                    )
                )
            else:
                context.append(files.put(name=f"Build context: {item}", src=str(src), dest=dest, mode="0644"))
        return context
    machine = host.get_fact(Arch) or ""
    arch = images.ARCHES.get(machine, "")
    if not arch:
        why = images.UNSUPPORTED.get(machine, "no image is built for it")
        fail(f"host {config.host}: architecture {machine!r}: {why}")
        return []
    try:
        local = images.for_arch(config.image, arch)
    except images.ImageError as exc:
        fail(f"host {config.host}: {exc}")
        return []
    return [
        ops.image_loaded(
            name=f"Image {config.image} ({local.short})", ref=config.image, local=local, upload_dir=config.project_dir
        )
    ]


def converge(config: HostConfig, compose: str, changes: list[OperationMeta]) -> None:
    container: Any = host.get_fact(DockerContainer, object_id=ops.CONTAINER)
    running = bool(container) and bool(container[0]["State"]["Running"])

    def changed() -> bool:
        return any(op.did_change() for op in changes)

    common: dict[str, Any] = {
        "project_directory": config.project_dir,
        "project_name": ops.PROJECT,
        "files": [f"{config.project_dir}/compose.yaml"],
        "compose_command": compose,
        "build": config.image_source == "build",
    }
    # Why --force-recreate: compose sees a new image or env, not a changed config.toml or secret.
    docker.compose(
        name="Recreate the container (its image or files changed)", force_recreate=True, _if=changed, **common
    )
    if not running:
        docker.compose(name="Start the container (it is not running)", _if=lambda: not changed(), **common)
    rollback.healthy_or_rolled_back(
        name="Health gate (healthy, or rolled back)",
        config=config,
        compose=compose,
        _if=lambda: changed() or not running,
    )


@deploy("ups-nut-smart", data_defaults=data.DEFAULTS)
def rollout() -> None:
    try:
        config = data.load(host.name, host.data.get, os.environ)
    except data.DataError as exc:
        fail(str(exc))
        return
    compose = docker_engine(config)
    if compose is None:
        return
    changes: list[OperationMeta] = []
    rollback.snapshot(config, changes)
    changes += project_files(config)
    changes += image(config)
    converge(config, compose, changes)
