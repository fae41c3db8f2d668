"""upsmon's NOTIFYCMD as NUT 2.8.4 and NUT 2.8.6 each run it: the rendered upsmon.conf read
with the project's NUT tokenizer, the program run both ways for real, and the notice caught
on the agent's socket (a real Unix datagram socket) and accepted by the agent's own check.

- NUT 2.8.6 (PR #3499): NOTIFYCMD's first token is the program's path (spaces allowed in
  it), exec'd with the notice as the one argument after it; no shell.
- NUT 2.8.4: NOTIFYCMD's one token goes through `system("<token> \\"<notice>\\"")`, i.e.
  `/bin/sh -c` (clients/upsmon.c, notify()).

Both set NOTIFYTYPE and UPSNAME and keep the rest of upsmon's environment, which the agent
started with NUT_STATEPATH (settings.nut_env).
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconcile import notifycmd, settings
from reconcile.decide.desired import build
from reconcile.decide.render import render_file
from reconcile.model import Secrets, Ups, UsbDevice
from reconcile.nutsyntax import tokenize
from reconcile.outputs.notify import parse_datagram
from reconcile.settings import Settings, SettingsError, load
from reconcile.userconfig import UserConfig
from testbed import REPO

TIMEOUT = 10.0  # seconds: a ceiling for one short Python start, not a speed target
NOTICE = "UPS my-ups@127.0.0.1:3493 on battery"  # NUT's stock ONBATT text (NOTIFYMSG)


@pytest.fixture
def statepath() -> Iterator[Path]:
    # A space in NUT_STATEPATH: the socket's path reaches no shell and no NUT word any more.
    # Why not tmp_path: a Unix socket's path must fit 107 bytes.
    with tempfile.TemporaryDirectory(prefix="nut state ") as where:
        yield Path(where)


def agent(statepath: Path) -> Settings:
    return load(
        {
            "NOTIFY_URLS": "json://127.0.0.1/hook",
            "NUT_STATEPATH": str(statepath),
            "RECONCILE_STATE": str(statepath.parent / "agent"),
        }
    )


def upsmon_conf(s: Settings) -> str:
    """upsmon.conf as the agent renders it with these settings (cycle.Agent.load's wiring)."""
    assert s.notify is not None
    usb = UsbDevice("1-1", "051d", "0002", 1, 2, "AS1234", "APC", "Back-UPS")
    config, problems = build(
        [Ups(usb, "usbhid-ups", "udev-rules", True)],
        [],
        {usb.fingerprint: "my-ups"},
        "my-ups",
        UserConfig(notify_cmd=s.notify.notify_cmd),
        Secrets(None, "monpass123", "upsmonpass"),
        str(s.statepath),
        "root",
    )
    assert problems == ()
    return render_file("upsmon.conf", config)


def notifycmd_value(text: str) -> str:
    """NOTIFYCMD's value as NUT reads it: exactly one token (2.8.4 reads only one)."""
    lines = [words for words in tokenize(text) if words[0] == "NOTIFYCMD"]
    assert len(lines) == 1, lines
    assert len(lines[0]) == 2, f"NOTIFYCMD is more than one token: {lines[0]}"
    return lines[0][1]


def upsmon_env(s: Settings) -> dict[str, str]:
    """The environment upsmon's child runs NOTIFYCMD with: the agent's NUT environment plus
    what upsmon sets (clients/upsmon.c)."""
    return {**s.nut_env(), "NOTIFYTYPE": "ONBATT", "UPSNAME": "my-ups@127.0.0.1:3493"}


def listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(TIMEOUT)
    return sock


def received(sock: socket.socket) -> tuple[str, str | None, str]:
    relayed = parse_datagram(sock.recv(65536))  # the agent's own check of a datagram
    return relayed.type, relayed.ups, relayed.message


def test_the_console_script_is_the_program_upsmon_gets_and_pip_installed_it(statepath: Path) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[notifycmd.PROGRAM] == "reconcile.outputs.relay:main"
    s = agent(statepath)
    assert s.notify is not None
    assert s.notify.notify_cmd == str(settings.notify_program()) == notifycmd_value(upsmon_conf(s))
    assert Path(s.notify.notify_cmd).name == notifycmd.PROGRAM


def test_nut_2_8_6_execs_the_first_token_with_the_notice_and_it_reaches_the_agent(statepath: Path) -> None:
    s = agent(statepath)
    assert s.notify is not None
    program = notifycmd_value(upsmon_conf(s))
    # 2.8.6 takes the token as a path: it must be one, to an executable file.
    assert os.path.isabs(program) and os.path.isfile(program) and os.access(program, os.X_OK), program
    with listen(s.notify.socket) as sock:
        # execvp(argv[0], [argv[0], notice]): no shell, the notice as the one argument.
        done = subprocess.run([program, NOTICE], env=upsmon_env(s), capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert received(sock) == ("ONBATT", "my-ups", NOTICE)


def test_nut_2_8_4_runs_the_one_token_through_the_shell_and_it_reaches_the_agent(statepath: Path) -> None:
    s = agent(statepath)
    assert s.notify is not None
    word = notifycmd_value(upsmon_conf(s))
    with listen(s.notify.socket) as sock:
        # system() with NUT's own format, "%s \"%s\"": the word, then the quoted notice.
        line = f'{word} "{NOTICE}"'
        done = subprocess.run(
            ["/bin/sh", "-c", line], env=upsmon_env(s), capture_output=True, text=True, timeout=TIMEOUT
        )
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert received(sock) == ("ONBATT", "my-ups", NOTICE)


def test_without_the_agents_socket_the_program_says_where_it_looked_and_never_fails_upsmon(statepath: Path) -> None:
    s = agent(statepath)
    assert s.notify is not None
    done = subprocess.run(
        [s.notify.notify_cmd, NOTICE], env=upsmon_env(s), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0
    assert done.stderr.strip() == f"nut-reconcile-notify: cannot reach the agent at {s.notify.socket}: " + (
        "[Errno 2] No such file or directory"
    )
    bare = subprocess.run([s.notify.notify_cmd], capture_output=True, text=True, timeout=TIMEOUT)
    assert bare.returncode == 0 and bare.stderr.startswith("usage: nut-reconcile-notify MESSAGE")


@pytest.mark.parametrize(
    "where",
    [
        "/opt/my venv/bin/nut-reconcile-notify",  # a space: 2.8.4's shell would split it
        "/opt/v$(reboot)/bin/nut-reconcile-notify",  # a shell substitution
        "/opt/v;reboot/bin/nut-reconcile-notify",
        '/opt/v"x/bin/nut-reconcile-notify',  # a quote: NUT's parser and the shell alike
        "/opt/v#x/bin/nut-reconcile-notify",  # a comment to NUT
        "venv/bin/nut-reconcile-notify",  # not a path 2.8.6 can exec from anywhere
    ],
)
def test_a_program_path_that_needs_quoting_is_refused_naming_notify_urls_and_the_path(
    where: str, statepath: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "notify_program", lambda: Path(where))
    with pytest.raises(SettingsError) as error:
        agent(statepath)
    assert error.value.variable == "NOTIFY_URLS"
    assert repr(where) in str(error.value) and "no spaces or shell characters" in str(error.value)


def test_a_real_program_in_a_dir_with_a_space_is_refused_too_and_a_missing_one_is_named(
    statepath: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = statepath / "bin" / notifycmd.PROGRAM  # statepath's name has a space
    real.parent.mkdir()
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    monkeypatch.setattr(settings, "notify_program", lambda: real)
    with pytest.raises(SettingsError, match="no spaces or shell characters") as error:
        agent(statepath)
    assert error.value.variable == "NOTIFY_URLS" and repr(str(real)) in str(error.value)
    missing = Path("/nonexistent/bin") / notifycmd.PROGRAM
    monkeypatch.setattr(settings, "notify_program", lambda: missing)
    with pytest.raises(SettingsError, match="is not an executable file") as error:
        agent(statepath)
    assert error.value.variable == "NOTIFY_URLS" and str(missing) in str(error.value)


def test_the_agent_and_the_program_name_one_socket_and_upsmon_without_nut_statepath_gets_the_default() -> None:
    s = load({"NOTIFY_URLS": "json://127.0.0.1/hook", "RECONCILE_STATE": "/var/lib/nut-reconcile"})
    assert s.notify is not None
    assert str(s.notify.socket) == notifycmd.socket_path(s.nut_env()) == notifycmd.socket_path({})
    assert str(s.statepath) == notifycmd.DEFAULT_STATEPATH
