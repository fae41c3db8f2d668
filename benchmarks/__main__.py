"""`python -m benchmarks`: every measurement of the project's headline, on this machine,
written to docs/benchmarks.md (tables, plots, the machine and the date) and docs/benchmarks.json;
the headline table is printed and quoted in the README (between its markers). Not part of
the test run; no test asserts a time.

    python -m benchmarks [--events 20] [--quick] [--only latency,resources] [--previous d02fd0b]

Needs what `sudo ./dev.sh test` sets up: NUT, umockdev, a Docker engine with buildx and
arm64 emulation, the images (missing ones are built), and ../shared/nut-src for the
source build. --quick takes fewer samples (a smoke run, not for the report). The section
"loops" runs the agent of an earlier commit (--previous) beside this tree's: it needs this
repository's git history.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks import build, container, hotplug, outputs, report, tick_cost, wake
from testbed.docker import docker

DOCS = Path(__file__).resolve().parent.parent / "docs"
INTERVALS = (1.0, 2.0, 5.0)
BASELINE_INTERVAL = 5.0  # the replaced design's 60 s, shortened to measure; the report extrapolates


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or "unknown",
    )
    mem = next(
        line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )

    def version(*argv: str) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            return (out.stdout + out.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "unknown"

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": f"{cpu}, {subprocess.run(['nproc'], capture_output=True, text=True, check=False).stdout.strip()} cores",
        "memory": f"{int(mem) / 1048576:.0f} GiB",
        "python": platform.python_version(),
        "nut_host": version("/lib/nut/upsd", "-V"),
        "docker": version("docker", "version", "--format", "{{.Server.Version}}"),
    }


SECTIONS = ("tick", "latency", "interruption", "builds", "images", "startup", "resources", "outputs", "wake", "loops")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20, help="plugs (and as many unplugs) per interval")
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke run, not for the report")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"measure again only these sections ({','.join(SECTIONS)}); the others are taken from "
        "docs/benchmarks.json (after a change that touches only them)",
    )
    parser.add_argument(
        "--previous", default=wake.PREVIOUS, help="loops: the commit whose run loop this tree's is compared with"
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    if not only <= set(SECTIONS):
        parser.error(f"--only: unknown section(s) {', '.join(sorted(only - set(SECTIONS)))}")
    if "loops" in only:
        wake.resolve(args.previous)  # a bad commit is said before an hour of measuring, not after
    events = 3 if args.quick else args.events
    random.seed(2026)
    saved = DOCS / "benchmarks.json"
    results: dict[str, Any] = {}
    if only != set(SECTIONS):
        if not saved.is_file():
            parser.error(f"--only needs an earlier full run's {saved}")
        results = json.loads(saved.read_text())
    before = results.get("machine")
    results["machine"] = machine()
    # When and where each section was measured (with --only, they come from different runs,
    # maybe on another machine).
    results["measured"] = {
        **results.get("measured", {}),
        **{section: results["machine"]["date"] for section in SECTIONS if section in only},
    }

    def where(m: dict[str, str]) -> str:
        return f"{m['cpu']} ({m['host']})"

    on = dict(results.get("measured_on", {}))
    for section in SECTIONS:
        if section in only:
            on[section] = where(results["machine"])
        elif section not in on and before:
            on[section] = where(before)
    results["measured_on"] = on

    if "tick" in only:
        print("tick cost against bus size", flush=True)
        results["tick"] = tick_cost.run((1, 10) if args.quick else tick_cost.SIZES)

    if "latency" in only:
        print("hotplug latency (agent, then the replaced design)", flush=True)
        results["latency"] = {f"{si:g}": hotplug.latency_ours(si, events) for si in INTERVALS}
        results["latency_baseline"] = hotplug.latency_baseline(BASELINE_INTERVAL, events)
        results["baseline_interval"] = BASELINE_INTERVAL
        results["settle"] = hotplug.SETTLE

    if "interruption" in only:
        print("client interruption", flush=True)
        rounds = 2 if args.quick else 5
        results["interruption"] = {
            "ours": hotplug.interruption_ours(rounds),
            "baseline": hotplug.interruption_baseline(rounds, BASELINE_INTERVAL),
        }

    if "builds" in only:
        print("build times, cold and warm (the emulated arm64 build compiles NUT under qemu: long)", flush=True)
        results["builds"] = build.run(emulated=not args.quick)

    image = container.IMAGES[("amd64", "tarball")]
    if "images" in only:
        print("images (missing ones are built)", flush=True)
        builds: dict[str, float] = {}
        container.ensure_images(builds)
        results["image_builds"] = builds
        results["images"] = container.image_sizes()
        results["nut_in_image"] = docker(
            "run", "--rm", "--entrypoint", "/opt/nut/sbin/upsd", image, "-V"
        ).stdout.strip()

    if "startup" in only:
        print("start-up", flush=True)
        results["startup"] = container.startup(image, 2 if args.quick else 5)

    if "resources" in only:
        print("resources at rest (60 s)", flush=True)
        results["resources"] = container.resources(image, 10.0 if args.quick else 60.0)

    if "outputs" in only:
        print("outputs: RSS with every output on, a scrape's CPU, event to notification and MQTT", flush=True)
        results["outputs"] = outputs.run(image, 3 if args.quick else 10)

    if "wake" in only:
        print("wake on uevents against polling: latency on the host, idle in the container (2 x 60 s)", flush=True)
        results["wake"] = wake.run(image, events, 10.0 if args.quick else 60.0)

    if "loops" in only:
        window = 10.0 if args.quick else 60.0
        print(f"run loop: this tree's against {args.previous}'s, on the host (2 x {window:g} s at rest)", flush=True)
        results["loops"] = wake.loops(events, window, args.previous)

    DOCS.mkdir(exist_ok=True)
    saved.write_text(json.dumps(results, indent=2) + "\n")
    headline = report.write(results, DOCS)
    if report.quote_in_readme(DOCS.parent / "README.md", results):
        print("README.md: headline table updated")
    print(headline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
