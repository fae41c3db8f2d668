"""Hotplug latency distributions and client interruption, against real NUT, for the agent
and for the design it replaces (benchmarks/baseline.py).

Latency: plug -> `upsc my-ups` returns the UPS's data, and unplug -> "Driver not
connected" (the replaced design has no placeholder: its clients get an error, whichever),
at random moments against the ticks.

Interruption: with two UPSes served, a third is plugged or unplugged; a client polls one
of the untouched UPSes every 20 ms (a new connection each time, as upsc does) and the
time its answers fail is summed.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.baseline import ReplacedDesign
from reconcile.observe import upsd_client
from testbed.nut import Sandbox, make_sandbox, nut_readable_dir

NOT_CONNECTED = "Error: Driver not connected"
SETTLE = 2.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": percentile(values, 0.95),
        "max": max(values),
    }


def measure(check: Callable[[], bool], timeout: float = 90.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.02)  # polling the client-visible state: this is the measurement
    raise TimeoutError("no change seen within the timeout")


@contextmanager
def sandbox() -> Iterator[Sandbox]:
    with nut_readable_dir("bench-") as root:
        gen = make_sandbox(root)
        box = next(gen)
        try:
            yield box
        finally:
            box.cleanup()


def _ups_rules(box: Sandbox, serials: tuple[str, ...]) -> dict[str, Path]:
    data = {}
    for i, serial in enumerate(serials):
        data[serial] = box.data_file(f"{serial}.dev", **{"battery.charge": str(10 * (i + 1))})
        box.dummy_rule(data[serial], serial=serial)
    return data


def _status(box: Sandbox, name: str = "my-ups") -> str:
    return box.upsc(name, "ups.status")[1]


def latency_ours(interval: float, events: int) -> dict[str, list[float]]:
    with sandbox() as box:
        _ups_rules(box, ("A",))
        box.env.update({"SCAN_INTERVAL": str(interval), "SETTLE_TIME": str(SETTLE)})
        box.start_run()
        measure(lambda: _status(box) == NOT_CONNECTED)
        plugs, unplugs = [], []
        for _ in range(events):
            time.sleep(random.uniform(0, interval))  # a random phase against the ticks
            box.bus.plug("1-1", serial="A")
            plugs.append(measure(lambda: _status(box) == "OL"))
            time.sleep(random.uniform(0, interval))
            box.bus.unplug("1-1")
            unplugs.append(measure(lambda: _status(box) == NOT_CONNECTED))
    return {"plug": plugs, "unplug": unplugs}


def latency_baseline(interval: float, events: int) -> dict[str, list[float]]:
    with sandbox() as box:
        data = _ups_rules(box, ("A",))
        design = ReplacedDesign(box, interval, data)
        design.start()
        try:
            plugs, unplugs = [], []
            for _ in range(events):
                time.sleep(random.uniform(0, interval))
                box.bus.plug("1-1", serial="A")
                plugs.append(measure(lambda: _status(box) == "OL"))
                time.sleep(random.uniform(0, interval))
                box.bus.unplug("1-1")
                unplugs.append(measure(lambda: box.upsc("my-ups", "ups.status")[0] != 0))
            return {"plug": plugs, "unplug": unplugs, "restart": list(design.restarts)}
        finally:
            design.stop()


class Poller:
    """A client polling one UPS every 20 ms; the time its answers failed, summed."""

    def __init__(self, port: int, name: str) -> None:
        self.port, self.name = port, name
        self.failed = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _ok(self) -> bool:
        try:
            with upsd_client.Connection("127.0.0.1", self.port, timeout=1.0) as conn:
                return conn.served(self.name).state == "ok"
        except upsd_client.UpsdError:
            return False

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            ok = self._ok()
            now = time.monotonic()
            if not ok:
                self.failed += now - last
            last = now
            time.sleep(0.02)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _interruptions(
    box: Sandbox, rounds: int, third_gone: Callable[[], bool], third_there: Callable[[], bool]
) -> list[float]:
    out = []
    for _ in range(rounds):
        for plug in (True, False):
            with Poller(box.port, "my-ups") as poller:
                if plug:
                    box.bus.plug("1-3", serial="C")
                    measure(third_there)
                else:
                    box.bus.unplug("1-3")
                    measure(third_gone)
                time.sleep(1.0)  # the measurement window: one more second after the change
            out.append(poller.failed)
    return out


def interruption_ours(rounds: int) -> list[float]:
    with sandbox() as box:
        _ups_rules(box, ("A", "B", "C"))
        box.bus.plug("1-1", serial="A")
        box.bus.plug("1-2", serial="B")
        box.start_run()
        measure(lambda: box.served() == {"my-ups", "my-ups-2"} and _status(box, "my-ups-2") == "OL")
        return _interruptions(
            box, rounds, lambda: box.served() == {"my-ups", "my-ups-2"}, lambda: _status(box, "my-ups-3") == "OL"
        )


def interruption_baseline(rounds: int, interval: float) -> list[float]:
    with sandbox() as box:
        data = _ups_rules(box, ("A", "B", "C"))
        box.bus.plug("1-1", serial="A")
        box.bus.plug("1-2", serial="B")
        design = ReplacedDesign(box, interval, data)
        design.start()
        try:
            measure(lambda: _status(box, "my-ups-2") == "OL")
            return _interruptions(
                box, rounds, lambda: box.served() == {"my-ups", "my-ups-2"}, lambda: _status(box, "my-ups-3") == "OL"
            )
        finally:
            design.stop()
