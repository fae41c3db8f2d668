"""The host's own NUT client: what halts the Pi (host data host_shutdown, default true).

A container cannot power its host off. So the host runs the distribution's upsmon
(nut-client) as a *secondary* of the container's upsd: on FSD (set by the container's
upsmon, the primary, on low battery) it logs out and runs SHUTDOWNCMD (host_shutdown_cmd).
It logs in with a user of its own (fleet/config.py HOST_USER) whose password is derived
from the controller's fleet key (fleet/keys.py): the same file on both sides, never shown.

The steps, each idempotent (a second run changes nothing):
1. nut-client installed (Debian, Raspberry Pi OS, Ubuntu: the same package name)
2. /etc/nut/nut.conf MODE=netclient (0640 root:nut)
3. /etc/nut/upsmon.conf (0640 root:nut, its content never printed: it holds the password)
4. the service running and enabled: nut-monitor.service where systemd booted the host
   (Debian's nut-client.service is only an alias of it), else the SysV script nut-client;
   restarted when a file changed, and started again when upsmon is not running (it exits
   after its SHUTDOWNCMD: a rehearsal with a harmless host_shutdown_cmd leaves it exited)
"""

from __future__ import annotations

from io import StringIO

from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.files import Directory
from pyinfra.operations import apt, files, server, systemd, sysvinit

from fleet import ops, render
from fleet.clients import ClientConfig
from fleet.config import HostConfig
from fleet.facts import HostUpsmon

SERVICE = "nut-client"  # the SysV script (and the name users know)
# Why the real name: pyinfra's systemd facts key on a unit's Id, which for the alias
# nut-client.service is nut-monitor.service (so a restart of the alias was never planned),
# and systemd refuses `enable` on an alias name.
UNIT = "nut-monitor.service"
# The files host_upsmon writes: the rollback keeps them and puts them back (fleet/rollback.py).
FILES = ("/etc/nut/nut.conf", "/etc/nut/upsmon.conf")


def installed_as_netclient(what: str) -> OperationMeta:
    """Steps 1 and 2: the package, and nut.conf's MODE=netclient (only upsmon runs here)."""
    apt.packages(
        name=f"NUT client {what} (its upsmon halts this host on FSD or low battery)",
        packages=["nut-client"],
        update=True,
        cache_time=3600,
    )
    return files.put(
        name="/etc/nut/nut.conf (MODE=netclient)",
        src=StringIO(render.host_nut_conf()),
        dest="/etc/nut/nut.conf",
        mode="0640",
        user="root",
        group="nut",
    )


def host_upsmon(config: HostConfig) -> list[OperationMeta]:
    if not config.host_shutdown:
        return []
    changes = [
        installed_as_netclient("on the host"),
        ops.secret_file(
            name="Host /etc/nut/upsmon.conf (a secondary of the container's upsd)",
            path="/etc/nut/upsmon.conf",
            content=render.host_upsmon(config),
            mode="640",
            group="nut",
        ),
    ]
    running("Host upsmon", changes)
    return changes


SYSV_RESTART = (
    f"timeout 30 sh -c '/etc/init.d/{SERVICE} stop; "
    'while pid=$(cat /run/nut/upsmon.pid 2>/dev/null) && kill -0 "$pid" 2>/dev/null; do sleep 0.2; done\'; '
    f"/etc/init.d/{SERVICE} start"
)


def running(what: str, changes: list[OperationMeta]) -> None:
    """The service running and enabled, restarted when one of `changes` changes a file or
    when no upsmon runs (HostUpsmon: its PID file, or systemd's main PID), as after a drill.
    Why not server.service: it picks systemd wherever systemctl is installed, and fails
    where systemd is not the init (a container, WSL); /run/systemd/system is systemd's own
    test that it booted the host (sd_booted), else Debian's init script runs."""
    changed = any(c.will_change for c in changes)
    # Read before the package is installed, this is "absent": then the restart below also
    # replaces the upsmon the package's own install started on its stock files.
    down = host.get_fact(HostUpsmon) != "running"
    restart = changed or down
    why = "its files changed" if changed else "upsmon was not running"
    if host.get_fact(Directory, path="/run/systemd/system"):
        # Why restart, not start, when down: `systemctl start` of a unit that is active (its
        # upsmon started by the package's install, or still stopping) loads no new file.
        systemd.service(
            name=f"{what} ({UNIT}) running and enabled",
            service=UNIT,
            running=None if restart else True,
            enabled=True,
        )
        if restart:
            # (systemctl waits for the old upsmon to exit: its stop is the unit's own job)
            server.shell(name=f"{what} ({UNIT}) restarted: {why}", commands=[f"timeout 120 systemctl restart {UNIT}"])
        return
    name = f"{what} ({SERVICE}) running"
    sysvinit.service(name=name, service=SERVICE, running=None if restart else True, enabled=True)
    if restart:
        # Why not sysvinit's restarted=True: Debian's init script does not wait for the old
        # upsmon to exit, so its start sees it, refuses, and then no upsmon runs at all.
        # Stop, await the old process's end (30 s at most), then start.
        server.shell(
            name=f"{name}: restarted ({why}; once the old upsmon has exited)",
            commands=[SYSV_RESTART],
        )


def restart_command() -> str:
    """A command that restarts the host's upsmon, systemd or not (told on the host when it
    runs, as `running` tells it): for the rollback, which puts FILES back."""
    return f"if [ -d /run/systemd/system ]; then timeout 120 systemctl restart {UNIT}; else {SYSV_RESTART}; fi"


def client_upsmon(client: ClientConfig) -> None:
    """A nut_clients host (fleet/clients.py): nut-client as a secondary of its Pi's upsd,
    with upssched's timer when shutdown_after is set; the same steps as the Pi's own."""
    changes = [installed_as_netclient(f"on {client.ups_server}'s UPS")]
    wanted = render.client_files(client)
    for name, content in wanted.items():
        if name == "upsmon.conf":
            changes.append(
                ops.secret_file(
                    name=f"/etc/nut/upsmon.conf (a secondary of {client.target})",
                    path="/etc/nut/upsmon.conf",
                    content=content,
                    mode="640",
                    group="nut",
                )
            )
        else:
            changes.append(
                files.put(
                    name=f"/etc/nut/{name} (halt after {client.shutdown_after} s on battery)",
                    src=StringIO(content),
                    dest=f"/etc/nut/{name}",
                    mode="0750" if name == "upssched-cmd" else "0640",
                    user="root",
                    group="nut",
                )
            )
    if "upssched.conf" not in wanted:
        changes.append(
            files.file(name="No upssched.conf (no shutdown_after)", path="/etc/nut/upssched.conf", present=False)
        )
    running("upsmon", changes)
