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
from typing import Any

from benchmarks.baseline import ReplacedDesign
from benchmarks.markdown import ok, table
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


def render_latency(r: dict[str, Any]) -> str:
    """docs/benchmarks.md's section on hotplug latency."""
    lat_rows = [["SCAN_INTERVAL", "event", "n", "median", "p95", "max", "target (p95)"]]
    for si, d in r["latency"].items():
        for kind in ("plug", "unplug"):
            s = summary(d[kind])
            target = float(si) + r["settle"] + 1
            lat_rows.append(
                [
                    f"{si} s",
                    kind,
                    str(s["n"]),
                    f"{s['median']:.2f} s",
                    f"{s['p95']:.2f} s",
                    f"{s['max']:.2f} s",
                    f"≤ {target:g} s: {ok(s['p95'] <= target)}",
                ]
            )
    base = r["latency_baseline"]
    t = r["baseline_interval"]
    restarts = base["restart"]
    rmed, r95, rmax = statistics.median(restarts), percentile(restarts, 0.95), max(restarts)
    base_rows = [["interval", "event", "n", "median", "p95", "max"]]
    for kind in ("plug", "unplug"):
        s = summary(base[kind])
        base_rows.append(
            [f"{t:g} s (measured)", kind, str(s["n"]), f"{s['median']:.2f} s", f"{s['p95']:.2f} s", f"{s['max']:.2f} s"]
        )
    base_rows.append(
        [
            "60 s (its default, from the formula)",
            "plug",
            "",
            f"{30 + rmed:.1f} s",
            f"{57 + r95:.1f} s",
            f"{60 + rmax:.1f} s",
        ]
    )
    return f"""## Hotplug latency

From the plug (or unplug) on the bus to `upsc my-ups` showing it (the data, or "Driver not
connected"), against real NUT, at a random moment against the ticks, SETTLE_TIME
{r["settle"]:g} s.

{table(lat_rows)}

![hotplug latency](bench-latency.png)

The replaced design, at {t:g} s instead of its 60 s (an unplug there ends in an error for the
client: it has no placeholder):

{table(base_rows)}

Its latency is the wait for the next fingerprint, uniform over the interval T, plus the
restart of all of NUT (measured here: median {rmed:.2f} s, p95 {r95:.2f} s, max {rmax:.2f} s):
median ≈ T/2 + restart, p95 ≈ 0.95·T + restart, max ≈ T + restart.

"""


def render_interruption(r: dict[str, Any]) -> str:
    """docs/benchmarks.md's section on client interruption."""
    inter = r["interruption"]
    inter_rows = [["", "events", "total", "worst"]]
    for key, label in (("ours", "ups-nut-smart (reload)"), ("baseline", "replaced design (restart all)")):
        vals = inter[key]
        inter_rows.append([label, str(len(vals)), f"{sum(vals):.2f} s", f"{max(vals):.2f} s"])
    return f"""## Client interruption

Two UPSes served; a third plugged, then unplugged ({len(inter["ours"]) // 2} times each). A client polls
one of the two others every 20 ms: how long its answers failed, per event.

{table(inter_rows)}

![client interruption](bench-interruption.png)

"""
