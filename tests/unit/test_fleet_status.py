"""The fleet's status (fleet/report.py, fleet/status.py, the AgentStatus fact): pure, or
a temp dir; no host, no Docker."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fleet import report, status
from fleet.facts import AgentStatus
from fleet.report import Reading, Row, Target

NOW = datetime(2026, 12, 2, 14, 3, 0, tzinfo=UTC)


def agent_status(**more: Any) -> dict[str, Any]:
    """What `nut-reconcile status --json` says (reconcile/cli.py cmd_status), trimmed."""
    out: dict[str, Any] = {
        "agent": {"version": "0.1.0", "nut_version": "2.8.0", "host_name": "pi1"},
        "upsd": {"pid": 12, "error": None},
        "upses": {
            "my-ups": {"state": "ok", "status": "OL CHRG", "charge": 91.0, "runtime": 1200.0, "model": "Back-UPS"},
            "my-ups-2": {"state": "DATA-STALE", "status": None, "charge": None, "runtime": None, "model": None},
        },
        "recent": {"last_event": {"kind": "ups.plugged", "ups": "my-ups-2", "at": "2026-12-02T14:00:00Z"}, "heals": {}},
        "shutdown": {
            "armed": True,
            "broken": [],
            "fsd": [],
            "shutdown_ran": False,
            "power_cycle": {},
            "secondaries": [{"name": "pi1", "ups": "my-ups", "from": "host", "logged_in": True}],
        },
        "served": {},
        "devices": [],
    }
    out["recent"]["heals"] = {"my-ups": 2}
    out.update(more)
    return out


def lines(payload: dict[str, Any]) -> list[str]:
    return ["container: running", "agent: 0", *json.dumps(payload, indent=2).splitlines()]


def test_a_reading_is_the_agents_json_or_why_there_is_none() -> None:
    assert report.parse_reading(lines(agent_status())).status == agent_status()
    cases = {
        ("docker: none",): "no Docker here",
        ("container: missing",): "no container",
        ("container: exited",): "container not running (exited)",
        ("container: restarting",): "container not running (restarting)",
        ("container: running", "agent: 124"): "agent not answering (no status in 30 s)",
        ("container: running", "agent: 127"): "agent not answering (status exit 127)",
        ("container: running", "agent: 0", "Traceback ..."): "agent not answering (its status is not JSON)",
        ("container: running", "agent: 0", "[1, 2]"): "agent not answering (its status is not a JSON object)",
        ("engine: 124 ",): "the Docker engine did not answer in 20 s",
        ("engine: 1 Cannot connect to the Docker daemon",): "the Docker engine does not answer (Cannot connect",
        (): "no answer from the host",
    }
    for output, why in cases.items():
        reading = report.parse_reading(list(output))
        assert reading.status is None and (reading.why or "").startswith(why), (output, reading)


def fake_docker(tmp_path: Path, inspect: str, inspect_rc: int, exec_out: str = "", exec_rc: int = 0) -> dict[str, str]:
    """A `docker` on PATH that answers as told: the fact's own shell logic, run for real."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = inspect ]; then printf "%s\\n" {json.dumps(inspect)}; exit {inspect_rc}; fi\n'
        f'if [ "$1" = exec ]; then printf "%s\\n" {json.dumps(exec_out)}; exit {exec_rc}; fi\n'
        "exit 99\n"
    )
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize(
    ("inspect", "inspect_rc", "exec_out", "exec_rc", "why"),
    [
        ("running", 0, json.dumps(agent_status()), 0, None),
        ("Error: No such object: ups-nut-smart", 1, "", 0, "no container"),
        ("exited", 0, "", 0, "container not running (exited)"),
        ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock", 1, "", 0, "the Docker engine does not"),
        ("running", 0, "", 124, "agent not answering (no status in 30 s)"),
        ("running", 0, "OCI runtime exec failed", 126, "agent not answering (status exit 126)"),
    ],
)
def test_the_agent_status_facts_command_tells_each_case(
    tmp_path: Path, inspect: str, inspect_rc: int, exec_out: str, exec_rc: int, why: str | None
) -> None:
    env = fake_docker(tmp_path, inspect, inspect_rc, exec_out, exec_rc)
    fact = AgentStatus()
    done = subprocess.run(
        ["sh", "-c", fact.command("ups-nut-smart")], capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr  # never a failed fact: a row says why
    reading = fact.process(done.stdout.splitlines())
    if why is None:
        assert reading.status == agent_status() and reading.why is None
    else:
        assert reading.status is None and (reading.why or "").startswith(why), reading


def test_a_hosts_rows_one_per_ups_with_its_readings_the_event_on_its_ups() -> None:
    rows = report.rows("pi1", Reading(status=agent_status()), host_upsmon="running")
    assert [r.ups for r in rows] == ["my-ups", "my-ups-2"]
    first, second = rows
    assert (first.status, first.charge, first.runtime, first.heals) == ("OL CHRG", 91.0, 1200.0, 2)
    assert (first.agent, first.nut, first.armed, first.error) == ("0.1.0", "2.8.0", True, None)
    assert first.last_event is None and second.last_event == {
        "kind": "ups.plugged",
        "ups": "my-ups-2",
        "at": "2026-12-02T14:00:00Z",
    }
    assert second.state == "DATA-STALE" and second.heals == 0
    # An event of no one UPS (fsd.cleared names several): on the first row.
    event = {"kind": "fsd.cleared", "ups": None, "at": "2026-12-02T14:00:00Z"}
    rows = report.rows("pi1", Reading(status=agent_status(recent={"last_event": event, "heals": {}})))
    assert rows[0].last_event == event and rows[1].last_event is None


def test_a_pi_serving_no_ups_or_not_read_gets_one_row_saying_so() -> None:
    none = report.rows("pi2", Reading(status=agent_status(upses={})))
    assert [(r.host, r.ups, r.state, r.armed) for r in none] == [("pi2", "-", None, True)]
    down = report.rows("pi2", Reading(status=agent_status(upses={}, upsd={"pid": None, "error": "not answering"})))
    assert down[0].state == "upsd not answering"
    unread = report.rows("pi3", Reading(why="container not running (exited)"))
    assert unread == [Row("pi3", error="container not running (exited)")]
    assert report.exit_code(unread) == 1 and report.exit_code(none) == 0
    # An older agent (no versions, no readings): read, with what it says.
    old = report.rows("pi4", Reading(status={"served": {"my-ups": {"state": "ok", "status": "OL"}}}))
    assert [(r.ups, r.agent, r.armed) for r in old] == [("-", None, None)]


PI = [{"name": "pi1", "ups": "my-ups", "from": "host", "logged_in": False}]
NOT_IN = "pi1: the host's own upsmon is not logged in to my-ups from the host (172.17.0.1, ...)"


@pytest.mark.parametrize(
    ("shutdown", "host_upsmon", "armed", "why"),
    [
        ({"armed": True, "broken": [], "secondaries": PI}, "running", True, ()),
        ({"armed": True, "broken": []}, None, True, ()),  # host_shutdown off: not part of the path
        (
            {"armed": True, "broken": [], "secondaries": PI},
            "stopped",
            False,
            ("the Pi's own upsmon (nut-client) is stopped",),
        ),
        (
            {"armed": False, "broken": [NOT_IN], "secondaries": PI},
            "running",
            False,
            (NOT_IN,),
        ),
        ({"armed": False, "broken": []}, None, False, ("the agent's upsmon is not running",)),
        ({}, None, None, ("the agent does not say (an older agent?)",)),
        ({}, "absent", False, ("the Pi's own upsmon (nut-client) is absent",)),
    ],
)
def test_armed_is_the_containers_and_with_host_shutdown_the_pis_own_upsmon(
    shutdown: dict[str, Any], host_upsmon: str | None, armed: bool | None, why: tuple[str, ...]
) -> None:
    assert report.armed(shutdown, host_upsmon) == (armed, why)


def test_the_table_aligns_its_columns_and_says_why_for_a_host_not_read() -> None:
    quiet: dict[str, Any] = {"last_event": None, "heals": {}}
    rows = [
        *report.rows("pi1", Reading(status=agent_status()), "running"),
        *report.rows("pi2", Reading(status=agent_status(upses={}, recent=quiet)), "stopped"),
        *report.rows("pi3", Reading(why="no container")),
    ]
    assert report.table(rows, NOW) == (
        "HOST  UPS       STATUS      CHARGE  RUNTIME  LAST EVENT          HEALS  ARMED  AGENT  NUT\n"
        "pi1   my-ups    OL CHRG     91%     20m00s   -                   2      yes    0.1.0  2.8.0\n"
        "pi1   my-ups-2  data stale  -       -        ups.plugged 3m ago  0      yes    0.1.0  2.8.0\n"
        "pi2   -         -           -       -        -                   -      no     0.1.0  2.8.0\n"
        "pi3   -         could not be read: no container\n"
        "pi2: shutdown path not armed: the Pi's own upsmon (nut-client) is stopped\n"
    )
    # The event of a UPS that has no row of its own names it.
    alone = report.rows("pi2", Reading(status=agent_status(upses={})))
    assert report.cells(alone[0], NOW)[5] == "ups.plugged (my-ups-2) 3m ago"


def test_table_cells_durations_ages_and_times() -> None:
    assert [report.duration(s) for s in (0, 45, 60, 1200, 3900, -5)] == ["0s", "45s", "1m00s", "20m00s", "1h05m", "0s"]
    assert [report.age(s) for s in (5, 90, 7200, 3 * 86400)] == ["5s", "1m", "2h", "3d"]
    event = {"kind": "ups.held", "ups": "my-ups", "at": "2026-12-02T15:00:00Z"}  # ahead of NOW: the Pi's clock
    assert report.last_event_text(Row("pi1", ups="my-ups", last_event=event), NOW) == "ups.held 2026-12-02T15:00:00Z"
    other = Row("pi1", ups="my-ups", last_event={**event, "ups": "x", "at": "2026-12-01T14:03:00Z"})
    assert report.last_event_text(other, NOW) == "ups.held (x) 1d ago"
    assert report.status_text(Row("pi1", state="DRIVER-NOT-CONNECTED")) == "driver not connected"
    assert report.cells(Row("pi1", ups="u", state="ok", status="OB DISCHRG", charge=47.5), NOW)[2:4] == [
        "OB DISCHRG",
        "47.5%",
    ]


def test_the_json_form_holds_the_same_data_as_it_is() -> None:
    rows = [*report.rows("pi1", Reading(status=agent_status()), "running"), Row("pi3", error="no container")]
    data = json.loads(report.as_json(rows))
    assert data["unreadable"] == ["pi3"]
    assert [(r["host"], r["ups"]) for r in data["rows"]] == [("pi1", "my-ups"), ("pi1", "my-ups-2"), ("pi3", "-")]
    first = data["rows"][0]
    assert (first["status"], first["charge"], first["runtime"], first["armed"], first["agent"], first["nut"]) == (
        "OL CHRG",
        91.0,
        1200.0,
        True,
        "0.1.0",
        "2.8.0",
    )
    assert data["rows"][1]["last_event"]["at"] == "2026-12-02T14:00:00Z"
    assert data["rows"][2]["error"] == "no container"


def test_file_sd_lists_each_pi_with_its_labels_sorted() -> None:
    targets = [
        Target("pi2", "fd00::2", 9199, ("pis",)),
        Target("pi1", "192.168.1.10", 9199, ("canary", "pis")),
    ]
    assert report.file_sd(targets) == [
        {"targets": ["192.168.1.10:9199"], "labels": {"host": "pi1", "__meta_fleet_groups": ",canary,pis,"}},
        {"targets": ["[fd00::2]:9199"], "labels": {"host": "pi2", "__meta_fleet_groups": ",pis,"}},
    ]
    assert report.file_sd([]) == [] and json.loads(report.file_sd_text([])) == []
    # Published on metrics_listen: that address, else where SSH reaches the Pi, else its name.
    assert report.address("pi1", "192.168.1.10", "10.0.0.1") == "192.168.1.10"
    assert report.address("pi1", "0.0.0.0", "10.0.0.1") == "10.0.0.1"
    assert report.address("pi-rack.lan", "0.0.0.0", None) == "pi-rack.lan"


class FakeHost:
    """What fleet.status reads of a pyinfra Host: its name, groups and data."""

    def __init__(self, name: str, groups: tuple[str, ...], **data: Any) -> None:
        self.name, self.groups = name, groups
        self.data = data


def test_the_targets_of_an_inventory_are_its_pis_with_metrics_port_published_beyond_loopback() -> None:
    hosts: list[Any] = [
        FakeHost("pi1", ("all", "pis", "canary"), metrics_port=9199, metrics_listen="0.0.0.0", ssh_hostname="10.0.0.1"),
        FakeHost("pi2", ("pis",)),  # no metrics_port: not listed
        FakeHost("pi3", ("pis",), metrics_port="http"),  # bad: left out, and said
        FakeHost("nas", ("nut_clients",), metrics_port=9199),  # not a Pi
        FakeHost("pi4", ("pis",), metrics_port=9199, metrics_listen="192.168.1.14"),  # that address
        FakeHost("pi5", ("pis",), metrics_port=9199, ssh_hostname="10.0.0.5"),  # loopback only: left out, and said
        FakeHost("pi6", ("pis",), metrics_port=9199, metrics_listen="::1"),  # the same
    ]
    found, problems, notes = status.targets(hosts)
    assert found == [Target("pi1", "10.0.0.1", 9199, ("canary", "pis")), Target("pi4", "192.168.1.14", 9199, ("pis",))]
    assert problems == ["host pi3: data metrics_port: 'http' is not a port from 1 to 65535"]
    assert [note.split(": not a target")[0] for note in notes] == [
        "host pi5: /metrics is published on 127.0.0.1 only (the Pi itself)",
        "host pi6: /metrics is published on ::1 only (the Pi itself)",
    ]
    assert all('set metrics_listen (e.g. "0.0.0.0")' in note for note in notes)


def test_the_file_sd_file_is_written_atomically_and_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "prometheus" / "targets.json"
    text = report.file_sd_text([Target("pi1", "10.0.0.1", 9199)])
    assert status.write_if_changed(path, text)
    assert path.read_text() == text and stat.S_IMODE(path.stat().st_mode) == 0o644
    inode, mtime = path.stat().st_ino, path.stat().st_mtime_ns
    assert not status.write_if_changed(path, text)  # the same content: not rewritten
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime)
    other = report.file_sd_text([Target("pi1", "10.0.0.1", 9200)])
    assert status.write_if_changed(path, other)
    assert path.read_text() == other and path.stat().st_ino != inode  # a new file renamed over it
    assert sorted(p.name for p in path.parent.iterdir()) == ["targets.json"]  # no temp file left


def test_a_file_sd_write_that_fails_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "targets.json"
    path.write_text("[]\n")

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="No space left"):
        status.write_if_changed(path, report.file_sd_text([Target("pi1", "10.0.0.1", 9199)]))
    assert path.read_text() == "[]\n" and sorted(p.name for p in tmp_path.iterdir()) == ["targets.json"]


def test_the_status_command_says_what_is_wrong_with_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert status.main(["no/such/inventory.py"]) == 2
    assert "no inventory file no/such/inventory.py" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        status.main(["--bogus"])
    assert done.value.code == 2
