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

The run loop, side by side (section "loops"): the agent of this tree (its loop driven by
the `schedule` package, reconcile/timers.py) against the one of an earlier commit (PREVIOUS:
the loop that timed its pass itself, decide/wake.Timer), laid out from git in a temp dir
and run as `python -m reconcile run` from there. Both on the host against real NUT, at the
defaults, with uevents: plug and unplug latency as above (one agent after the other), and
both agents at rest in the same window, each with one dummy-ups UPS attached (its CPU from
/proc/<pid>/task/*/schedstat and its wake-ups, the voluntary context switches in
/proc/<pid>/task/*/status, sampled every RESCAN_INTERVAL). Alone, docs untouched:

    python -m benchmarks.wake --loops [--events 10] [--window 60] [--previous d02fd0b]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.container import cgroup_file, container_cpu, process_cpu, upsc_answers
from benchmarks.hotplug import NOT_CONNECTED, latency_ours, measure, percentile, sandbox, summary
from benchmarks.markdown import ok, table
from reconcile.observe.uevents import Listener
from testbed import REPO
from testbed.docker import SIM_ENV, SIM_MOUNT, container_sim, docker, run_container
from testbed.nut import UEVENT_ENV, Sandbox, free_port, synthetic_uevent

RESCAN, SETTLE, SETTLE_MIN, POLL = 4.0, 2.0, 0.5, 2.0
TARGETS = {"idle_cpu": 0.2, "agent_cpu": 0.05, "plug_s": 2.5, "unplug_s": 1.5, "rss_mb": 30.0}
# As it was: the HEALTHCHECK started Python every 30 s.
OLD_HEALTH = ("--health-cmd", "nut-reconcile health", "--health-interval", "30s", "--health-start-period", "60s")
MODES = {
    "uevents": ("-e", "UEVENT_SUBSYSTEM=usb"),  # as shipped: uevents on, nut-health
    "polling": ("-e", "UEVENTS=0", "-e", f"SCAN_INTERVAL={POLL:g}", *OLD_HEALTH),
}


PREVIOUS = "d02fd0b"  # the run loop before `schedule` drove it (decide/wake.Timer)
WARMUP = 10.0  # seconds after the UPS is served before the idle window: the start's transient is not rest
LOOP_SLACK_S = 0.05  # "as good" for a latency median: the measurement's own step (20 ms polls, one upsc)
LOOP_SLACK_CPU = 0.10  # "as good" for the idle CPU: within 10 % of the previous loop's


@dataclass(frozen=True)
class Tree:
    """An agent to run: this tree's (path None) or an earlier commit's, laid out in `path`."""

    label: str
    path: Path | None = None
    commit: str = ""  # its short hash, for an earlier commit's


THIS_TREE = Tree("this tree")


def _uevent_env(box: Sandbox) -> None:
    """The defaults, with uevents heard (a virtual device's, subsystem mem: no USB here)."""
    env = {**UEVENT_ENV, "DEBUG": "0", "UEVENT_SUBSYSTEM": "mem", "SETTLE_TIME": f"{SETTLE:g}"}
    env |= {"RESCAN_INTERVAL": f"{RESCAN:g}", "SETTLE_MIN": f"{SETTLE_MIN:g}"}
    box.env.update(env)


