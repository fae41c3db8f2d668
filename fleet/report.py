"""The fleet's status, pure (fleet/status.py reads the hosts and prints): what one host's
AgentStatus fact read (`Reading`), the table's rows (`rows`: one per Pi and UPS), the table
and its JSON form, and Prometheus's file_sd target list (`file_sd`). No I/O here.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ENGINE_TIMEOUT = 20  # seconds for `docker inspect` on the host (fleet/facts.py AgentStatus)
AGENT_TIMEOUT = 30  # seconds for `nut-reconcile status --json` inside the container


@dataclass(frozen=True)
class Reading:
    """What the AgentStatus fact read on one host: the agent's `status --json`, or why none."""

    status: Mapping[str, Any] | None = None
    why: str | None = None  # when status is None: no container, not running, no answer ...


def parse_reading(lines: Sequence[str]) -> Reading:
    """The AgentStatus fact's output (fleet/facts.py): one line `docker: none`, `engine: <rc>
    <message>` or `container: <state>`; for a running container then `agent: <rc>` and the
    agent's JSON."""
    if not lines:
        return Reading(why="no answer from the host")
    head, _, rest = lines[0].strip().partition(": ")
    if head == "docker":
        return Reading(why="no Docker here")
    if head == "engine":
        rc, _, message = rest.partition(" ")
        if rc == "124":
            return Reading(why=f"the Docker engine did not answer in {ENGINE_TIMEOUT} s")
        return Reading(why=f"the Docker engine does not answer ({message.strip() or 'exit ' + rc})")
    if head != "container":
        return Reading(why="the host's answer is not the fact's")
    if rest == "missing":
        return Reading(why="no container")
    if rest != "running":
        return Reading(why=f"container not running ({rest or 'unknown'})")
    rc = lines[1].strip().removeprefix("agent: ") if len(lines) > 1 else ""
    if rc == "124":
        return Reading(why=f"agent not answering (no status in {AGENT_TIMEOUT} s)")
    if rc != "0":
        # 126/127: no such command (an image older than `status --json`), else the agent's own error.
        return Reading(why=f"agent not answering (status exit {rc or 'unknown'})")
    try:
        status = json.loads("\n".join(lines[2:]))
    except ValueError:
        return Reading(why="agent not answering (its status is not JSON)")
    if not isinstance(status, dict):
        return Reading(why="agent not answering (its status is not a JSON object)")
    return Reading(status=status)


@dataclass(frozen=True)
class Row:
    """One row of the table: a Pi and one UPS it serves (ups "-": none, or not read)."""

    host: str
    ups: str = "-"
    state: str | None = None  # upsd's: "ok", else why not (DATA-STALE, DRIVER-NOT-CONNECTED)
    status: str | None = None  # ups.status, e.g. "OL CHRG"
    charge: float | None = None  # percent
    runtime: float | None = None  # seconds
    last_event: Mapping[str, Any] | None = None  # {"kind", "ups", "at"}: on the row of its UPS
    heals: int | None = None  # stale drivers restarted, for this UPS
    armed: bool | None = None  # the host's shutdown path (None: the agent does not say)
    armed_why: tuple[str, ...] = ()  # why it is not armed
    agent: str | None = None  # the agent's version
    nut: str | None = None  # NUT's (upsd's) version
    error: str | None = None  # why the host could not be read (then nothing else is known)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def armed(shutdown: Mapping[str, Any], host_upsmon: str | None) -> tuple[bool | None, tuple[str, ...]]:
    """Whether a low battery halts this Pi (and its nut_clients hosts), and why not. The
    container's `shutdown.armed`, the one rule of decide/health.shutdown_path: its upsmon
    runs and watches every UPS, and each expected secondary is logged in to the UPS it must
    watch from where it must come (the Pi's own upsmon from the Pi, each nut_clients host
    from its addresses), none on a placeholder. AND, with host_shutdown (`host_upsmon`, the
    HostUpsmon fact; None: host_shutdown off, not part of the path), the Pi's own upsmon
    running, and the agent checking its login (a secondary `from` the host in its
    `secondaries`). An agent that lists no `secondaries` only counted logins, so any NAS
    logged in stood in for the Pi's upsmon: with host_shutdown its word is not enough."""
    said = shutdown.get("armed")
    why = [str(b) for b in shutdown.get("broken") or () if isinstance(b, str)]
    if isinstance(shutdown.get("unarmed"), str):
        why.append(shutdown["unarmed"])  # nothing broken, but nothing halts the host either
    if host_upsmon is not None and host_upsmon != "running":
        why.append(f"the Pi's own upsmon (nut-client) is {host_upsmon}")
    if not isinstance(said, bool):
        return (False, tuple(why)) if why else (None, ("the agent does not say (an older agent?)",))
    listed = shutdown.get("secondaries")
    if host_upsmon is not None and said and not why:
        if not isinstance(listed, list):
            return None, ("the agent counts logins: it cannot tell the Pi's own upsmon from another (an older agent)",)
        # The Pi's own: from the host, or (nut_listen on one LAN address) marked this_host.
        if not any(isinstance(s, dict) and (s.get("from") == "host" or s.get("this_host") is True) for s in listed):
            why.append("the agent does not check the Pi's own upsmon's login (no [[shutdown.secondary]] from the host)")
    if said and not why:
        return True, ()
    return False, tuple(why or ["the agent's upsmon is not running"])


