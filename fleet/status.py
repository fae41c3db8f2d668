"""The fleet's status: one row per Pi and UPS (status, charge, runtime, last event, heals,
whether the Pi's shutdown path is armed, the agent's and NUT's versions), read from each
Pi's agent with pyinfra facts (fleet/facts.py AgentStatus, HostUpsmon). docs/fleet.md:

    python -m fleet.status inventory                 # the table
    python -m fleet.status inventory --json          # the same data, as JSON
    python -m fleet.status inventory --file-sd prometheus/targets.json
    pyinfra -y inventory fleet/status.py             # the table from pyinfra's CLI
    STATUS_FORMAT=json pyinfra -y inventory fleet/status.py

Why a command of its own: pyinfra's CLI keeps --json for its own output and passes no
option to a deploy file. `python -m fleet.status` drives pyinfra's API the way its CLI
does (pyinfra_cli's make_inventory reads the inventory file and group_data/; State,
connect_all, get_facts). A host that could not be read (not reachable, no container, not
running, the agent not answering) is a row saying why, and the exit code is then 1.

Run by pyinfra as a deploy file, this file reads each host in its own greenlet (pyinfra
runs a deploy file once per host) and the last one prints the table on stdout (pyinfra logs
on stderr); a host that could not be read fails, so pyinfra exits 1. pyinfra asks to
confirm a deploy without -y (even one with nothing to do): give -y, or --dry.

The rows and table are pure: fleet/report.py.
"""

from __future__ import annotations

import argparse
import fnmatch
import ipaddress
import logging
import os
import sys
import tempfile
import weakref
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import click
from pyinfra import logger
from pyinfra.api.config import Config
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.facts import FactBase, get_fact, get_facts
from pyinfra.api.host import Host
from pyinfra.api.inventory import Inventory
from pyinfra.api.state import State
from pyinfra.context import ctx_config, ctx_host, ctx_inventory, ctx_state

# Why pyinfra_cli: its make_inventory is how `pyinfra INVENTORY ...` reads an inventory
# file and group_data/ (the API has no such reader). It ships without type hints.
from pyinfra_cli.inventory import make_inventory  # type: ignore[import-untyped]
from pyinfra_cli.log import setup_logging  # type: ignore[import-untyped]

from fleet import data, ops, report
from fleet.clients import CLIENT_GROUP
from fleet.config import METRICS_LOOPBACK
from fleet.facts import AgentStatus, HostUpsmon
from fleet.report import Reading, Row, Target

FORMATS = ("table", "json")


# pyinfra's context and get_facts carry no type hints: these say what they take and give.
def _current_state() -> State | None:
    return cast("State | None", ctx_state.get())  # type: ignore[no-untyped-call]


def _current_host() -> Host | None:
    return cast("Host | None", ctx_host.get())  # type: ignore[no-untyped-call]


def _set_context(run: State, config: Config) -> None:
    ctx_state.set(run)  # type: ignore[no-untyped-call]
    ctx_config.set(config)  # type: ignore[no-untyped-call]


def _set_inventory(inventory: Inventory) -> None:
    ctx_inventory.set(inventory)  # type: ignore[no-untyped-call]


def _facts(run: State, fact: type[FactBase[Any]], **kwargs: Any) -> dict[Host, Any]:
    """pyinfra's get_facts: the fact on every active host, in parallel. apply_failed_hosts
    is off: a host whose fact fails keeps its row, and the others go on."""
    found = get_facts(run, fact, kwargs=kwargs, apply_failed_hosts=False)  # type: ignore[no-untyped-call]
    return cast("dict[Host, Any]", found)


def value(host: Host, key: str) -> Any:
    """A host's data value, checked as the rollout checks it (fleet/data.py, the same
    default); raises data.DataError naming the host and the key."""
    try:
        return data.KEYS[key](host.data.get(key, data.DEFAULTS[key]))
    except ValueError as exc:
        raise data.DataError(host.name, key, str(exc)) from None


def pis(hosts: Iterable[Host]) -> list[Host]:
    """The hosts that run the agent: all but group nut_clients (they have no container)."""
    return sorted((h for h in hosts if CLIENT_GROUP not in h.groups), key=lambda h: h.name)


def host_rows(host: Host, reading: Reading | None, upsmon: str | None) -> list[Row]:
    """A Pi's rows from its facts (reading None: pyinfra could not connect to it)."""
    if reading is None:
        return [Row(host.name, error="not reachable over SSH (pyinfra's error is on stderr)")]
    try:
        shutdown = value(host, "host_shutdown")
    except data.DataError as exc:
        return [Row(host.name, error=str(exc))]
    # The Pi's own upsmon is part of its shutdown path only with host_shutdown (fleet/host_nut.py).
    return report.rows(host.name, reading, (upsmon or "unknown") if shutdown else None)


