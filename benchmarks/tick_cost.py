"""Tick cost against bus size: the agent's CPU time per tick, and the replaced design's.

Ours: `nut-reconcile run`'s tick (scan sysfs, observe NUT's files, processes and upsd,
decide, plan) in this process against real NUT, on a bus of N devices (one UPS served by
dummy-ups). A no-change tick, and a change tick (a device of a model not seen before comes
or goes, so nut-scanner runs too). CPU = this process's and its children's user+system time.

The replaced design, scanning the same bus each tick: `nut-scanner -U` and `lsusb` as
subprocesses, under umockdev (the only way they see N devices here), CPU of both.

    python -m benchmarks.tick_cost [--sizes 1,10,100,500] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bus import Device, devices, write_sysfs, write_umockdev
from benchmarks.markdown import table
from testbed.nut import make_sandbox, nut_readable_dir

SIZES = (1, 10, 100, 500)
GAP = 2.0  # SCAN_INTERVAL's default: the gap between two ticks of a running agent
SPACED_TICKS = 6


def cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def ours(n: int, ticks: int = 40, changes: int = 20, profile: bool = False) -> dict[str, float]:
    """The agent's tick on a bus of n devices; with profile, pyinstrument's view of the
    no-change ticks is printed (where the remaining time goes)."""
    from reconcile import logfmt, store
    from reconcile.cycle import Agent
    from reconcile.run import Runner
    from reconcile.settings import load

    with nut_readable_dir("tick-") as root:
        gen = make_sandbox(root)
        box = next(gen)
        try:
            box.dummy_rule(box.data_file())
            write_sysfs(box.bus.root, devices(n))
            saved = dict(os.environ)
            os.environ.update({**box.env, "SETTLE_TIME": "0"})
            try:
                logfmt.setup(False, None, to_stderr=True)
                settings = load()
                store.prepare(settings)
                runner = Runner(Agent.load(settings))
                for _ in range(3):
                    runner.ticker.tick()  # converge: upsd, upsmon, the driver
                start = cpu()
                for _ in range(ticks):
                    runner.ticker.tick()
                no_change = (cpu() - start) / ticks
                # The same ticks as `run` makes them, SCAN_INTERVAL apart: on some machines a
                # tick after an idle gap costs far more CPU than back to back (cold caches).
                spaced_cpu = 0.0
                for _ in range(SPACED_TICKS):
                    time.sleep(GAP)  # the idle gap between two ticks is what is measured here
                    start = cpu()
                    runner.ticker.tick()
                    spaced_cpu += cpu() - start
                if profile:
                    from pyinstrument import Profiler

                    profiler = Profiler(interval=0.0001)
                    with profiler:
                        for _ in range(ticks * 25):
                            runner.ticker.tick()
                    print(profiler.output_text(unicode=True, color=False, show_all=False), flush=True)
                new = Device("9-99", 9, 99, "abcd", "1234", "Unseen", "Gadget", "NEW")
                start = cpu()
                for i in range(changes):
                    if i % 2 == 0:
                        write_sysfs(box.bus.root, [new])
                    else:
                        box.bus.unplug(new.port)
                    runner.ticker.tick()
                change = (cpu() - start) / changes
                runner.shutdown()
            finally:
                os.environ.clear()
                os.environ.update(saved)
        finally:
            box.cleanup()
    return {"no_change": no_change, "change": change, "no_change_spaced": spaced_cpu / SPACED_TICKS}


_BASELINE_LOOP = """
import json, resource, subprocess, sys
def cpu():
    k = resource.getrusage(resource.RUSAGE_CHILDREN)
    return k.ru_utime + k.ru_stime
