"""Waking on the kernel's uevents against polling, side by side in one run.

Latency, on the host against real NUT: plug -> `upsc my-ups` returns data, and unplug ->
"Driver not connected", each followed by a real kernel uevent (through a virtual device,
testbed.nut.synthetic_uevent, as this machine has no USB), at the defaults (RESCAN_INTERVAL
4, SETTLE_TIME 2, SETTLE_MIN 0.5); and the same with polling (UEVENTS=0, SCAN_INTERVAL 2).
Each event comes at a random moment against the periodic pass, and at least SETTLE_TIME
after the last settled change (sooner, the flapping guarantee holds it back by design).

Idle, through Docker: the default image at rest, one simulated UPS attached, nothing
changing, 60 s, health check on, measured from outside the container (the cgroup's CPU,
and each process's from /proc/<pid>/schedstat: the agent, upsd, upsmon, the driver; what
is left is the processes that came and went, Docker's health checks) and from inside
(`/proc/1/schedstat`, read through `docker exec` before and after the window). Side by side:
the image as it ships (uevents, `nut-health`) and as it was (UEVENTS=0, SCAN_INTERVAL 2,
`nut-reconcile health` as the HEALTHCHECK).
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.container import cgroup_file, container_cpu, process_cpu, upsc_answers
from benchmarks.hotplug import NOT_CONNECTED, latency_ours, measure, sandbox, summary
from benchmarks.markdown import ok, table
from testbed.docker import SIM_ENV, SIM_MOUNT, container_sim, docker, run_container
from testbed.nut import UEVENT_ENV, free_port, synthetic_uevent

RESCAN, SETTLE, SETTLE_MIN, POLL = 4.0, 2.0, 0.5, 2.0
TARGETS = {"idle_cpu": 0.2, "agent_cpu": 0.05, "plug_s": 2.5, "unplug_s": 1.5, "rss_mb": 30.0}
# As it was: the HEALTHCHECK started Python every 30 s.
OLD_HEALTH = ("--health-cmd", "nut-reconcile health", "--health-interval", "30s", "--health-start-period", "60s")
MODES = {
    "uevents": ("-e", "UEVENT_SUBSYSTEM=usb"),  # as shipped: uevents on, nut-health
    "polling": ("-e", "UEVENTS=0", "-e", f"SCAN_INTERVAL={POLL:g}", *OLD_HEALTH),
}


def latency_uevents(events: int) -> dict[str, list[float]]:
    with sandbox() as box:
        box.dummy_rule(box.data_file())
        env = {**UEVENT_ENV, "DEBUG": "0", "UEVENT_SUBSYSTEM": "mem", "SETTLE_TIME": f"{SETTLE:g}"}
        env |= {"RESCAN_INTERVAL": f"{RESCAN:g}", "SETTLE_MIN": f"{SETTLE_MIN:g}"}
        box.env.update(env)
        box.start_run()
        measure(lambda: box.upsc("my-ups", "ups.status")[1] == NOT_CONNECTED)
        plugs, unplugs = [], []
        for _ in range(events):
            time.sleep(SETTLE + random.uniform(0, RESCAN))  # a random phase against the periodic pass
            box.bus.plug("1-1")
            synthetic_uevent()
            plugs.append(measure(lambda: box.upsc("my-ups", "ups.status")[1] == "OL"))
            time.sleep(SETTLE + random.uniform(0, RESCAN))
            box.bus.unplug("1-1")
            synthetic_uevent()
            unplugs.append(measure(lambda: box.upsc("my-ups", "ups.status")[1] == NOT_CONNECTED))
    return {"plug": plugs, "unplug": unplugs}


def _inside_cpu(name: str) -> float:
    """The agent's CPU (PID 1 in the container) as seen from inside, in seconds."""
    return int(docker("exec", name, "cat", "/proc/1/schedstat").stdout.split()[0]) / 1e9