def render(rows: Sequence[Row], form: str) -> str:
    return report.as_json(rows) if form == "json" else report.table(rows, datetime.now(UTC))


# --- Prometheus file_sd ----------------------------------------------------------------------


def targets(hosts: Iterable[Host]) -> tuple[list[Target], list[str], list[str]]:
    """The Pis with metrics_port, as Prometheus targets; the problems (bad data: that host
    is left out; the rollout refuses the same data); and the notes: the Pis whose metrics
    are published on loopback only (no metrics_listen), which no Prometheus elsewhere can
    scrape, so they are left out too."""
    found, problems, notes = [], [], []
    for host in pis(hosts):
        try:
            port = value(host, "metrics_port")
            listen = value(host, "metrics_listen") or METRICS_LOOPBACK
        except data.DataError as exc:
            problems.append(str(exc))
            continue
        if port is None:
            continue
        if ipaddress.ip_address(listen).is_loopback:
            notes.append(
                f"host {host.name}: /metrics is published on {listen} only (the Pi itself): not a target; "
                'set metrics_listen (e.g. "0.0.0.0") for a Prometheus elsewhere'
            )
            continue
        where = report.address(host.name, listen, host.data.get("ssh_hostname"))
        groups = tuple(sorted(set(host.groups) - {"all"}))
        found.append(Target(host.name, where, port, groups))
    return found, problems, notes


def write_if_changed(path: Path, text: str) -> bool:
    """Write `text` to `path` atomically (a temp file in the same directory, fsync, rename,
    fsync of the directory), only when its content differs: Prometheus watches the file
    and must never read half of one. Returns whether it was written."""
    content = text.encode()
    try:
        if path.read_bytes() == content:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # Prometheus runs as a user of its own; mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # Why the directory too: the rename is only durable once the directory entry is.
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return True


def write_file_sd(hosts: Iterable[Host], path: Path) -> tuple[bool, list[str], list[str]]:
    """The inventory's file_sd list written to `path` if it changed: (written, problems,
    notes), as `targets` says them. Raises OSError when it cannot be written."""
    found, problems, notes = targets(hosts)
    return write_if_changed(path, report.file_sd_text(found)), problems, notes


_DONE: weakref.WeakSet[State] = weakref.WeakSet()  # runs that wrote FLEET_FILE_SD already


def file_sd_in_deploy() -> None:
    """deploy.py: with FLEET_FILE_SD=<path> in the controller's environment, the inventory's
    Prometheus targets are written there (if they changed), once per run, never by --dry.
    Why all hosts, whatever --limit: a canary run must not drop the other Pis from Prometheus."""
    path = os.environ.get("FLEET_FILE_SD")
    run = _current_state()
    if not path or run is None or run in _DONE:
        return
    _DONE.add(run)
    hosts = list(run.inventory)
    if "--dry" in sys.argv[1:]:  # as fleet/steps.planning_only: a dry run changes nothing
        logger.info(f"--> Prometheus targets (FLEET_FILE_SD): {path} is not written by a dry run")
        return
    try:
        written, _, notes = write_file_sd(hosts, Path(path))
    except OSError as exc:
        # In deploy code, before any host is changed: the run stops, naming the setting.
        raise PyinfraError(f"FLEET_FILE_SD={path}: cannot write it: {exc}") from None
    for note in notes:
        logger.info(f"--> Prometheus targets (FLEET_FILE_SD): {note}")
    if written:
        logger.info(f"--> Prometheus targets (FLEET_FILE_SD): wrote {path}")


# --- pyinfra INVENTORY fleet/status.py -------------------------------------------------------

_SEEN: weakref.WeakKeyDictionary[State, dict[str, list[Row]]] = weakref.WeakKeyDictionary()


def as_deploy() -> None:
    """One host's part of `pyinfra -y INVENTORY fleet/status.py` (see the module's doc)."""
    run, me = _current_state(), _current_host()
    assert run is not None and me is not None, "run by pyinfra as a deploy file"
    form = os.environ.get("STATUS_FORMAT") or "table"
    if form not in FORMATS:
        raise PyinfraError(f"STATUS_FORMAT={form!r} is not one of {', '.join(FORMATS)}")
    seen = _SEEN.setdefault(run, {})
    mine: list[Row] = []
    if CLIENT_GROUP not in me.groups:
        reading = get_fact(run, me, AgentStatus, kwargs={"container": ops.CONTAINER}, apply_failed_hosts=False)
        upsmon = get_fact(run, me, HostUpsmon, apply_failed_hosts=False)
        mine = host_rows(me, reading, upsmon)
    seen[me.name] = mine
    # The hosts' greenlets take turns (gevent): exactly one finds every host seen, and prints.
    if set(seen) >= {h.name for h in run.inventory.get_active_hosts()}:
        rows = [row for name in sorted(seen) for row in seen[name]]
        click.echo(render(rows, form), nl=False)
    for row in mine:
        if row.error:
            ops.refuse(name="Status of this Pi", message=f"host {me.name}: could not be read: {row.error}")


