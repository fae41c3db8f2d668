"""The image, measured through Docker: start-up, resources at rest, and image sizes.

Start-up: `docker run` -> `upsc my-ups` answering from the host through the published port
(with no UPS, NUT's own "Driver not connected" is the answer; with a UPS, its data).
Resources: the agent's RSS, the whole container's memory (docker stats), and the CPU the
container used over 60 s at SCANINTERVAL 2 with a UPS attached and nothing changing.
Images: the size of the image for amd64, arm64 and arm/v7 with NUT from source (the default,
2.8.4), and for amd64 and arm64 from Debian's packages (2.8.0). Missing ones are built.
"""

from __future__ import annotations

import functools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.hotplug import measure
from benchmarks.markdown import table
from testbed.docker import SIM_ENV, SIM_MOUNT, container_sim, docker, run_container
from testbed.images import TARGETS, build, source_served
from testbed.nut import free_port, upsc

IMAGES = {
    ("amd64", "tarball"): "ups-nut-smart:source",
    ("amd64", "debian"): "ups-nut-smart:latest",
    ("arm64", "tarball"): "ups-nut-smart:source-arm64",
    ("arm64", "debian"): "ups-nut-smart:arm64",
    ("armv7", "tarball"): "ups-nut-smart:source-armv7",
}


def ensure_images(log: dict[str, float]) -> None:
    """Build the images from this tree (BuildKit's cache makes an unchanged one quick; NUT is
    cross-compiled for arm, and only the runtime stage runs under qemu); `log` gets each
    build's seconds."""
    with source_served() as source_args:
        for (arch, source), tag in IMAGES.items():
            print(f"building {tag} ({arch}, NUT from {source})", flush=True)
            args = source_args if source == "tarball" else ["--build-arg", "NUT_SOURCE=debian"]
            log[tag] = build(tag, TARGETS[arch], *args).seconds


def image_sizes() -> dict[str, dict[str, float]]:
    sizes: dict[str, dict[str, float]] = {}
    for (arch, source), tag in IMAGES.items():
        size = int(docker("image", "inspect", "-f", "{{.Size}}", tag).stdout.strip())
        sizes.setdefault(arch, {})[source] = size / 1e6
    return sizes


def upsc_answers(port: int, with_ups: bool) -> bool:
    code, text = upsc(port, "my-ups", "ups.status")
    return code == 0 if with_ups else text == "Error: Driver not connected"


def startup(image: str, rounds: int = 5) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"no_ups": [], "ups": []}
    for with_ups in (False, True):
        for i in range(rounds):
            with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
                bus = container_sim(Path(tmp))
                if with_ups:
                    bus.plug("1-1")
                port, name = free_port(), f"ups-nut-smart-bench-start-{i}"
                docker("rm", "-f", name, check=False)
                # From before `docker run`: the engine's own part of the start counts too.
                start = time.monotonic()
                run_container(image, name, port, "-v", f"{tmp}:{SIM_MOUNT}", *SIM_ENV)
                try:
                    measure(functools.partial(upsc_answers, port, with_ups), 60)
                    out["ups" if with_ups else "no_ups"].append(time.monotonic() - start)
                finally:
                    docker("rm", "-f", name, check=False, timeout=60)
    return out