def rows(host: str, reading: Reading, host_upsmon: str | None = None) -> list[Row]:
    """The rows of one host: one per UPS its agent serves (sorted), or one with "-" when it
    serves none, or one saying why it could not be read."""
    if reading.status is None:
        return [Row(host, error=reading.why or "no answer")]
    status = reading.status
    agent = _dict(status.get("agent"))
    upses = _dict(status.get("upses"))
    recent = _dict(status.get("recent"))
    heals = _dict(recent.get("heals"))
    last = recent.get("last_event") if isinstance(recent.get("last_event"), dict) else None
    is_armed, why = armed(_dict(status.get("shutdown")), host_upsmon)
    version, nut = _text(agent.get("version")), _text(agent.get("nut_version"))
    names = sorted(upses)
    if not names:
        # upsd not answering lists no UPS either: say which it is.
        down = _text(_dict(status.get("upsd")).get("error"))
        state = f"upsd {down}" if down else None
        return [Row(host, state=state, last_event=last, armed=is_armed, armed_why=why, agent=version, nut=nut)]
    # The last event goes on the row of its UPS (else the first: an event of no one UPS).
    where = last.get("ups") if last is not None and last.get("ups") in names else names[0]
    out = []
    for name in names:
        view = _dict(upses[name])
        out.append(
            Row(
                host,
                ups=name,
                state=_text(view.get("state")),
                status=_text(view.get("status")),
                charge=_number(view.get("charge")),
                runtime=_number(view.get("runtime")),
                last_event=last if name == where else None,
                heals=_count(heals.get(name, 0)),
                armed=is_armed,
                armed_why=why,
                agent=version,
                nut=nut,
            )
        )
    return out


def exit_code(table_rows: Iterable[Row]) -> int:
    """1 when a host could not be read, else 0 (a UPS on battery or not armed is data)."""
    return 1 if any(row.error for row in table_rows) else 0


# --- the table ------------------------------------------------------------------------------

COLUMNS = ("HOST", "UPS", "STATUS", "CHARGE", "RUNTIME", "LAST EVENT", "HEALS", "ARMED", "AGENT", "NUT")


