"""The health verdict: decided (decide/health.verdict, pure), recorded by `run` at every
tick (act/verdict.VerdictFile) and read by the image's HEALTHCHECK (docker/nut-health.sh,
run here with sh against files in a temp dir; their age set with os.utime, no sleeps)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from reconcile import cli, logfmt, settings
from reconcile.act.verdict import VerdictFile
from reconcile.cycle import Agent
from reconcile.decide import health
from reconcile.decide.decision import Decision, Observation, decide
from reconcile.decide.supervision import Supervision
from reconcile.model import Daemon, ProcId, Served, Verdict
from reconcile.userconfig import HOST_UPSMON, Secondary
from testbed import REPO
from tests.unit.test_decision_and_events import device, inputs, observation

OL = Served("ok", "OL")
WATCHING = "MINSUPPLIES 1\nMONITOR my-ups@127.0.0.1:3493 1 upsmon pw primary\n"
SCRIPT = REPO / "docker" / "nut-health.sh"


def decision(served: dict[str, Served] | None, upsd: bool = True, upsmon: bool = True) -> Decision:
    """One UPS (my-ups) on the bus; upsd and upsmon ours and running as asked, upsmon.conf watching it."""
    d = decide(observation(device(), served=served), Supervision(), inputs())
    daemon = Daemon(ProcId(4242, 1), ())
    owned = dataclasses.replace(d.owned, upsd=daemon if upsd else None, upsmon=daemon if upsmon else None)
    files = dict(d.actual.files)
    files["upsmon.conf"] = dataclasses.replace(files["upsmon.conf"], content=WATCHING)
    return dataclasses.replace(d, owned=owned, actual=dataclasses.replace(d.actual, files=files))


# --- decide/health.verdict ---------------------------------------------------------------


def test_the_verdict_is_healthy_when_upsd_serves_every_ups_and_the_shutdown_path_is_whole() -> None:
    assert health.verdict(decision({"my-ups": OL}), ()) == Verdict(True, "healthy: upsd serves my-ups")
    # A second UPS upsd serves (not on this bus) is named too; none at all says so.
    both = decision({"my-ups": OL, "my-ups-2": OL})
    assert health.verdict(both, ()).text == "healthy: upsd serves my-ups, my-ups-2"
    empty = dataclasses.replace(decision({}), attached=())
    assert health.verdict(empty, ()) == Verdict(True, "healthy: upsd serves no UPS")


def test_the_verdict_says_upsd_is_not_answering_and_whether_it_runs() -> None:
    running = health.verdict(decision(None), ())
    assert running == Verdict(False, "unhealthy: upsd is not answering")
    gone = health.verdict(decision(None, upsd=False), ())
    assert gone == Verdict(False, "unhealthy: upsd is not answering (not running)")


def test_the_verdict_names_each_ups_without_fresh_data() -> None:
    stale = health.verdict(decision({"my-ups": Served("DATA-STALE", None)}), ())
    assert stale == Verdict(False, "unhealthy: my-ups DATA-STALE")
    assert health.verdict(decision({}), ()).text == "unhealthy: my-ups not served"
    d = decision({"my-ups": OL})
    held = dataclasses.replace(d, attached=(), held=d.attached)
    assert health.verdict(held, ()).text == "unhealthy: my-ups held: vanished while on battery"


def test_the_verdict_names_the_breaks_in_the_shutdown_path() -> None:
    no_upsmon = health.verdict(decision({"my-ups": OL}, upsmon=False), ())
    assert no_upsmon == Verdict(False, "unhealthy: shutdown path: upsmon is not running")
    # The host's own upsmon expected: logged in from the host (tests/unit/test_shutdown_path.py).
    host = (Secondary(HOST_UPSMON, "my-ups", from_host=True),)
    alone = dataclasses.replace(decision({"my-ups": OL}), obs=observed(logins={"my-ups": ("127.0.0.1",)}))
    lonely = health.verdict(alone, host)
    assert not lonely.healthy
    assert lonely.text.startswith("unhealthy: shutdown path: the host's own upsmon is not logged in to my-ups")
    both = dataclasses.replace(alone, obs=observed(logins={"my-ups": ("127.0.0.1", "172.17.0.1")}))
    assert health.verdict(both, host).healthy


def test_a_failed_pass_is_one_unhealthy_line() -> None:
    v = health.failed("OSError: [Errno 21] Is a directory:\n 'lock'")
    assert v == Verdict(False, "unhealthy: the agent's last pass failed: OSError: [Errno 21] Is a directory: 'lock'")
    assert not health.STOPPED.healthy and health.STOPPED.text == "unhealthy: the agent stopped"


def observed(logins: dict[str, tuple[str, ...]]) -> Observation:
    """One UPS (my-ups) on line, upsd listing `logins`, the container's gateway 172.17.0.1."""
    obs = observation(device(), served={"my-ups": OL})
    return dataclasses.replace(obs, logins=logins, gateways=("172.17.0.1",))