# --- python -m fleet.status -------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fleet.status",
        description="The fleet's status: a row per Pi and UPS. Exit 1 when a Pi could not be read.",
    )
    parser.add_argument("inventory", help="a pyinfra inventory (e.g. inventory, or site-b.py), as pyinfra takes it")
    parser.add_argument("--json", action="store_true", help="the same data as JSON")
    parser.add_argument(
        "--file-sd",
        type=Path,
        metavar="PATH",
        help="also write Prometheus's file_sd targets there (each Pi with metrics_port off loopback), if they changed",
    )
    parser.add_argument(
        "--limit", action="append", default=[], metavar="NAME", help="only these hosts or groups (globs), as pyinfra's"
    )
    return parser


def limited(inventory: Inventory, patterns: Sequence[str]) -> list[Host]:
    """pyinfra's --limit: each pattern a group name, else a glob of host names."""
    if not patterns:
        return list(inventory)
    chosen: dict[str, Host] = {}
    for pattern in patterns:
        group = inventory.get_group(pattern, None)
        for host in group if group is not None else [h for h in inventory if fnmatch.fnmatch(h.name, pattern)]:
            chosen[host.name] = host
    return list(chosen.values())


def read(run: State, hosts: Sequence[Host]) -> list[Row]:
    """Connect (pyinfra's connect_all) and read every host's facts, in parallel."""
    try:
        connect_all(run)
    except PyinfraError:
        pass  # "No hosts remaining!": none connected; each gets its row below
    active = set(run.active_hosts)
    if not active:
        return [row for host in hosts for row in host_rows(host, None, None)]
    readings = _facts(run, AgentStatus, container=ops.CONTAINER)
    upsmons = _facts(run, HostUpsmon)
    return [
        row
        for host in hosts
        for row in host_rows(host, readings.get(host) if host in active else None, upsmons.get(host))
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    form = "json" if args.json else "table"
    if args.json:
        os.environ.setdefault("PYINFRA_PROGRESS", "off")  # as pyinfra --json: nothing but JSON
    if args.inventory.endswith(".py") and not Path(args.inventory).is_file():
        print(f"fleet.status: error: no inventory file {args.inventory}", file=sys.stderr)
        return 2
    if Path(args.inventory).is_dir():
        # pyinfra would open it as an inventory file (IsADirectoryError): say so instead.
        print(f"fleet.status: error: {args.inventory} is a directory, not an inventory file", file=sys.stderr)
        return 2
    # pyinfra's own log on stderr, from warnings up (a host not reached, a fact that failed).
    setup_logging(logging.WARNING)
    # As pyinfra's CLI: the state and config in pyinfra's context, then the inventory (its
    # group_data files are run with the context set).
    run = State(check_for_changes=False)
    run.cwd = os.getcwd()
    config = Config()  # type: ignore[no-untyped-call]
    _set_context(run, config)
    try:
        inventory = make_inventory(args.inventory, cwd=run.cwd)
    except click.ClickException as exc:
        print(f"fleet.status: error: inventory {args.inventory}: {exc.format_message()}", file=sys.stderr)
        return 2
    _set_inventory(inventory)
    rc = 0
    if args.file_sd is not None:
        try:
            written, problems, notes = write_file_sd(inventory, args.file_sd)
        except OSError as exc:
            print(f"fleet.status: error: --file-sd {args.file_sd}: cannot write it: {exc}", file=sys.stderr)
            return 2
        for problem in problems:
            print(f"fleet.status: {problem} (left out of {args.file_sd})", file=sys.stderr)
            rc = 1
        for note in notes:
            print(f"fleet.status: {note}", file=sys.stderr)  # as asked for: exit 0
        print(f"fleet.status: {args.file_sd}: {'written' if written else 'unchanged'}", file=sys.stderr)
    hosts = pis(limited(inventory, args.limit))
    if not hosts:
        print(f"fleet.status: error: no Pi in {args.inventory}" + (" (--limit)" if args.limit else ""), file=sys.stderr)
        return 2
    run.init(inventory, config, initial_limit=hosts)
    try:
        rows = read(run, hosts)
    finally:
        disconnect_all(run)
    sys.stdout.write(render(rows, form))
    return max(rc, report.exit_code(rows))


if __name__ == "__main__":
    sys.exit(main())
elif __name__ == "builtins" and _current_host() is not None:
    # `pyinfra INVENTORY fleet/status.py`: pyinfra exec()s this file (once per host), so its
    # namespace is not the module's; the module's own as_deploy keeps the run's rows.
    from fleet import status as _module

    _module.as_deploy()
