"""The rollout, as pyinfra @deploy steps. What one run converges on each host:

1. its data is valid (else the host fails before anything on it changes)
2. a Docker engine and compose are there (Debian's packages, if install_docker)
3. a snapshot of what runs now, if this run will change anything (for the rollback),
   the host's own NUT files included
4. the project dir's files staged in .next/: the compose file, env file and the agent's
   TOML, every mode explicit, and the Docker secrets files (0600), never printed
5. the image, by image_source: load (shipped from the controller when the host's ID
   differs), build (on the host, from the staged compose file), or pull; all before
   anything live changes
6. the host's own NUT client (host_shutdown: fleet/host_nut.py), a secondary of the
   container's upsd that halts the host on FSD
7. the container, recreated only when its image or files changed (or started if it is
   not running): the staged files go live with the recreate, and come back out, the
   host's own files too, when `compose up` fails (the previous container started again);
   then the health gate: healthy (which includes the shutdown path: the host's upsmon
   logged in), or rolled back to the snapshot and reported failed

A second run with nothing to do changes nothing: no upload, no recreate, no gate.
"""

from __future__ import annotations

import os
import sys
from io import StringIO
from typing import Any

from pyinfra.api.deploy import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.context import host, inventory
from pyinfra.facts.docker import DockerContainer
from pyinfra.facts.files import FindFiles
from pyinfra.facts.server import Arch
from pyinfra.operations import apt, docker, files, server, systemd

from fleet import clients, data, digest, host_nut, ops, render, rollback
from fleet import image as images
from fleet.config import HOST_SECRET, HostConfig
from fleet.facts import ClientUsers, ComposeCommand, DockerCE, DockerReady, FilesDigest, OnBattery

SECRET_NAMES = ("nut_monuser_password", "nut_admin_password", HOST_SECRET)
BUILD_CONTEXT = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "reconcile", "templates", "docker")


def planning_only() -> bool:
    """pyinfra --dry: the deploy's code runs to make the plan, and nothing may be built.
    Why sys.argv: pyinfra decides that a run is dry after the plan is made, and tells the
    deploy nothing; without this, --dry built the image on the controller."""
    return "--dry" in sys.argv[1:]


def fail(message: str) -> None:
    """Fail this host only (the others go on), changing nothing on it."""
    ops.refuse(name="Refuse this host", message=message)


def docker_engine(config: HostConfig) -> str | None:
    """How compose is invoked on the host, after installing Docker if it is missing and
    allowed; None (and the host failed) when it is missing and not allowed."""
    compose = host.get_fact(ComposeCommand)
    if host.get_fact(DockerReady) and compose:
        return compose
    if host.get_fact(DockerCE):
        # Docker's own packages, stopped: start their engine. Installing Debian's docker.io
        # over them would replace the owner's engine (the packages conflict).
        server.service(name="Run Docker CE's engine", service="docker", running=True, enabled=True)
        return compose or "docker compose"
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


def project_files(config: HostConfig, wanted: dict[str, str]) -> list[OperationMeta]:
    """The files, staged in <project_dir>/.next: rollback.swapped_in_or_put_back moves them
    into place in the command that recreates the container. Why staged: written in place,
    a later failure (an image that does not ship) left new, unrun files live, for the next
    restart to run untested. Whether they are to go live is not told by these writes (a
    failed run leaves .next ahead of what runs) but by `files_differ`."""
    here, stage = config.project_dir, f"{config.project_dir}/{ops.STAGE}"
    changes = [
        files.directory(name="Project dir", path=here, mode="0755", user="root", group="root"),
        files.directory(name="Staging dir", path=stage, mode="0700", user="root", group="root"),
        files.directory(name="Staged secrets dir", path=f"{stage}/secrets", mode="0700", user="root", group="root"),
    ]
    for name, content in wanted.items():
        changes.append(
            files.put(
                name=f"Write {name}",
                src=StringIO(content),
                dest=f"{stage}/{name}",
                mode="0644",
                user="root",
                group="root",
                create_remote_dir=False,  # so that --dry --diff shows the diff on a fresh host too
            )
        )
    secrets = config.secrets
    # Any secrets file staged before and no longer wanted goes too (notify_urls dropped, a
    # nut_clients host removed): the secrets dir goes live whole, and with a file too many
    # its digest would never be the wanted one (a recreate at every run).
    found = host.get_fact(FindFiles, path=f"{stage}/secrets", maxdepth=1) or []
    staged = {path.rsplit("/", 1)[-1] for path in found}
    for name in sorted(set(SECRET_NAMES) | set(secrets) | staged):
        path = f"{stage}/secrets/{name}"
        if name in secrets:
            changes.append(ops.secret_file(name=f"Secret {name}", path=path, content=secrets[name]))
        else:
            changes.append(files.file(name=f"No secret {name}", path=path, present=False))
    return changes


def files_differ(config: HostConfig, wanted: dict[str, str], container: Any) -> bool:
    """Whether the wanted files are not what runs: the live files' digest, or the one the
    container was created from (its label), is not the wanted one. Level-triggered: a run
    after a failed one still sees it, whatever .next holds."""
    want = digest.of(wanted, config.secrets)
    live = host.get_fact(FilesDigest, project_dir=config.project_dir)
    return live != want or (bool(container) and digest.label_of(container) != want)


