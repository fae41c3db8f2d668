"""A bounded soak: at least 500 random plugs, unplugs, swaps, bus resets and kills of
NUT's daemons in 3 minutes against the running agent. Afterwards: no leaked process or
file descriptor, the agent's memory flat, and what NUT serves matching the bus."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from testbed import await_true
from testbed.nut import Sandbox, nut_processes

pytestmark = pytest.mark.nut

DURATION = 180.0
EVENTS = 540  # one every 1/3 s
PORTS = ("1-1", "1-2", "1-3", "1-4")
UNITS = {"A": "11", "B": "22", "C": "33", "D": "44", "E": "55"}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def fds_at_rest(pid: int) -> tuple[int, int]:
    """The agent's open descriptors between passes, as (pidfds, the rest): the fewest seen
    over a second (a pass holds a few more for a moment: the lock, a socket, a pipe). The
    pidfds are one per daemon it watches (observe/processes.Pidfds), so they follow how
    many UPSes are plugged in; the rest must not grow."""
    samples = []
    for _ in range(20):
        links = []
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except FileNotFoundError:  # closed between the listing and the read
                pass
        pidfds = sum(link == "anon_inode:[pidfd]" for link in links)
        samples.append((pidfds, len(links) - pidfds))
        time.sleep(0.05)  # sampling, not waiting for a condition
    return min(s[0] for s in samples), min(s[1] for s in samples)


def zombies_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            if fields[0] == "Z" and int(fields[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.timeout(900)
def test_soak_random_hotplug_and_kills(sandbox: Sandbox) -> None:
    for serial, charge in UNITS.items():
        sandbox.dummy_rule(sandbox.data_file(f"{serial}.dev", **{"battery.charge": charge}), serial=serial)
    agent = sandbox.start_run(env={"SCAN_INTERVAL": "0.5", "SETTLE_TIME": "0.5"})
    assert sandbox.await_upsc("Error: Driver not connected", timeout=30), sandbox.run_output()

    rng = random.Random(2026)
    bus: dict[str, str] = {}  # port -> unit plugged there
    done: Counter[str] = Counter()

    def plug(port: str, unit: str) -> None:
        sandbox.bus.plug(port, serial=unit)
        bus[port] = unit

    def unplug(port: str) -> None:
        sandbox.bus.unplug(port)
        del bus[port]

    start = time.monotonic()
    warm: tuple[int, tuple[int, int]] | None = None
    for i in range(EVENTS):
        free_ports = [p for p in PORTS if p not in bus]
        free_units = [u for u in UNITS if u not in bus.values()]
        kinds = ["kill"] + (["plug"] if free_ports and free_units else [])
        kinds += ["unplug", "reset"] * bool(bus) + ["swap"] * bool(bus and free_units)
        kind = rng.choice(kinds)
        if kind == "plug":
            plug(rng.choice(free_ports), rng.choice(free_units))
        elif kind == "unplug":
            unplug(rng.choice(sorted(bus)))
        elif kind == "swap":
            port = rng.choice(sorted(bus))
            unplug(port)
            plug(port, rng.choice(free_units))
        elif kind == "reset":
            was = dict(bus)
            for port in list(bus):
                unplug(port)
            for port, unit in was.items():
                plug(port, unit)
        else:
            victims = [pid for pid, comm in nut_processes(sandbox.conf) if comm in ("upsd", "upsmon", "dummy-ups")]
            if victims:
                try:
                    os.kill(rng.choice(victims), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        done[kind] += 1
        if warm is None and time.monotonic() - start > 20:
            warm = (rss_kb(agent.pid), fds_at_rest(agent.pid))
        # The load itself: events spread over the soak's 3 minutes.
        time.sleep(max(0.0, start + (i + 1) * DURATION / EVENTS - time.monotonic()))
    assert sum(done.values()) >= 500 and all(done[k] > 20 for k in ("plug", "unplug", "swap", "reset", "kill")), done
    assert agent.poll() is None, sandbox.run_output()[-5000:]

    # Converged: what upsd serves matches the bus, each name on its own unit's data.
    # (A start the kills pushed into backoff waits up to 60 s: the ceiling allows it.)
    def matches_bus() -> bool:
        status = json.loads(sandbox.cli("status", "--json").stdout)
        names = {d["serial"]: d["name"] for d in status["devices"] if not d["held"]}
        if set(names) != set(bus.values()):
            return False
        if sandbox.served() != set(names.values()) | {"my-ups"}:
            return False
        if any(sandbox.upsc(name, "battery.charge")[1] != UNITS[unit] for unit, name in names.items()):
            return False
        drivers = len(bus)
        return sandbox.processes() == {"upsd": 1, "upsmon": 1} | ({"dummy-ups": drivers} if drivers else {})

    assert await_true(matches_bus, 150, 1.0), (bus, sandbox.run_output()[-5000:])
    assert sandbox.cli("plan").returncode == 0

    assert warm is not None
    rss, fds = rss_kb(agent.pid), fds_at_rest(agent.pid)
    print(f"soak: {dict(done)}; agent RSS {warm[0]} -> {rss} kB; fds {warm[1]} -> {fds}")
    assert abs(rss - warm[0]) <= 5 * 1024, (warm, rss)
    pidfds, others = fds
    assert others <= warm[1][1], (warm, fds)
    # No pidfd outlives its daemon: at most one per daemon running now.
    assert pidfds <= sum(sandbox.processes().values()), (fds, sandbox.processes())
    assert zombies_of(agent.pid) == []
    assert "event=tick.failed" not in sandbox.run_output()