def fake_agent(d: Decision, secondaries: tuple[Secondary, ...]) -> Agent:
    observer = SimpleNamespace(ask_commands=True, scan_bus=lambda: ())
    return cast(
        Agent,
        SimpleNamespace(
            observer=observer,
            reconcile_once=lambda _bus, act: SimpleNamespace(decision=d),
            settings=SimpleNamespace(ups_name="my-ups"),
            inputs=SimpleNamespace(user=SimpleNamespace(shutdown_secondaries=secondaries)),
        ),
    )


@pytest.mark.parametrize(
    ("d", "secondaries", "code", "line"),
    [
        (decision({"my-ups": OL}), (), 0, "healthy: upsd serves my-ups"),
        (decision(None, upsd=False), (), 1, "unhealthy: upsd is not answering (not running)"),
        (decision({"my-ups": Served("DATA-STALE", None)}), (), 1, "unhealthy: my-ups DATA-STALE"),
        (decision({"my-ups": OL}, upsmon=False), (), 1, "unhealthy: shutdown path: upsmon is not running"),
        (
            decision({"my-ups": OL}),
            (Secondary("nas", "my-ups"),),
            1,
            "unhealthy: shutdown path: upsd did not list its logins (LIST CLIENT): not known whether nas logged in",
        ),
    ],
)
def test_cmd_health_prints_the_verdict_and_exits_by_it(
    d: Decision, secondaries: tuple[Secondary, ...], code: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = fake_agent(d, secondaries)
    assert cli.cmd_health(agent) == code
    assert capsys.readouterr().out == line + "\n"
    assert agent.observer.ask_commands is False  # health needs no LIST CMD


# --- act/verdict.VerdictFile ---------------------------------------------------------------


def test_the_health_file_is_in_nuts_state_dir() -> None:
    s = settings.load({"NUT_STATEPATH": "/run/nut-x"})
    assert s.health_file == Path("/run/nut-x/nut-reconcile.health")
    assert settings.load({}).health_file == Path("/var/run/nut/nut-reconcile.health")  # the script's default


def test_a_verdict_is_written_once_and_an_unchanged_one_only_bumps_the_mtime(tmp_path: Path) -> None:
    path = tmp_path / "nut-reconcile.health"
    record = VerdictFile(path)
    record.record(Verdict(True, "healthy: upsd serves my-ups"))
    assert path.read_text() == "healthy: upsd serves my-ups\n"
    assert (path.stat().st_mode & 0o777) == 0o644
    inode = path.stat().st_ino

    old = time.time() - 3600
    os.utime(path, (old, old))
    record.record(Verdict(True, "healthy: upsd serves my-ups"))
    st = path.stat()
    assert st.st_mtime > old + 3000 and st.st_ino == inode  # touched, not written again
    assert path.read_text() == "healthy: upsd serves my-ups\n"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left

    record.record(Verdict(False, "unhealthy: my-ups DATA-STALE"))
    assert path.read_text() == "unhealthy: my-ups DATA-STALE\n"
    assert path.stat().st_ino != inode  # replaced atomically (a new file renamed over it)


def test_an_unchanged_verdict_is_not_read_back_and_a_removed_file_is_written_again(tmp_path: Path) -> None:
    path = tmp_path / "nut-reconcile.health"
    record = VerdictFile(path)
    record.record(health.STOPPED)
    path.write_text("unhealthy: edited behind its back\n")
    record.record(health.STOPPED)
    assert path.read_text() == "unhealthy: edited behind its back\n"  # what it wrote is kept in memory
    path.unlink()
    record.record(health.STOPPED)
    assert path.read_text() == "unhealthy: the agent stopped\n"


def test_a_verdict_that_cannot_be_written_is_logged_once_and_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setattr(logfmt, "warning", lambda event, **f: logged.append(("warning", event, f)))
    monkeypatch.setattr(logfmt, "info", lambda event, **f: logged.append(("info", event, f)))
    path = tmp_path / "missing-dir" / "nut-reconcile.health"
    record = VerdictFile(path)
    for text in ("healthy: upsd serves my-ups", "healthy: upsd serves my-ups", "unhealthy: my-ups not served"):
        record.record(Verdict(text.startswith("healthy"), text))
    assert [(level, event) for level, event, _ in logged] == [("warning", "health.record")]
    assert logged[0][2]["file"] == str(path) and logged[0][2]["error"] == "No such file or directory"

    path.parent.mkdir()
    record.record(Verdict(False, "unhealthy: my-ups not served"))
    assert path.read_text() == "unhealthy: my-ups not served\n"
    assert [(level, event) for level, event, _ in logged][1:] == [("info", "health.recorded")]


# --- docker/nut-health.sh ------------------------------------------------------------------


def nut_health(**env: str) -> subprocess.CompletedProcess[str]:
    """The script as Docker runs it, with only the environment given (and PATH)."""
    return subprocess.run(
        ["sh", str(SCRIPT)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def verdict_at(tmp_path: Path, text: str, age: float = 0.0) -> Path:
    path = tmp_path / "nut-reconcile.health"
    path.write_text(text)
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_the_script_prints_a_fresh_verdict_and_exits_0_only_when_healthy(tmp_path: Path) -> None:
    path = verdict_at(tmp_path, "healthy: upsd serves my-ups\n")
    result = nut_health(HEALTH_FILE=str(path))
    assert (result.returncode, result.stdout, result.stderr) == (0, "healthy: upsd serves my-ups\n", "")
    verdict_at(tmp_path, "unhealthy: my-ups DATA-STALE\n")
    result = nut_health(HEALTH_FILE=str(path))
    assert (result.returncode, result.stdout, result.stderr) == (1, "unhealthy: my-ups DATA-STALE\n", "")
    # Its default: the agent's own, in NUT_STATEPATH.
    verdict_at(tmp_path, "healthy: upsd serves no UPS\n")
    assert nut_health(NUT_STATEPATH=str(tmp_path)).returncode == 0


def test_the_script_fails_without_a_verdict(tmp_path: Path) -> None:
    missing = tmp_path / "nut-reconcile.health"
    result = nut_health(HEALTH_FILE=str(missing))
    assert result.returncode == 1
    assert result.stdout == f"unhealthy: no verdict from the agent at {missing} (is `nut-reconcile run` running?)\n"
    verdict_at(tmp_path, "")
    result = nut_health(HEALTH_FILE=str(missing))
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout == f"unhealthy: cannot read the agent's verdict at {missing} (empty or not readable)\n"
    assert (
        nut_health(HEALTH_FILE="relative/file").stdout
        == "unhealthy: HEALTH_FILE=relative/file is not an absolute path\n"
    )


def test_the_script_fails_when_the_verdict_is_older_than_health_max_age(tmp_path: Path) -> None:
    path = verdict_at(tmp_path, "healthy: upsd serves my-ups\n", age=120)
    result = nut_health(HEALTH_FILE=str(path))
    assert result.returncode == 1, result.stdout
    # (12[01]: a second may tick over between the utime and the check)
    assert re.fullmatch(r"unhealthy: the agent's last verdict is 12[01] s old \(its loop is stuck\?\)\n", result.stdout)
    assert nut_health(HEALTH_FILE=str(path), HEALTH_MAX_AGE="200").returncode == 0
    assert nut_health(HEALTH_FILE=str(path), HEALTH_MAX_AGE="100").returncode == 1
    # Its default: 60 s, or twice SCAN_INTERVAL or RESCAN_INTERVAL (whole seconds) when longer.
    assert nut_health(HEALTH_FILE=str(path), SCAN_INTERVAL="2").returncode == 1
    assert nut_health(HEALTH_FILE=str(path), SCAN_INTERVAL="2", RESCAN_INTERVAL="61").returncode == 0
    assert nut_health(HEALTH_FILE=str(path), SCAN_INTERVAL="90.5").returncode == 0
    assert nut_health(HEALTH_FILE=str(path), SCAN_INTERVAL="08").returncode == 1  # 8 s, not an octal error
    assert nut_health(HEALTH_FILE=str(path), SCAN_INTERVAL="0.5").returncode == 1
    fresh = verdict_at(tmp_path, "healthy: upsd serves my-ups\n", age=50)
    assert nut_health(HEALTH_FILE=str(fresh)).returncode == 0


@pytest.mark.parametrize("value", ["0", "010", "08", "-5", "1.5", "1e3", "abc", " 60", "1234567890"])
def test_the_script_refuses_a_bad_health_max_age_with_exit_1(tmp_path: Path, value: str) -> None:
    path = verdict_at(tmp_path, "healthy: upsd serves my-ups\n")
    result = nut_health(HEALTH_FILE=str(path), HEALTH_MAX_AGE=value)
    assert result.returncode == 1  # never 2: Docker reserves it
    assert result.stdout == f"unhealthy: HEALTH_MAX_AGE={value} is not a positive whole number of seconds (e.g. 60)\n"