def image(config: HostConfig, compose: str, differ: bool) -> list[OperationMeta]:
    """The image on the host, before anything live changes. The operations returned tell
    whether this run changes it (their will_change and did_change)."""
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
        # Built here, not by the recreate's `compose up --build`: a build that fails then
        # leaves the live files and the container as they were. Built when anything is to go
        # live, as `up --build` did (BuildKit's cache makes it cheap); not returned: it
        # changes nothing unless those do, and must not make the snapshot run every time.
        ops.image_built(
            name=f"Build {config.image} on the host (from the staged compose.yaml)",
            project_dir=config.project_dir,
            compose=compose,
            _if=lambda: differ or any(op.did_change() for op in context),
        )
        return context
    machine = host.get_fact(Arch) or ""
    arch = images.ARCHES.get(machine, "")
    if not arch:
        why = images.UNSUPPORTED.get(machine, "no image is built for it")
        fail(f"host {config.host}: architecture {machine!r}: {why}")
        return []
    if planning_only():
        # A dry run builds nothing: it compares with what the controller has built already.
        local_or_none = images.built_for(config.image, arch)
        if local_or_none is None:
            return [
                server.shell(
                    name=f"Image {config.image}: build for linux/{arch} and ship (dry run: not built)",
                    commands=["true"],
                )
            ]
        local = local_or_none
    else:
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


def converge(
    config: HostConfig,
    compose: str,
    container: Any,
    image_ops: list[OperationMeta],
    differ: bool,
    host_files: rollback.HostFiles,
) -> None:
    running = bool(container) and bool(container[0]["State"]["Running"])

    def changed() -> bool:
        # The staged writes are not counted: .next may be ahead of what runs (see project_files).
        return differ or any(op.did_change() for op in image_ops)

    # Why --force-recreate: compose sees a new image or env, not a changed config.toml or secret.
    rollback.swapped_in_or_put_back(
        name="Files into place, container recreated (its image or files changed)",
        config=config,
        compose=compose,
        previous=bool(container),
        files=host_files,
        _if=changed,
    )
    if not running:
        docker.compose(
            name="Start the container (it is not running)",
            project_directory=config.project_dir,
            project_name=ops.PROJECT,
            files=[f"{config.project_dir}/compose.yaml"],
            compose_command=compose,
            _if=lambda: not changed(),
        )
    rollback.healthy_or_rolled_back(
        name="Health gate (healthy, or rolled back)",
        config=config,
        compose=compose,
        changed=changed,
        files=host_files,
        _if=lambda: changed() or not running,
    )


def nut_client() -> None:
    """A host of group nut_clients: only its NUT client (fleet/clients.py), no container."""
    name = host.data.get("ups_server")
    server = inventory.get_host(name, None) if isinstance(name, str) else None

    def get(key: str) -> Any:
        return host.data.get(key, clients.CLIENT_DEFAULTS[key])

    members = [(h.name, h.data.get("ups_server")) for h in inventory.get_group(clients.CLIENT_GROUP, [])]
    try:
        client = clients.load_client(host.name, get, None if server is None else server.data.get, members)
    except clients.ClientError as exc:
        fail(str(exc))
        return
    host_nut.client_upsmon(client)


@deploy("ups-nut-smart", data_defaults=data.DEFAULTS)
def rollout() -> None:
    if clients.CLIENT_GROUP in host.groups:
        nut_client()
        return
    try:
        config = data.load(
            host.name,
            host.data.get,
            os.environ,
            clients.members(inventory),
            lambda d: host.get_fact(ClientUsers, project_dir=d),
        )
    except data.DataError as exc:
        fail(str(exc))
        return
    compose = docker_engine(config)
    if compose is None:
        return
    on_battery = host.get_fact(OnBattery)
    if on_battery:
        # Why nothing at all: a recreate drops upsd's FSD and upsmon's view of the outage
        # (the Pi might then not halt), and files changed now would be live at the next
        # restart, untested. The host is reported, and a run after mains return does it.
        fail(
            f"host {config.host}: deferred: {', '.join(on_battery)} on battery (or in FSD): "
            "nothing is changed on a Pi while its UPS is on battery; run again once mains are back"
        )
        return
    container: Any = host.get_fact(DockerContainer, object_id=ops.CONTAINER)
    wanted = render.files(config)
    differ = files_differ(config, wanted, container)
    image_ops: list[OperationMeta] = []
    # The host's own NUT files (when the run manages them) go into the snapshot and come
    # back with it; the rollback restarts the host's upsmon on them.
    host_files = (
        rollback.HostFiles(host_nut.FILES, host_nut.restart_command()) if config.host_shutdown else rollback.HostFiles()
    )
    rollback.snapshot(config, container, lambda: differ or any(op.will_change for op in image_ops), host_files)
    project_files(config, wanted)
    image_ops += image(config, compose, differ)
    # Before the container's recreate and its gate: the gate wants this host's upsmon
    # logged in (it retries its login until the new container has its user). Written live
    # here, so the recreate's failure and the gate's rollback both put them back.
    host_nut.host_upsmon(config)
    converge(config, compose, container, image_ops, differ, host_files)
