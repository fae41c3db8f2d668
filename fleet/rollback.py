"""The rollback, in one place: what runs is kept before a run changes anything
(`snapshot`), and the health gate after it puts the host back on that when the new
container is not healthy (`healthy_or_rolled_back`).

What is kept, in <project_dir>/.rollback/: the image the container ran (tagged ROLLBACK_TAG
by its ID; the name it ran under in .rollback/image), the host's own NUT files the run writes
(fleet/host_nut.py: nut.conf, upsmon.conf, under .rollback/host/ by their full path) and,
when they are the ones it was created from, its compose.yaml, .env, config.toml and secrets dir.

The staged files go live here too (`swapped_in_or_put_back`): when `compose up` fails, the
same command puts the previous files back and starts the previous container again.
"""

from __future__ import annotations

import shlex
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyinfra.api.command import FunctionCommand, StringCommand
from pyinfra.api.exceptions import OperationError
from pyinfra.api.operation import operation
from pyinfra.context import host
from pyinfra.operations import server

from fleet.config import HostConfig
from fleet.digest import label_of
from fleet.facts import FilesDigest
from fleet.ops import CONTAINER, PROJECT, STAGE, compose_up, reporting, uses_sudo

ROLLBACK_TAG = "ups-nut-smart-rollback:previous"
LIVE = "compose.yaml .env config.toml"  # the project dir's files but the secrets
CRASH_LOOP = 2  # restarts that make a container a failure at once
HOST_KEPT = ".rollback/host"  # the host's files, each at its full path below it
PREVIOUS = ".previous"  # <project_dir>/.previous: the live files while the staged ones go live
MARK = "ups-nut-smart-rollback:"  # how the swap's script tells the controller what it did


@dataclass(frozen=True)
class HostFiles:
    """The host's own files a run writes outside the project dir (fleet/host_nut.py's
    nut.conf and upsmon.conf) and the command that restarts the service reading them: kept
    in the snapshot, and put back with the project's files."""

    paths: tuple[str, ...] = ()
    restart: str = "true"


def _host_restored(files: HostFiles) -> str:
    """A command (run in the project dir) that puts the kept host files back, and restarts
    their service only when one of them differed: the running upsmon then reads what is on
    disk. A file the snapshot did not find (a host without NUT's client before) is left."""
    if not files.paths:
        return "true"
    kept = " ".join(shlex.quote(path) for path in files.paths)
    return (
        f'( r=; for f in {kept}; do k={HOST_KEPT}$f; if [ -f "$k" ]; then'
        ' cmp -s "$k" "$f" || r=1; cp -a "$k" "$f" || exit 1; fi; done;'
        f' if [ -n "$r" ]; then {files.restart}; fi )'
    )


def _sh(host: Any, command: str, sudo: bool) -> tuple[bool, str]:
    ok, output = host.run_shell_command(StringCommand(command), _sudo=sudo)
    return ok, "\n".join([*output.stdout_lines, *output.stderr_lines])


def _served(host: Any, config: HostConfig, sudo: bool) -> tuple[str, int]:
    """The UPS name and port the live files give (UPS_NAME in .env, [upsd] listen in
    config.toml): what a container put back on the previous files serves, which need not be
    this run's (a changed nut_port). This run's values when the files do not say."""
    here = shlex.quote(config.project_dir)
    name, port = config.ups_name, config.nut_port
    ok, env = _sh(host, f"sed -n 's/^UPS_NAME=//p' {here}/.env", sudo)
    if ok and env.strip():
        name = env.strip().splitlines()[0]
    ok, text = _sh(host, f"cat {here}/config.toml", sudo)  # (no secret: it names secrets files)
    try:
        listen = tomllib.loads(text).get("upsd", {}).get("listen") if ok else None
        if isinstance(listen, list) and listen and str(listen[0]).rpartition(":")[2].isdigit():
            port = int(str(listen[0]).rpartition(":")[2])
    except tomllib.TOMLDecodeError:
        pass
    return name, port


def _healthy(
    host: Any, config: HostConfig, sudo: bool, timeout: float, served: tuple[str, int] | None = None
) -> str | None:
    """None once the container is healthy and upsc answers from inside it (a Pi with no
    UPS answers "Driver not connected"); else why not, when the time is up or it crash-loops.
    `served`: the UPS name and port to ask (default: this run's)."""
    ups, port = served or (config.ups_name, config.nut_port)
    upsc = f"{ups}@127.0.0.1:{port}"
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