def idle(image: str, mode: str, window: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-wake-") as tmp:
        bus = container_sim(Path(tmp))
        bus.plug("1-1")
        port, name = free_port(), f"ups-nut-smart-bench-wake-{mode}"
        docker("rm", "-f", name, check=False)
        run_container(image, name, port, "-v", f"{tmp}:{SIM_MOUNT}", *SIM_ENV, *MODES[mode])
        try:
            measure(lambda: upsc_answers(port, True), 60)
            time.sleep(10)  # settle down after the start before measuring the rest
            container_id = docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
            agent_pid = int(docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip())
            pids = [int(p) for p in cgroup_file(container_id, "pids", "cgroup.procs").read_text().split()]
            inside_before = _inside_cpu(name)
            before, procs_before = container_cpu(container_id), process_cpu(pids)
            time.sleep(window)  # the measurement itself: the container at rest for the window
            total = container_cpu(container_id) - before
            procs_after = process_cpu(pids)
            inside = _inside_cpu(name) - inside_before
            status = docker("exec", name, "cat", "/proc/1/status").stdout
            rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024
            health = docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()
        finally:
            docker("rm", "-f", name, check=False, timeout=60)
    split: dict[str, float] = {"agent": 0.0, "upsd": 0.0, "upsmon": 0.0, "driver": 0.0}
    for pid, (comm, after) in procs_after.items():
        if pid not in procs_before:
            continue
        part = "agent" if pid == agent_pid else comm if comm in ("upsd", "upsmon") else "driver"
        split[part] += after - procs_before[pid][1]
    percent = 100 / window
    out = {f"{part}_percent": seconds * percent for part, seconds in split.items()}
    out["health_percent"] = (total - sum(split.values())) * percent  # what came and went
    out["total_percent"] = total * percent
    out["agent_inside_percent"] = inside * percent
    interval = RESCAN if mode == "uevents" else POLL
    out["agent_ms_per_pass"] = split["agent"] * 1000 / (window / interval)
    out["agent_rss_mb"] = rss
    out["healthy"] = 1.0 if health == "healthy" else 0.0
    return out


def run(image: str, events: int, window: float = 60.0) -> dict[str, Any]:
    print("  latency: uevents, then polling", flush=True)
    latency = {"uevents": latency_uevents(events), "polling": latency_ours(POLL, events)}
    print("  idle: uevents, then polling", flush=True)
    return {"latency": latency, "idle": {mode: idle(image, mode, window) for mode in MODES}, "window": window}


def met(r: dict[str, Any]) -> dict[str, bool]:
    w = r["wake"]
    new, lat = w["idle"]["uevents"], w["latency"]["uevents"]
    return {
        "wake_idle": new["total_percent"] <= TARGETS["idle_cpu"] and new["agent_percent"] <= TARGETS["agent_cpu"],
        "wake_latency": summary(lat["plug"])["p95"] <= TARGETS["plug_s"]
        and summary(lat["unplug"])["p95"] <= TARGETS["unplug_s"],
        "wake_rss": new["agent_rss_mb"] <= TARGETS["rss_mb"],
    }


def headline_rows(r: dict[str, Any]) -> list[list[str]]:
    w = r.get("wake")
    if not w:
        return []
    new, old = w["idle"]["uevents"], w["idle"]["polling"]
    lat, poll = w["latency"]["uevents"], w["latency"]["polling"]
    m = met(r)
    return [
        [
            "idle CPU, uevents (as shipped; one core, 60 s)",
            f"{new['total_percent']:.2f} % (agent {new['agent_percent']:.3f}, NUT "
            f"{new['upsd_percent'] + new['upsmon_percent'] + new['driver_percent']:.3f}, health "
            f"{new['health_percent']:.3f})",
            f"≤ {TARGETS['idle_cpu']:g} % (agent ≤ {TARGETS['agent_cpu']:g}): {ok(m['wake_idle'])}",
            f"polling, old health check: {old['total_percent']:.2f} % (agent {old['agent_percent']:.3f})",
        ],
        [
            "plug → data / unplug → not connected (p95), uevents",
            f"{summary(lat['plug'])['p95']:.2f} s / {summary(lat['unplug'])['p95']:.2f} s",
            f"≤ {TARGETS['plug_s']:g} / ≤ {TARGETS['unplug_s']:g} s: {ok(m['wake_latency'])}",
            f"polling at 2 s: {summary(poll['plug'])['p95']:.2f} s / {summary(poll['unplug'])['p95']:.2f} s",
        ],
    ]


def render(r: dict[str, Any]) -> str:
    """docs/benchmarks.md's section on waking on uevents."""
    w = r.get("wake")
    if not w:
        return ""
    rows = [["", "n", "median", "p95", "max", "target (p95)"]]
    for mode, label in (("uevents", "uevents (defaults)"), ("polling", "polling, SCAN_INTERVAL 2")):
        for kind in ("plug", "unplug"):
            s = summary(w["latency"][mode][kind])
            target = (
                f"≤ {TARGETS[f'{kind}_s']:g} s: {ok(s['p95'] <= TARGETS[f'{kind}_s'])}" if mode == "uevents" else ""
            )
            row = [f"{kind}, {label}", str(s["n"]), f"{s['median']:.2f} s", f"{s['p95']:.2f} s", f"{s['max']:.2f} s"]
            rows.append([*row, target])
    idle_rows = [["% of one core", "whole container", "agent (outside)", "agent (inside)", "upsd", "upsmon",
                  "driver", "health checks", "agent per pass", "agent RSS"]]  # fmt: skip
    for mode, label in (("uevents", "uevents, nut-health (as shipped)"), ("polling", "polling 2 s, Python health")):
        d = w["idle"][mode]
        idle_rows.append(
            [label, f"{d['total_percent']:.3f}", f"{d['agent_percent']:.3f}", f"{d['agent_inside_percent']:.3f}",
             f"{d['upsd_percent']:.3f}", f"{d['upsmon_percent']:.3f}", f"{d['driver_percent']:.3f}",
             f"{d['health_percent']:.3f}", f"{d['agent_ms_per_pass']:.2f} ms", f"{d['agent_rss_mb']:.1f} MiB"]
        )  # fmt: skip
    new = w["idle"]["uevents"]
    m = met(r)
    return f"""## Wake on uevents

Latency on the host against real NUT, each plug and unplug followed by a real kernel uevent
(a virtual device's: this machine has no USB), at a random moment against the periodic pass
and at least SETTLE_TIME after the last change; polling measured in the same run.

{table(rows)}

At rest in the container, one UPS attached, nothing changing, {w["window"]:g} s, measured from
outside (the cgroup; each process's schedstat) and inside (`/proc/1/schedstat`). "Health checks" is
what is left of the cgroup's CPU: the processes that came and went (Docker's HEALTHCHECK every
30 s). "Per pass" is the agent's CPU over the passes the interval gives (4 s with uevents, 2 s
polling). Targets: whole container ≤ {TARGETS["idle_cpu"]:g} %, agent ≤ {TARGETS["agent_cpu"]:g} %
({ok(m["wake_idle"])}); RSS ≤ {TARGETS["rss_mb"]:g} MiB ({ok(m["wake_rss"])}).

{table(idle_rows)}

The no-change pass no longer sets the idle cost by its count alone: with uevents it runs every
{RESCAN:g} s instead of every {POLL:g} s, and what it costs at rest is the agent's figure above
({new["agent_percent"]:.3f} % of a core, {new["agent_ms_per_pass"]:.2f} ms a pass).

"""