def cgroup_file(container_id: str, controller: str, name: str) -> Path:
    """A file of the container's cgroup: v1 (<controller>/docker/<id>) or v2 (one tree)."""
    for candidate in (
        Path(f"/sys/fs/cgroup/{controller}/docker/{container_id}/{name}"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/{name}"),
        Path(f"/sys/fs/cgroup/docker/{container_id}/{name}"),
    ):
        if candidate.exists():
            return candidate
    raise SystemExit(f"no cgroup file {name} for container {container_id}")


def container_cpu(container_id: str) -> float:
    """The container's CPU seconds so far (all its processes, also those already gone)."""
    try:
        return int(cgroup_file(container_id, "cpuacct", "cpuacct.usage").read_text()) / 1e9
    except SystemExit:
        stat = cgroup_file(container_id, "cpu", "cpu.stat").read_text()
        return next(int(line.split()[1]) for line in stat.splitlines() if line.startswith("usage_usec ")) / 1e6


def _memory_mb(container_id: str) -> float:
    """What `docker stats` shows: the cgroup's memory less its inactive file cache. Read
    from the cgroup because this machine's engine (20.10 on a hybrid cgroup host) reports 0."""
    try:
        usage = int(cgroup_file(container_id, "memory", "memory.usage_in_bytes").read_text())
        inactive_key = "total_inactive_file"
    except SystemExit:
        usage = int(cgroup_file(container_id, "memory", "memory.current").read_text())
        inactive_key = "inactive_file"
    stat = cgroup_file(container_id, "memory", "memory.stat").read_text()
    inactive = next((int(line.split()[1]) for line in stat.splitlines() if line.split()[0] == inactive_key), 0)
    return (usage - inactive) / 1048576


def process_cpu(pids: list[int]) -> dict[int, tuple[str, float]]:
    """Each live process's name and CPU time so far (schedstat: nanoseconds, exact)."""
    out = {}
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            out[pid] = (comm, int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9)
        except (OSError, ValueError, IndexError):
            continue
    return out


def resources(image: str, window: float = 60.0) -> dict[str, float]:
    """At rest, the default image (uevents heard: SCAN_INTERVAL 2 is set, but only polling would use
    it), a UPS attached. The CPU is split: the agent, NUT's daemons,
    and the rest (the processes that came and went in the window: Docker's health check,
    nut-health every 30 s)."""
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        bus = container_sim(Path(tmp))
        bus.plug("1-1")
        port, name = free_port(), "ups-nut-smart-bench-idle"
        docker("rm", "-f", name, check=False)
        run_container(image, name, port, "-v", f"{tmp}:{SIM_MOUNT}", *SIM_ENV, "-e", "SCAN_INTERVAL=2")
        try:
            measure(lambda: upsc_answers(port, True), 60)
            time.sleep(10)  # settle down after start before measuring rest
            container_id = docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
            agent_pid = int(docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip())
            pids = [int(p) for p in cgroup_file(container_id, "pids", "cgroup.procs").read_text().split()]
            before, procs_before = container_cpu(container_id), process_cpu(pids)
            time.sleep(window)  # the measurement itself: the container at rest for the window
            total = container_cpu(container_id) - before
            procs_after = process_cpu(pids)
            agent = procs_after[agent_pid][1] - procs_before[agent_pid][1]
            nut = sum(
                procs_after[pid][1] - procs_before[pid][1]
                for pid in procs_after
                if pid != agent_pid and pid in procs_before
            )
            status = docker("exec", name, "cat", "/proc/1/status").stdout
            rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024
            stats = json.loads(docker("stats", "--no-stream", "--format", "{{json .}}", name).stdout)
            reported = _megabytes(stats["MemUsage"].split("/")[0].strip())
            memory = reported if reported > 0 else _memory_mb(container_id)
        finally:
            docker("rm", "-f", name, check=False, timeout=60)
    percent = 100 / window
    return {
        "agent_rss_mb": rss,
        "container_mb": memory,
        "idle_cpu_percent": total * percent,
        "idle_cpu_agent_percent": agent * percent,
        "idle_cpu_nut_percent": nut * percent,
        "idle_cpu_other_percent": (total - agent - nut) * percent,
    }


def _megabytes(text: str) -> float:
    """docker stats' figure ("31.2MiB") in MiB."""
    for unit, factor in (("GiB", 1024.0), ("MiB", 1.0), ("KiB", 1 / 1024), ("B", 1 / 1048576)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(f"unknown memory figure {text!r}")


def render_startup(r: dict[str, Any]) -> str:
    """docs/benchmarks.md's section on start-up."""
    start_rows = [["", "n", "median", "max"]]
    for key, label in (
        ("no_ups", "no UPS (answers Driver not connected)"),
        ("ups", "a UPS attached (answers its data)"),
    ):
        vals = r["startup"][key]
        start_rows.append([label, str(len(vals)), f"{statistics.median(vals):.2f} s", f"{max(vals):.2f} s"])
    return f"""## Start-up

`docker run` of the default image → `upsc my-ups` answering from the host, on the published port.

{table(start_rows)}

"""


def render_resources(r: dict[str, Any]) -> str:
    """docs/benchmarks.md's section on resources at rest."""
    res = r["resources"]
    return f"""## Resources at rest

The default image, a UPS attached, nothing changing, measured over 60 s (uevents heard, so the agent
passes every RESCAN_INTERVAL; the SCAN_INTERVAL 2 it is given would apply only to polling):
agent RSS {res["agent_rss_mb"]:.1f} MiB (target ≤ 30), whole container {res["container_mb"]:.1f} MiB
(docker stats' figure, the cgroup's memory less inactive file cache, read from the cgroup where
docker stats shows 0; target ≤ 40), CPU {res["idle_cpu_percent"]:.3f} % of one core (target ≤ 0.5):
the agent's passes {res["idle_cpu_agent_percent"]:.3f} %, NUT's daemons (upsd, upsmon, the driver)
{res["idle_cpu_nut_percent"]:.3f} %, and the processes that came and went, Docker's health check
(`nut-health` every 30 s: a shell and one find), {res["idle_cpu_other_percent"]:.3f} %.

"""


def render_images(r: dict[str, Any]) -> str:
    """docs/benchmarks.md's section on image sizes."""
    img = r["images"]
    img_rows = [["architecture", "NUT from source (2.8.4, default)", "NUT from Debian (2.8.0)"]]
    for arch, sizes in img.items():
        img_rows.append([arch, *(f"{sizes[kind]:.0f} MB" if kind in sizes else "—" for kind in ("tarball", "debian"))])
    return f"""## Images

{table(img_rows)}

"""
