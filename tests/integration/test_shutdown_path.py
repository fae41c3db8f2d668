"""`health` and `status`'s armed read the shutdown path from the host's side, against
Debian's real upsd, dummy-ups and upsmons: each expected secondary ([[shutdown.secondary]])
must be logged in to its UPS from where it must come, as upsd's LIST CLIENT lists it.

Every upsmon here is NUT's own. A secondary that must come from another address logs in
through a TCP hop that connects to upsd from that address (`Hop`), as Docker's proxy or a
NAT does: upsmon cannot choose its source address, and Linux answers every 127.0.0.0/8
destination from 127.0.0.1. The addresses are the config's, so the check is real: a NAS
logged in from 127.0.0.2 is not the nas.lan the config expects from 127.0.0.3.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconcile.observe import upsd_client
from testbed import await_true
from testbed.nut import Sandbox

pytestmark = pytest.mark.nut

AWAIT = 30.0  # a ceiling: upsmon logs in as it starts
PASSWORD = "nas-login-pw"


class Hop:
    """A TCP hop on 127.0.0.1 to upsd that dials from `source`: what upsd sees as the
    client's address. One thread moves the bytes of every connection (a selector)."""

    def __init__(self, upsd_port: int, source: str) -> None:
        self.upsd_port, self.source = upsd_port, source
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.peers: dict[socket.socket, socket.socket] = {}
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            for key, _ in self.selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    client, _ = self.listener.accept()
                    upstream = socket.create_connection(
                        ("127.0.0.1", self.upsd_port), timeout=5, source_address=(self.source, 0)
                    )
                    self.peers[client], self.peers[upstream] = upstream, client
                    for end in (client, upstream):
                        self.selector.register(end, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                    if data:
                        self.peers[sock].sendall(data)
                        continue
                except OSError:
                    pass
                self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        other = self.peers.pop(sock, None)
        for end in (sock, other):
            if end is not None:
                self.peers.pop(end, None)
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(end)
                end.close()

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        for sock in list(self.peers):
            self._drop(sock)
        self.listener.close()
        self.selector.close()


class Secondary:
    """A network upsmon (NUT's, as secondary of the agent's upsd), logged in as `nas`,
    through a Hop from `source` (None: straight to upsd, from 127.0.0.1). In a mount
    namespace of its own: Debian's upsmon has its PID file compiled in (/run/nut)."""

    def __init__(self, box: Sandbox, name: str, ups: str = "my-ups", source: str | None = None) -> None:
        self.hop = Hop(box.port, source) if source else None
        port = self.hop.port if self.hop else box.port
        conf = box.root / f"upsmon-{name}"
        conf.mkdir()
        (conf / "upsmon.conf").write_text(
            f"MONITOR {ups}@127.0.0.1:{port} 1 nas {PASSWORD} secondary\n"
            'SHUTDOWNCMD "/bin/true"\nPOLLFREQ 1\nPOLLFREQALERT 1\n'
        )
        os.chmod(conf / "upsmon.conf", 0o600)
        self.log = box.root / f"upsmon-{name}.log"
        env = {**os.environ, "NUT_CONFPATH": str(conf), "NUT_STATEPATH": str(conf)}
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                ["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /run/nut && exec /lib/nut/upsmon -p -F"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.hop:
            self.hop.close()


@pytest.fixture
def secondaries() -> Iterator[list[Secondary]]:
    started: list[Secondary] = []
    yield started
    for s in started:
        s.stop()


def logins(box: Sandbox, ups: str = "my-ups") -> list[str]:
    """upsd's LIST CLIENT for `ups`: the address of each login."""
    with upsd_client.Connection("127.0.0.1", box.port) as conn:
        return list(upsd_client.logins(conn, ups))


def health(box: Sandbox) -> tuple[int, str]:
    result = box.cli("health")
    return result.returncode, result.stdout + result.stderr


def armed(box: Sandbox) -> dict[str, Any]:
    """`status --json`'s shutdown view: armed, broken, and each secondary logged in or not."""
    shutdown: dict[str, Any] = json.loads(box.cli("status", "--json", check=True).stdout)["shutdown"]
    return shutdown


def serve(box: Sandbox, shutdown: str, name: str | None = None, run: bool = False) -> None:
    """One UPS on line, served by `apply` (or the agent's `run`), with a user `nas` for the
    secondaries and `shutdown`."""
    box.dummy_rule(box.data_file(), name=name)
    box.write_config(f'\n[users.nas]\npassword = "{PASSWORD}"\n\n[shutdown]\n{shutdown}')
    box.bus.plug("1-1")
    if run:
        box.start_run()
    else:
        box.cli("apply", check=True)
    assert box.await_upsc("OL", target=name or "my-ups"), box.run_output()


def recorded(box: Sandbox, fragment: str) -> bool:
    """The verdict `run` records at every tick (the image's HEALTHCHECK reads it) holds `fragment`."""
    path = box.state / "nut-reconcile.health"

    def holds() -> bool:
        return path.exists() and fragment in path.read_text()

    return await_true(holds, AWAIT)


FLEET = """\
[[shutdown.secondary]]
name = "pi-host"
ups = "my-ups"
from = "host"

[[shutdown.secondary]]
name = "nas.lan"
ups = "my-ups"
from = ["127.0.0.3"]
"""


def test_health_names_the_secondary_logged_in_from_the_wrong_address_and_passes_with_the_right_one(
    sandbox: Sandbox, secondaries: list[Secondary]
) -> None:
    """The Pi's own upsmon (here: a second login from loopback, as with host networking)
    and nas.lan from 127.0.0.3. A NAS from 127.0.0.2 is neither; with nas.lan logged in
    and the Pi's upsmon stopped, the gate still fails, naming it."""
    serve(sandbox, FLEET, run=True)
    assert await_true(lambda: logins(sandbox) == ["127.0.0.1"], AWAIT), sandbox.run_output()  # ours

    secondaries.append(Secondary(sandbox, "wrong-nas", source="127.0.0.2"))
    assert await_true(lambda: logins(sandbox) == ["127.0.0.1", "127.0.0.2"], AWAIT), secondaries[-1].log.read_text()
    code, text = health(sandbox)
    assert code == 1, text
    assert "nas.lan is not logged in to my-ups from 127.0.0.3 (logins on my-ups: 127.0.0.1, 127.0.0.2)" in text
    assert "pi-host: the host's own upsmon is not logged in to my-ups from the host" in text
    assert recorded(sandbox, "nas.lan is not logged in to my-ups from 127.0.0.3"), sandbox.run_output()
    view = armed(sandbox)
    assert view["armed"] is False
    assert [(s["name"], s["logged_in"]) for s in view["secondaries"]] == [("pi-host", False), ("nas.lan", False)]
    assert "secondary: nas.lan on my-ups (from 127.0.0.3): not logged in" in sandbox.cli("status").stdout

    # nas.lan logs in from its address; the Pi's own upsmon is still not there.
    secondaries.append(Secondary(sandbox, "nas", source="127.0.0.3"))
    assert await_true(lambda: "127.0.0.3" in logins(sandbox), AWAIT), secondaries[-1].log.read_text()
    code, text = health(sandbox)
    assert code == 1 and "nas.lan" not in text, text
    assert "pi-host: the host's own upsmon is not logged in to my-ups from the host" in text

    # The Pi's own upsmon: straight to upsd on loopback, beside ours.
    host = Secondary(sandbox, "host")
    secondaries.append(host)
    assert await_true(lambda: logins(sandbox).count("127.0.0.1") == 2, AWAIT), host.log.read_text()
    code, text = health(sandbox)
    assert (code, text) == (0, "healthy: upsd serves my-ups\n")
    assert recorded(sandbox, "healthy: upsd serves my-ups"), sandbox.run_output()
    view = armed(sandbox)
    assert view["armed"] is True and view["broken"] == []
    assert [s["logged_in"] for s in view["secondaries"]] == [True, True]

    # It stops (as after its SHUTDOWNCMD): not armed again.
    host.stop()
    assert await_true(lambda: logins(sandbox).count("127.0.0.1") == 1, AWAIT)
    code, text = health(sandbox)
    assert code == 1 and "pi-host: the host's own upsmon is not logged in" in text, text
    assert recorded(sandbox, "unhealthy: shutdown path: pi-host: the host's own upsmon"), sandbox.run_output()


def test_a_secondary_on_the_placeholder_while_the_ups_has_a_pinned_name_fails_health_by_name(
    sandbox: Sandbox, secondaries: list[Secondary]
) -> None:
    """The pi-cabin case: the rule pins cabin-ups, an older rollout's expect_secondaries
    reads as the host's upsmon on UPS_NAME (my-ups, a placeholder, "Driver not connected").
    Logged in there, it would never see OB, LB or FSD: health says so. With host_ups =
    "cabin-ups" and the host's upsmon logged in to cabin-ups, health passes."""
    serve(sandbox, "expect_secondaries = 1\n", name="cabin-ups")
    secondaries.append(Secondary(sandbox, "on-placeholder", ups="my-ups"))
    assert await_true(lambda: logins(sandbox, "my-ups") == ["127.0.0.1"], AWAIT), secondaries[-1].log.read_text()
    code, text = health(sandbox)
    assert code == 1, text
    assert "the host's own upsmon watches my-ups, a placeholder; the UPS on the bus is cabin-ups" in text

    config = Path(sandbox.env["RECONCILE_CONFIG"])
    config.write_text(config.read_text().replace("[shutdown]\n", '[shutdown]\nhost_ups = "cabin-ups"\n'))
    code, text = health(sandbox)
    assert code == 1 and "the host's own upsmon is not logged in to cabin-ups" in text, text
    secondaries.append(Secondary(sandbox, "on-cabin", ups="cabin-ups"))
    assert await_true(lambda: logins(sandbox, "cabin-ups") == ["127.0.0.1", "127.0.0.1"], AWAIT)
    assert health(sandbox) == (0, "healthy: upsd serves cabin-ups, my-ups\n")


def test_a_pinned_host_ups_not_plugged_is_served_as_a_placeholder_the_hosts_upsmon_logs_in_to(
    sandbox: Sandbox, secondaries: list[Secondary]
) -> None:
    """pi-cabin deployed before its UPS is plugged in (or during a USB drop): host_ups =
    "cabin-ups" is served with no driver ("Driver not connected", not "Unknown UPS"), so the
    host's upsmon logs in to it and health passes; plugged, the same name gets its driver,
    the login stays, and our upsmon logs in beside it."""
    sandbox.dummy_rule(sandbox.data_file(), name="cabin-ups")
    pi = '\n[[shutdown.secondary]]\nname = "pi-cabin.lan"\nups = "cabin-ups"\nfrom = "host"\n'
    sandbox.write_config(f'\n[users.nas]\npassword = "{PASSWORD}"\n\n[shutdown]\nhost_ups = "cabin-ups"\n{pi}')
    sandbox.cli("apply", check=True)
    assert sandbox.converged({"cabin-ups": "Driver not connected", "my-ups": "Driver not connected"}) is None
    secondaries.append(Secondary(sandbox, "pi", ups="cabin-ups"))
    assert await_true(lambda: logins(sandbox, "cabin-ups") == ["127.0.0.1"], AWAIT), secondaries[-1].log.read_text()
    assert health(sandbox) == (0, "healthy: upsd serves cabin-ups, my-ups\n")

    sandbox.bus.plug("1-1")
    sandbox.cli("apply", check=True)
    assert sandbox.await_upsc("OL", target="cabin-ups")
    assert await_true(lambda: logins(sandbox, "cabin-ups") == ["127.0.0.1", "127.0.0.1"], AWAIT)
    assert health(sandbox) == (0, "healthy: upsd serves cabin-ups, my-ups\n")