import time
n, gap = int(sys.argv[1]), float(sys.argv[2])
total = 0.0
for _ in range(n):
    time.sleep(gap)
    start = cpu()
    subprocess.run(["nut-scanner", "-U", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    subprocess.run(["lsusb"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    total += cpu() - start
print(json.dumps({"per_tick": total / n}))
"""

_SCAN_LOOP = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from reconcile.observe.usb_sysfs import scan
n = int(sys.argv[1])
r = resource.getrusage(resource.RUSAGE_SELF); start = r.ru_utime + r.ru_stime
for _ in range(n):
    found = scan(Path("/sys/bus/usb/devices"))
r = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"per_scan": (r.ru_utime + r.ru_stime - start) / n, "found": len(found)}))
"""


def _under_umockdev(bus_file: Path, code: str, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        ["umockdev-run", "--device", str(bus_file), "--", sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def baseline(n: int, ticks: int = 10) -> dict[str, float]:
    """nut-scanner -U + lsusb per tick under umockdev, and (for the comparison's fairness) how
    much umockdev slows the agent's own sysfs scan of the same bus."""
    with tempfile.TemporaryDirectory() as tmp:
        bus_file = Path(tmp) / "bus.umockdev"
        write_umockdev(bus_file, devices(n))
        base = _under_umockdev(bus_file, _BASELINE_LOOP, str(ticks), "0")
        spaced = _under_umockdev(bus_file, _BASELINE_LOOP, str(SPACED_TICKS // 2), str(GAP))
        scan = _under_umockdev(bus_file, _SCAN_LOOP, "50", str(Path(__file__).resolve().parent.parent))
        plain = Path(tmp) / "sys"
        write_sysfs(plain, devices(n))
        from reconcile.observe.usb_sysfs import scan as plain_scan

        r0 = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(50):
            plain_scan(plain)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        plain_per_scan = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / 50
    assert scan["found"] == n, scan
    return {
        "per_tick": base["per_tick"],
        "per_tick_spaced": spaced["per_tick"],
        "scan_umockdev": scan["per_scan"],
        "scan_plain": plain_per_scan,
    }


def run(sizes: tuple[int, ...] = SIZES) -> list[dict[str, float]]:
    rows = []
    for n in sizes:
        mine, theirs = ours(n), baseline(n)
        rows.append(
            {
                "devices": n,
                **{f"ours_{k}": v for k, v in mine.items()},
                **{f"baseline_{k}": v for k, v in theirs.items()},
            }
        )
        ms = {k: v * 1000 for k, v in mine.items()}
        print(
            f"tick cost, {n} devices: ours {ms['no_change']:.2f} ms (no change), {ms['change']:.1f} ms (change); "
            f"baseline {theirs['per_tick'] * 1000:.1f} ms; ratio {theirs['per_tick'] / mine['no_change']:.0f}x; "
            f"{GAP:g} s apart: ours {ms['no_change_spaced']:.2f} ms, "
            f"baseline {theirs['per_tick_spaced'] * 1000:.1f} ms",
            flush=True,
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--profile", action="store_true", help="profile the agent's no-change tick (10 devices)")
    args = parser.parse_args()
    if args.profile:
        print(json.dumps(ours(10, profile=True), indent=2))
        return 0
    print(json.dumps(run(tuple(int(s) for s in args.sizes.split(","))), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def render(r: dict[str, Any]) -> str:
    """docs/benchmarks.md's section on tick cost."""
    tick_rows = [
        [
            "devices",
            "agent: no-change tick",
            "agent: change tick",
            "replaced: nut-scanner + lsusb",
            "ratio (no-change)",
            "2 s apart: agent",
            "2 s apart: replaced",
            "umockdev's cost on a sysfs scan",
        ]
    ]
    for row in r["tick"]:
        tick_rows.append(
            [
                str(row["devices"]),
                f"{row['ours_no_change'] * 1000:.2f} ms",
                f"{row['ours_change'] * 1000:.1f} ms",
                f"{row['baseline_per_tick'] * 1000:.1f} ms",
                f"{row['baseline_per_tick'] / row['ours_no_change']:.0f}×",
                f"{row['ours_no_change_spaced'] * 1000:.1f} ms",
                f"{row['baseline_per_tick_spaced'] * 1000:.1f} ms",
                f"{row['baseline_scan_umockdev'] / row['baseline_scan_plain']:.1f}×",
            ]
        )
    return f"""## Tick cost against bus size

CPU time (user + system, the process and its children) of one tick: the agent's no-change
tick (scan, observe NUT's files, processes and upsd, decide) and its change tick (a device
of a model it has not seen comes or goes, so nut-scanner runs too), against scanning the
same bus the replaced design's way, `nut-scanner -U` and `lsusb` as subprocesses each tick,
under umockdev. umockdev slows what runs under it: its cost on a plain sysfs scan of the
same bus is in the last column. The first columns are ticks back to back; "2 s apart" are
ticks with SCAN_INTERVAL's 2 s of idle before each, as a running agent makes them. On this
machine (a VM on a shared host) work done after an idle gap costs far more CPU: a fixed
Python loop takes about 5× its back-to-back time after 2 s of sleep, and the agent's tick,
which touches more memory, much more. That is the figure behind the idle CPU below.

{table(tick_rows)}

![tick cost](bench-tick-cost.png)

"""
