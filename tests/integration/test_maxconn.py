"""upsd's MAXCONN against the open-files limit, with Debian's real upsd (NUT 2.8.0).

NUT 2.8.0 and 2.8.4 refuse to start when MAXCONN exceeds the soft limit (_SC_OPEN_MAX);
the agent keeps the two in step (decide/limits.py). Each case runs `apply` under its own
limits (prlimit), as a container started with `--ulimit nofile=SOFT:HARD` would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconcile.decide.limits import RESERVE
from reconcile.nutsyntax import tokenize
from testbed.nut import CLI_TIMEOUT, Sandbox, nut_processes

pytestmark = pytest.mark.nut

NOT_CONNECTED = "Error: Driver not connected"


def apply_with_nofile(box: Sandbox, soft: int, hard: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["prlimit", f"--nofile={soft}:{hard}", "--", sys.executable, "-m", "reconcile", "apply"],
        env=box.env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def maxconn_lines(box: Sandbox) -> list[str]:
    text = (box.conf / "upsd.conf").read_text()
    return [" ".join(tokens) for tokens in tokenize(text) if tokens[0] == "MAXCONN"]


def upsd_nofile(box: Sandbox) -> tuple[int, int]:
    """The soft and hard limit of open files of the running upsd, from /proc."""
    (pid,) = [p for p, comm in nut_processes(box.conf) if comm == "upsd"]
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open-files line in /proc/{pid}/limits")


def test_upsd_starts_with_maxconn_1024_and_the_soft_limit_raised_to_fit(sandbox: Sandbox) -> None:
    # Debian's own default for a login (1024 soft) would do; 256 shows the raise.
    result = apply_with_nofile(sandbox, 256, 4096)
    assert result.returncode == 0, result.stdout + result.stderr
    assert maxconn_lines(sandbox) == ["MAXCONN 1024"]
    assert sandbox.upsc("my-ups", "ups.status") == (1, NOT_CONNECTED)  # upsd 2.8.0 took it and serves
    assert upsd_nofile(sandbox) == (1024 + RESERVE, 4096)  # raised to what upsd needs, no more
    assert f"event=upsd.nofile soft={1024 + RESERVE} was=256 maxconn=1024" in result.stdout


def test_a_hard_limit_below_maxconn_lowers_it_with_a_warning_and_upsd_serves(sandbox: Sandbox) -> None:
    result = apply_with_nofile(sandbox, 128, 300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert maxconn_lines(sandbox) == [f"MAXCONN {300 - RESERVE}"]
    assert sandbox.upsc("my-ups", "ups.status") == (1, NOT_CONNECTED)
    assert upsd_nofile(sandbox) == (300, 300)
    warning = f"level=warning event=upsd.maxconn maxconn={300 - RESERVE} asked=1024 nofile=300 "
    assert warning in result.stdout and "raise it to 1040" in result.stdout
    assert warning in sandbox.log.read_text()  # in the hotplug log too, not only on stdout


def test_a_configured_maxconn_is_written_as_it_is(sandbox: Sandbox) -> None:
    config = sandbox.root / "config.toml"
    config.write_text(config.read_text().replace("[upsd]\n", "[upsd]\nmaxconn = 64\n"))
    result = apply_with_nofile(sandbox, 1024, 1024)
    assert result.returncode == 0, result.stdout + result.stderr
    assert maxconn_lines(sandbox) == ["MAXCONN 64"]
    assert sandbox.upsc("my-ups", "ups.status") == (1, NOT_CONNECTED)
    assert upsd_nofile(sandbox) == (1024, 1024)  # enough already: left alone


def test_a_hard_limit_with_no_room_is_refused_before_anything_is_written(sandbox: Sandbox) -> None:
    result = apply_with_nofile(sandbox, 24, 24)
    assert result.returncode == 2
    assert result.stderr.startswith("nut-reconcile: error: RLIMIT_NOFILE: the hard limit of open files is 24")
    assert not (sandbox.conf / "upsd.conf").exists() and nut_processes(sandbox.conf) == []