def _retagged() -> str:
    """The name the previous container ran under, on its image again (a load or a pull of
    this run moved the name to the new one). Why no tag for a digest reference
    (name@sha256:...): Docker refuses to tag one, and needs none: the image it names is still
    here, by that digest."""
    return (
        'ref="$(cat .rollback/image 2>/dev/null || true)"'
        f' && case "$ref" in ""|*@*) ;; *) docker tag {ROLLBACK_TAG} "$ref" ;; esac'
    )


def _restaged() -> str:
    """The staged files as the live ones again, so that the next run's diff is against them."""
    copied = f'for f in {LIVE} secrets; do [ ! -e "$f" ] || cp -a "$f" {STAGE}/; done'
    return f"rm -rf {STAGE} && mkdir -m 0700 {STAGE} && {copied}"


def _rollback(host: Any, config: HostConfig, compose: str, files: HostFiles, sudo: bool) -> str:
    here = shlex.quote(config.project_dir)
    restore = (
        f"cd {here} && test -f .rollback/compose.yaml"
        " && cp -a .rollback/compose.yaml .rollback/.env .rollback/config.toml ."
        " && rm -rf secrets"
        " && if [ -d .rollback/secrets ]; then cp -a .rollback/secrets secrets; else mkdir -m 0700 secrets; fi"
        f" && {_retagged()}"
        f" && {compose_up(config.project_dir, compose)}"
    )
    ok, _ = _sh(host, restore, sudo)
    if not ok:
        # Never `down`: an unhealthy NUT server still serves what it can; none serves nothing.
        # The host's files stay as this run wrote them: they go with the container left running.
        _, kept = _sh(host, f"cat {here}/.rollback/why 2>/dev/null || true", sudo)
        return (
            f"no earlier deployment to go back to ({kept.strip() or 'its restore failed'}):"
            " the new container is left running"
        )
    # After the container's recreate: the host's upsmon, restarted on its previous file, logs
    # in to the previous container (its user and password as they were).
    host_ok, said = _sh(host, f"cd {here} && {_host_restored(files)}", sudo)
    host_note = "" if host_ok else f" (but putting back the host's own files failed: {said.strip()[-200:]})"
    _sh(host, f"cd {here} && {_restaged()}", sudo)
    why = _healthy(host, config, sudo, config.gate_timeout, _served(host, config, sudo))
    if why is None:
        return f"rolled back to the previous image and files: healthy again{host_note}"
    return f"rolled back to the previous image and files, but that is not healthy either ({why}){host_note}"


def _gate(
    state: Any, host: Any, config: HostConfig, compose: str, changed: Callable[[], bool], files: HostFiles, sudo: bool
) -> None:
    why = _healthy(host, config, sudo, config.gate_timeout)
    here = shlex.quote(config.project_dir)
    if why is None:
        # The snapshot's passwords are old now (a rotated secret must not linger): the
        # secrets files, and the host's upsmon.conf (it holds the host's password).
        _sh(host, f"rm -rf {here}/.rollback/secrets {here}/{HOST_KEPT}", sudo)
        return
    _, logs = _sh(host, f"timeout 20 docker logs --tail 15 {CONTAINER} 2>&1", sudo)
    if not changed():
        # Nothing of this run is to blame (the container was only started): .rollback/ may
        # be weeks old, and going back to it would undo later runs.
        raise OperationError(
            f"health gate failed ({why}); nothing changed in this run, so nothing is rolled back:\n{logs}"
        )
    report = _rollback(host, config, compose, files, sudo)
    raise OperationError(f"health gate failed ({why}); {report}. Last log lines of the failed container:\n{logs}")


@operation(is_idempotent=False)
def healthy_or_rolled_back(config: HostConfig, compose: str, changed: Callable[[], bool], files: HostFiles) -> Any:
    """
    The container is healthy and `upsc <ups_name>@127.0.0.1:<nut_port>` answers from inside
    it within the host's gate_timeout (default 120 s); otherwise the host is put back on its
    previous image and files (the snapshot taken before this run changed anything), its own
    NUT files too (its upsmon restarted on them), brought up healthy again, and reported
    failed with the failed container's last log lines.

    + config: the host's validated data
    + compose: how compose is invoked on the host
    + changed: whether this run changed the host (else a failure is reported, not rolled back)
    + files: the host's own files the run wrote (fleet/host_nut.py), and their service

    Once healthy, the snapshot's secrets are removed: a rotated password is not kept.
    """
    yield FunctionCommand(reporting(_gate), (config, compose, changed, files, uses_sudo()), {})