def _start(box: Sandbox, tree: Tree) -> subprocess.Popen[str]:
    """`nut-reconcile run` of `tree` in the sandbox; the sandbox stops it at its cleanup."""
    if tree.path is None:
        return box.start_run()
    with open(box.root / "run.out", "a") as out:  # the child keeps its own copy of the fd
        # Why cwd too: `python -m` puts the working directory first on sys.path, before
        # PYTHONPATH, so run from this tree it would import this tree's agent.
        child = subprocess.Popen(
            [sys.executable, "-m", "reconcile", "run"],
            env={**box.env, "PYTHONPATH": str(tree.path)},
            cwd=tree.path,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    box.children.append(child)
    return child


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {(out.stderr or out.stdout).strip()}")
    return out.stdout.strip()


def resolve(commit: str) -> str:
    """`commit`'s short hash; exits naming it when this repository has no such commit."""
    try:
        return _git("rev-parse", "--verify", "--quiet", "--short", f"{commit}^{{commit}}")
    except SystemExit:
        raise SystemExit(f"--previous {commit!r}: no such commit in {REPO} (a shallow clone?)") from None


@contextmanager
def previous_tree(commit: str) -> Iterator[Tree]:
    """The agent of `commit` (reconcile/, its templates as the package reconcile.templates, as
    pyproject installs them) in a temp dir, removed afterwards. Checked to import from there."""
    short = resolve(commit)
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        root = Path(tmp)
        paths = [p for p in ("reconcile", "templates") if p in _git("ls-tree", "--name-only", short).split()]
        archive = subprocess.run(["git", "archive", short, *paths], cwd=REPO, capture_output=True, timeout=60)
        if archive.returncode != 0:
            raise SystemExit(f"git archive {short}: {archive.stderr.decode(errors='replace').strip()}")
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, capture_output=True, timeout=60, check=True)
        if (root / "templates").is_dir() and not (root / "reconcile" / "templates").exists():
            # Why: installed editable, this tree's finder would serve reconcile.templates from
            # this tree's templates/ to the old agent too.
            (root / "templates").rename(root / "reconcile" / "templates")
        where = subprocess.run(
            [sys.executable, "-c", "import reconcile.run, reconcile.templates as t; print(reconcile.run.__file__)"
             "; print(t.__file__)"],
            cwd=root, env={"PYTHONPATH": tmp, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        files = where.stdout.split()
        if where.returncode != 0 or len(files) != 2 or not all(f.startswith(tmp) for f in files):
            raise SystemExit(f"the agent of {short} does not import from {tmp}: {where.stdout}{where.stderr}")
        yield Tree(f"previous ({short})", root, short)


def latency_uevents(events: int, tree: Tree = THIS_TREE) -> dict[str, list[float]]:
    with sandbox() as box:
        box.dummy_rule(box.data_file())
        _uevent_env(box)
        _start(box, tree)
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


def _agent_counters(pid: int) -> tuple[float, int, int]:
    """The agent's CPU seconds (schedstat: nanoseconds, exact) and its voluntary and
    involuntary context switches so far, summed over its threads."""
    cpu, voluntary, involuntary = 0.0, 0, 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            cpu += int((task / "schedstat").read_text().split()[0]) / 1e9
            for line in (task / "status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "voluntary_ctxt_switches":
                    voluntary += int(value)
                elif key == "nonvoluntary_ctxt_switches":
                    involuntary += int(value)
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return cpu, voluntary, involuntary


def _status_is(box: Sandbox, status: str) -> bool:
    return box.upsc("my-ups", "ups.status")[1] == status


def idle_host(window: float, trees: dict[str, Tree]) -> dict[str, dict[str, Any]]:
    """Each agent of `trees` at rest on the host, all in the same window (so a machine that
    is busier in one minute than the next favours none), each in its own sandbox: one
    dummy-ups UPS attached, uevents heard, nothing changing; sampled every RESCAN_INTERVAL
    (one periodic pass a slice, give or take one as the passes drift against the samples)."""
    with contextlib.ExitStack() as stack:
        boxes, children = {}, {}
        for key, tree in trees.items():
            box = boxes[key] = stack.enter_context(sandbox())
            box.dummy_rule(box.data_file())
            _uevent_env(box)
            box.bus.plug("1-1")
            children[key] = _start(box, tree)
        for box in boxes.values():
            measure(functools.partial(_status_is, box, "OL"), 60)
        time.sleep(WARMUP)  # upsmon's first polls and the settle's last pass are the start, not rest

        def alive() -> None:
            for key, child in children.items():
                if child.poll() is not None:
                    out = boxes[key].run_output()[-3000:]
                    raise SystemExit(f"the agent of {trees[key].label} exited {child.returncode}:\n{out}")

        alive()
        # The machine's uevents of the subsystem in the window: each one wakes the agents.
        listener = stack.enter_context(contextlib.closing(Listener.open("mem")))
        slices = max(1, round(window / RESCAN))
        start = time.monotonic()
        samples = {key: [(start, *_agent_counters(child.pid))] for key, child in children.items()}
        for i in range(1, slices + 1):
            time.sleep(max(0.0, start + i * RESCAN - time.monotonic()))  # the measurement: the agents left alone
            for key, child in children.items():
                samples[key].append((time.monotonic(), *_agent_counters(child.pid)))
        stray = len(listener.drain().events)
        alive()
        served = {key: box.upsc("my-ups", "ups.status")[1] == "OL" for key, box in boxes.items()}
        rss = {}
        for key, child in children.items():
            status = Path(f"/proc/{child.pid}/status").read_text().splitlines()
            rss[key] = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    out = {}
    for key, taken in samples.items():
        cpu, wakeups = [], []
        for (t0, c0, v0, _), (t1, c1, v1, _) in itertools.pairwise(taken):
            cpu.append((c1 - c0) * 100 / (t1 - t0))
            wakeups.append((v1 - v0) / (t1 - t0))
        (t0, c0, v0, i0), (t1, c1, v1, i1) = taken[0], taken[-1]
        out[key] = {
            "cpu_percent": (c1 - c0) * 100 / (t1 - t0),
            "wakeups_per_s": (v1 - v0) / (t1 - t0),
            "involuntary_per_s": (i1 - i0) / (t1 - t0),
            "slices": {"cpu_percent": cpu, "wakeups_per_s": wakeups},
            "rss_mb": rss[key],
            "stray_uevents": stray,
            "served": served[key],
        }
    return out


def loops(events: int, window: float, previous: str = PREVIOUS) -> dict[str, Any]:
    """This tree's run loop (`schedule`) against `previous`'s, in one run."""
    with previous_tree(previous) as old:
        trees = {"schedule": THIS_TREE, "previous": old}
        print(f"  latency: this tree, then {old.label}", flush=True)
        latency = {key: latency_uevents(events, tree) for key, tree in trees.items()}
        print(f"  idle: both agents at rest in the same {window:g} s", flush=True)
        rest = idle_host(window, trees)
    return {
        "previous": old.commit,
        "latency": latency,
        "idle": {key: rest[key] for key in trees},
        "window": window,
        "slice": RESCAN,
    }


def loops_met(r: dict[str, Any]) -> dict[str, bool]:
    """At least as good as the previous loop: each latency median within LOOP_SLACK_S of
    its, and the idle CPU (the whole window) within LOOP_SLACK_CPU of its."""
    lo = r["loops"]
    new, old = lo["latency"]["schedule"], lo["latency"]["previous"]
    latency = all(
        statistics.median(new[kind]) <= statistics.median(old[kind]) + LOOP_SLACK_S for kind in ("plug", "unplug")
    )
    cpu = lo["idle"]["schedule"]["cpu_percent"] <= lo["idle"]["previous"]["cpu_percent"] * (1 + LOOP_SLACK_CPU)
    return {"loops": latency and cpu}


def loops_headline_rows(r: dict[str, Any]) -> list[list[str]]:
    lo = r.get("loops")
    if not lo:
        return []

    def figures(key: str) -> str:
        lat, rest = lo["latency"][key], lo["idle"][key]
        plug, unplug = statistics.median(lat["plug"]), statistics.median(lat["unplug"])
        return f"{plug:.2f} s / {unplug:.2f} s, {rest['cpu_percent']:.3f} %"

    return [
        [
            "run loop on `schedule`: plug / unplug (median), agent idle CPU (host)",
            figures("schedule"),
            f"≤ the previous loop's (+{LOOP_SLACK_S:g} s, +{LOOP_SLACK_CPU:.0%}): {ok(loops_met(r)['loops'])}",
            f"the loop it replaced ({lo['previous']}): {figures('previous')}",
        ]
    ]


def _spread(values: list[float], unit: str, digits: int) -> str:
    """min / median / p95 / max."""
    parts = (min(values), statistics.median(values), percentile(values, 0.95), max(values))
    return " / ".join(f"{v:.{digits}f}" for v in parts) + unit


def render_loops(r: dict[str, Any]) -> str:
    """docs/benchmarks.md's section on the run loop, side by side with the previous one."""
    lo = r.get("loops")
    if not lo:
        return ""
    short = lo["previous"]
    lat, rest = lo["latency"], lo["idle"]
    rows = [["", "n", "`schedule` (this tree)", f"previous loop ({short})", "as good?"]]
    for kind, label in (("plug", "plug → data"), ("unplug", "unplug → not connected")):
        new, old = statistics.median(lat["schedule"][kind]), statistics.median(lat["previous"][kind])
        rows.append(
            [label, str(len(lat["schedule"][kind])), _spread(lat["schedule"][kind], " s", 2),
             _spread(lat["previous"][kind], " s", 2), f"median {new - old:+.2f} s: {ok(new <= old + LOOP_SLACK_S)}"]
        )  # fmt: skip
    new_cpu, old_cpu = rest["schedule"]["cpu_percent"], rest["previous"]["cpu_percent"]
    for key, label, unit, digits in (
        ("cpu_percent", f"agent CPU at rest, % of one core, per {lo['slice']:g} s", " %", 3),
        ("wakeups_per_s", f"agent wake-ups at rest, per s, per {lo['slice']:g} s", "", 2),
    ):
        cells = [
            f"{_spread(rest[k]['slices'][key], unit, digits)} (window: {rest[k][key]:.{digits}f})"
            for k in ("schedule", "previous")
        ]
        ratio = rest["schedule"][key] / rest["previous"][key] if rest["previous"][key] else float("nan")
        verdict = f"×{ratio:.2f}" + (
            f": {ok(new_cpu <= old_cpu * (1 + LOOP_SLACK_CPU))}" if key == "cpu_percent" else " (no target)"
        )
        rows.append([label, str(len(rest["schedule"]["slices"][key])), *cells, verdict])
    rows.append(
        ["agent involuntary context switches at rest, per s", "",
         *(f"{rest[k]['involuntary_per_s']:.2f}" for k in ("schedule", "previous")), ""]
    )  # fmt: skip
    rows.append(["agent RSS at rest", "", *(f"{rest[k]['rss_mb']:.1f} MiB" for k in ("schedule", "previous")), ""])
    stray = rest["schedule"]["stray_uevents"]  # one window for both
    served = all(rest[k]["served"] for k in rest)
    return f"""## Run loop: `schedule` against the previous loop

The agent of this tree, whose loop the `schedule` package drives (reconcile/timers.py), and
the agent of {short}, whose loop timed its pass itself (decide/wake.Timer), laid out from
git and run from there; both in one run, on the host against real NUT, at the defaults
(RESCAN_INTERVAL {RESCAN:g}, SETTLE_TIME {SETTLE:g}, SETTLE_MIN {SETTLE_MIN:g}), uevents heard. Latency
as in the wake section: each plug and unplug followed by a real kernel uevent, at a random
moment against the periodic pass, one agent after the other. At rest: both agents in the
same {lo["window"]:g} s, after {WARMUP:g} s of warm-up, each in its own sandbox with one dummy-ups UPS
attached, nothing changing; each agent's CPU (schedstat, all its threads) and wake-ups (its
voluntary context switches: each sleep that ends, and each wait on upsd or a file within a
pass), sampled every {lo["slice"]:g} s (one periodic pass each, give or take one as the passes
drift against the samples). Each cell: min / median / p95 / max, and the whole window's figure.
As good: a latency median within {LOOP_SLACK_S:g} s (the measurement's step), the window's CPU
within {LOOP_SLACK_CPU:.0%} of the previous loop's. Kernel uevents of the subsystem heard in the
window: {stray} (each wakes the agents);
the UPS {"was" if served else "was **not**"} served at the end of both.

{table(rows)}

"""


def main() -> int:
    """`python -m benchmarks.wake`: a section measured alone and printed (docs untouched)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wake", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--loops", action="store_true", help="only the run loop against the previous one, on the host (no Docker)"
    )
    parser.add_argument("--events", type=int, default=10, help="plugs (and as many unplugs) per agent")
    parser.add_argument("--window", type=float, default=60.0, help="seconds at rest per agent")
    parser.add_argument("--previous", default=PREVIOUS, help="the commit whose run loop --loops compares with")
    args = parser.parse_args()
    if args.events < 1:
        parser.error(f"--events {args.events}: at least 1")
    if args.window < RESCAN:
        parser.error(f"--window {args.window:g}: at least RESCAN_INTERVAL, {RESCAN:g} s")
    random.seed(2026)
    if args.loops:
        resolve(args.previous)  # a bad commit is said before anything is measured
        print(render_loops({"loops": loops(args.events, args.window, args.previous)}))
    else:
        from benchmarks.container import IMAGES

        print(render({"wake": run(IMAGES[("amd64", "tarball")], args.events, args.window)}))
    return 0


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


if __name__ == "__main__":
    raise SystemExit(main())
