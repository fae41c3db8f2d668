"""`python -m benchmarks`: every measurement of the project's headline, on this machine,
written to docs/benchmarks.md (tables, plots, the machine and the date) and docs/benchmarks.json;
the headline table is printed and quoted in the README (between its markers). Not part of
the test run; no test asserts a time.

    python -m benchmarks [--events 20] [--quick]

Needs what `sudo ./dev.sh test` sets up: NUT, umockdev, a Docker engine with buildx and
arm64 emulation, the images (missing ones are built), and ../shared/nut-src for the
source build. --quick takes fewer samples (a smoke run, not for the report).
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

from benchmarks import container, hotplug, report, tick_cost
from tests.helpers import docker

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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20, help="plugs (and as many unplugs) per interval")
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke run, not for the report")
    args = parser.parse_args()
    events = 3 if args.quick else args.events
    random.seed(2026)
    results: dict[str, Any] = {"machine": machine()}

    print("1/6 tick cost against bus size", flush=True)
    results["tick"] = tick_cost.run((1, 10) if args.quick else tick_cost.SIZES)

    print("2/6 hotplug latency (agent, then the replaced design)", flush=True)
    results["latency"] = {f"{si:g}": hotplug.latency_ours(si, events) for si in INTERVALS}
    results["latency_baseline"] = hotplug.latency_baseline(BASELINE_INTERVAL, events)
    results["baseline_interval"] = BASELINE_INTERVAL
    results["settle"] = hotplug.SETTLE

    print("3/6 client interruption", flush=True)
    rounds = 2 if args.quick else 5
    results["interruption"] = {
        "ours": hotplug.interruption_ours(rounds),
        "baseline": hotplug.interruption_baseline(rounds, BASELINE_INTERVAL),
    }

    print("4/6 images (missing ones are built)", flush=True)
    builds: dict[str, float] = {}
    container.ensure_images(builds)
    results["image_builds"] = builds
    results["images"] = container.image_sizes()
    image = container.IMAGES[("amd64", "tarball")]
    results["nut_in_image"] = docker("run", "--rm", "--entrypoint", "/opt/nut/sbin/upsd", image, "-V").stdout.strip()

    print("5/6 start-up", flush=True)
    results["startup"] = container.startup(image, 2 if args.quick else 5)

    print("6/6 resources at rest (60 s)", flush=True)
    results["resources"] = container.resources(image, 10.0 if args.quick else 60.0)

    DOCS.mkdir(exist_ok=True)
    (DOCS / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    headline = report.write(results, DOCS)
    if report.quote_in_readme(DOCS.parent / "README.md", results):
        print("README.md: headline table updated")
    print(headline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