def _swap_script(config: HostConfig, compose: str, previous: bool, files: HostFiles) -> str:
    """The one command that puts the staged files live and recreates the container, and,
    when that fails, puts the previous files back in the same command (never a second one the
    controller might not get to send: a lost connection, a killed run). In order:

    1. the live compose.yaml, .env, config.toml and secrets/ copied to .previous/
    2. the staged ones (.next/) copied over them, `compose up -d --force-recreate`;
       success: .previous/ removed, done
    3. on failure (a port in use, an engine error): each file copied back over the new one
       (in place: a container that still runs keeps its bind-mounted config.toml) or removed
       when there was none; .next/ reset to them (the next run's diff is against them)
    4. if a container ran before this run: the name it ran under back on its image
       (ROLLBACK_TAG, kept by the snapshot), the containers compose left created or stopped
       removed (v2 leaves the new one created, 1.29 the old one stopped under a temporary
       name), and `compose up -d` on the previous files without --force-recreate: a previous
       container compose never touched runs on, one it removed is created again
    5. the host's own NUT files put back from the snapshot, its upsmon restarted if they
       differed (after the container: it logs in to the previous one)

    Each step says what it did on a line of its own (MARK ...), for the report."""
    here = shlex.quote(config.project_dir)
    keep = f"{LIVE} secrets"
    stale = (
        f"docker ps -aq --filter label=com.docker.compose.project={PROJECT}"
        " --filter status=created --filter status=exited --filter status=dead | xargs -r docker rm -f >/dev/null"
    )
    started = (
        f"{_retagged()} && {{ {stale}; }} && {compose_up(config.project_dir, compose, recreate=False)}"
        f" && echo '{MARK} started' || echo '{MARK} not-started'"
        if previous
        else f"echo '{MARK} none-ran'"
    )
    return "\n".join(
        [
            f"cd {here} || exit 1",
            f"rm -rf {PREVIOUS} && mkdir -m 0700 {PREVIOUS} || exit 1",
            f'for f in {keep}; do if [ -e "$f" ]; then cp -a "$f" {PREVIOUS}/ || exit 1; fi; done',
            f"if cp -a {STAGE}/compose.yaml {STAGE}/.env {STAGE}/config.toml . && rm -rf secrets"
            f" && cp -a {STAGE}/secrets secrets && {compose_up(config.project_dir, compose)}"
            f" > {PREVIOUS}/up.log 2>&1; then",
            f"  rm -rf {PREVIOUS}; exit 0",
            "fi",
            # What compose said, for the report (its last lines: the error), before the rest
            # of this script says more.
            # (Terminal escapes and carriage returns out: compose 1.29 draws its progress.)
            f"echo '{MARK} failed'; tr '\\r' '\\n' < {PREVIOUS}/up.log | sed 's/\\x1b\\[[0-9;]*[A-Za-z]//g'"
            f" | grep -v '^[ .]*$' | tail -n 3 | sed 's/^/{MARK} said /'",
            "put=1",
            f'for f in {LIVE}; do if [ -e "{PREVIOUS}/$f" ]; then cp -a "{PREVIOUS}/$f" . || put=;'
            ' else rm -f "$f"; fi; done',
            f"rm -rf secrets; if [ -d {PREVIOUS}/secrets ]; then cp -a {PREVIOUS}/secrets secrets || put=; fi",
            f"if [ -n \"$put\" ]; then echo '{MARK} files-back'; {_restaged()}; rm -rf {PREVIOUS}; fi",
            started,
            f"if {_host_restored(files)}; then echo '{MARK} host-back'; else echo '{MARK} host-not-back'; fi",
            "exit 1",
        ]
    )