def duration(seconds: float) -> str:
    """A UPS's runtime as the table shows it: 45s, 20m00s, 1h05m."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def age(seconds: float) -> str:
    """How long ago: 45s, 12m, 3h, 2d (coarse on purpose: a glance)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _when(at: Any, now: datetime) -> str:
    try:
        then = datetime.strptime(str(at), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return str(at)
    ago = (now - then).total_seconds()
    # A time ahead of the controller's clock (the Pi's is off) is shown as it is.
    return f"{age(ago)} ago" if ago >= 0 else str(at)


def last_event_text(row: Row, now: datetime) -> str:
    event = row.last_event
    if event is None:
        return "-"
    ups = event.get("ups")
    other = f" ({ups})" if isinstance(ups, str) and ups != row.ups else ""
    return f"{event.get('kind')}{other} {_when(event.get('at'), now)}"


def status_text(row: Row) -> str:
    if row.state == "ok":
        return row.status or "ok"
    if row.state is None:
        return row.status or "-"
    # upsd's error code, readable: DATA-STALE -> data stale.
    return row.state.lower().replace("-", " ") if re.fullmatch(r"[A-Z-]+", row.state) else row.state


def _yes(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def cells(row: Row, now: datetime) -> list[str]:
    """The row's cells, in COLUMNS' order (a row that could not be read: host and ups only)."""
    if row.error:
        return [row.host, row.ups]
    return [
        row.host,
        row.ups,
        status_text(row),
        "-" if row.charge is None else f"{row.charge:g}%",
        "-" if row.runtime is None else duration(row.runtime),
        last_event_text(row, now),
        "-" if row.heals is None else str(row.heals),
        _yes(row.armed),
        row.agent or "-",
        row.nut or "-",
    ]


def table(table_rows: Sequence[Row], now: datetime) -> str:
    """Plain text, aligned columns, then a line per host whose shutdown path is not armed
    (why). A host that could not be read: its name, then why, over the other columns."""
    lines = [list(COLUMNS)] + [cells(row, now) for row in table_rows]
    widths = [max(len(line[i]) for line in lines if i < len(line)) for i in range(len(COLUMNS))]

    def joined(line: list[str]) -> str:
        return "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line))

    out = [joined(lines[0]).rstrip()]
    for row, line in zip(table_rows, lines[1:], strict=True):
        out.append(f"{joined(line)}  could not be read: {row.error}" if row.error else joined(line).rstrip())
    told = set()
    for row in table_rows:
        if row.armed is False and row.host not in told:
            told.add(row.host)
            out.append(f"{row.host}: shutdown path not armed: {'; '.join(row.armed_why)}")
    return "\n".join(out) + "\n"


def as_json(table_rows: Sequence[Row]) -> str:
    """The same data as the table, as JSON: every row's fields as they are (seconds,
    percent, the event with its UTC time), and the hosts that could not be read."""
    payload = {
        "rows": [dataclasses.asdict(row) for row in table_rows],
        "unreadable": sorted({row.host for row in table_rows if row.error}),
    }
    return json.dumps(payload, indent=2) + "\n"


# --- Prometheus file_sd ----------------------------------------------------------------------

UNSPECIFIED = ("0.0.0.0", "::")


@dataclass(frozen=True)
class Target:
    """A Pi's /metrics, for Prometheus."""

    host: str  # the inventory name
    address: str  # where Prometheus reaches it
    port: int  # its metrics_port
    groups: tuple[str, ...] = ()  # its inventory groups


def address(name: str, listen: str, ssh_hostname: Any) -> str:
    """Where Prometheus reaches a Pi's /metrics: it is published on `listen` (its
    metrics_listen), so that address when it is one; published on every address (0.0.0.0),
    the Pi's ssh_hostname, else its inventory name (as nut_clients hosts find its upsd:
    fleet/clients.py)."""
    if listen not in UNSPECIFIED:
        return listen
    return ssh_hostname if isinstance(ssh_hostname, str) and ssh_hostname else name


def file_sd(targets: Iterable[Target]) -> list[dict[str, Any]]:
    """Prometheus's file_sd list: one target group per Pi, so that each has its own labels:
    `host` (the inventory name: it joins node_exporter's series of the same Pi), and the
    inventory groups as `__meta_fleet_groups` (",canary,pis,", Consul's tag style), which
    relabel_configs can keep or drop by and which never reaches a stored series."""
    out = []
    for target in sorted(targets, key=lambda t: t.host):
        where = f"[{target.address}]" if ":" in target.address else target.address
        labels = {"host": target.host}
        if target.groups:
            labels["__meta_fleet_groups"] = "," + ",".join(sorted(target.groups)) + ","
        out.append({"targets": [f"{where}:{target.port}"], "labels": labels})
    return out


def file_sd_text(targets: Iterable[Target]) -> str:
    return json.dumps(file_sd(targets), indent=2) + "\n"