def _swap(
    state: Any, host: Any, config: HostConfig, compose: str, previous: bool, files: HostFiles, sudo: bool
) -> None:
    ok, output = host.run_shell_command(StringCommand(_swap_script(config, compose, previous, files)), _sudo=sudo)
    if ok:
        return
    lines = [line.removeprefix(MARK).strip() for line in output.stdout_lines if line.startswith(MARK)]
    marks = set(lines)
    # (dict: once each; compose 1.29 says its error twice)
    said = list(dict.fromkeys(line.removeprefix("said ").strip() for line in lines if line.startswith("said ")))
    failed = f"compose up failed: {' / '.join(said) or 'no output'}"
    if "failed" not in marks:
        said = [line for line in output.stderr_lines if line.strip()][-2:]
        raise OperationError(
            f"the staged files did not go live: keeping the live ones aside failed ({' / '.join(said) or 'no output'});"
            " nothing was changed"
        )
    report = [failed]
    report.append(
        "the previous compose.yaml, .env, config.toml and secrets are back"
        if "files-back" in marks
        else f"putting the previous files back failed: they are in {config.project_dir}/{PREVIOUS}"
    )
    if files.paths:
        report.append(
            "the host's own NUT files are as before"
            if "host-back" in marks
            else "putting the host's own NUT files back failed"
        )
    if "none-ran" in marks:
        report.append("no container ran here before this run, so none is started again")
    elif "started" not in marks:
        report.append("but the previous container could not be started again")
    else:
        why = _healthy(host, config, sudo, config.gate_timeout, _served(host, config, sudo))
        report.append(
            "the previous container runs on them: healthy"
            if why is None
            else f"the previous container runs on them, but it is not healthy ({why})"
        )
    raise OperationError("; ".join(report))


@operation(is_idempotent=False)
def swapped_in_or_put_back(config: HostConfig, compose: str, previous: bool, files: HostFiles) -> Any:
    """
    The staged files (<project_dir>/.next) moved into place and the container recreated, in
    one command: the live files are never new while the container still is old. When
    `compose up` fails, the same command puts the previous files back (the host's own NUT
    files too) and starts the previous container again on them; then the host fails, saying
    whether that container is healthy.

    + config: the host's validated data
    + compose: how compose is invoked on the host
    + previous: whether a container ran before this run (else none is started again)
    + files: the host's own files the run wrote (fleet/host_nut.py), and their service
    """
    yield FunctionCommand(reporting(_swap), (config, compose, previous, files, uses_sudo()), {})


def snapshot(config: HostConfig, container: Any, will_change: Callable[[], bool], files: HostFiles) -> None:
    """What runs now, kept in .rollback/ for the health gate, taken only when this run will
    change something: the running container's image, by ID, the host's own NUT files (as
    they are: they are live whatever ran), and the container's files, but only when those
    on disk are the ones it was created from (its label, fleet/digest.py). Files edited by
    hand since, or a failed run's, never ran: no files are kept then, and a failed gate
    leaves the new container running (.rollback/why says why)."""
    here = shlex.quote(config.project_dir)
    keep = f"cd {here} && rm -rf .rollback && mkdir -m 0700 .rollback"
    # cp -a: their modes and owners too (upsmon.conf is root:nut 0640; .rollback/ is 0700).
    host_kept = " && ".join(
        f"{{ [ ! -f {shlex.quote(path)} ] || {{ mkdir -p {HOST_KEPT}{shlex.quote(path.rsplit('/', 1)[0])}"
        f" && cp -a {shlex.quote(path)} {HOST_KEPT}{shlex.quote(path)}; }}; }}"
        for path in files.paths
    )
    keep += f" && {host_kept}" if host_kept else ""
    if not container:
        why = "no container ran before this run"
        commands = [f"mkdir -p {here} && {keep} && echo {shlex.quote(why)} > .rollback/why"]
    else:
        image_id, image_ref = container[0]["Image"], container[0]["Config"]["Image"]
        ran = label_of(container)
        live = host.get_fact(FilesDigest, project_dir=config.project_dir)
        image = f"docker tag {shlex.quote(image_id)} {ROLLBACK_TAG} && echo {shlex.quote(image_ref)} > .rollback/image"
        if ran and live == ran:
            files_kept = f"cp -a {LIVE} .rollback/ && {{ [ ! -d secrets ] || cp -a secrets .rollback/; }}"
        else:
            why = "the files on disk are not the ones the container was created from" + (
                " (changed by hand since?)" if ran else " (it predates the rollout's files label)"
            )
            files_kept = f"echo {shlex.quote(why)} > .rollback/why"
        commands = [f"{keep} && {files_kept} && {image}"]
    server.shell(name="Keep what runs now, for a rollback", commands=commands, _if=will_change)
