"""Benchmark: how long the rollout takes, over real SSH to docker-in-docker Pis.

    python -m benchmarks.fleet

Measures the wall time of `pyinfra <inventory> deploy.py -y` for a first deploy to one
fresh Pi, a first deploy to three fresh Pis, and a rerun with nothing to change on those
three. Targets: three hosts in at most 1.5x the time of one; a no-change rerun in at most
30 % of a first run. Reported, never a test: a loaded machine is no place for a timing gate.
Needs a Docker engine and the image ups-nut-smart:latest (`sudo ./dev.sh test` builds it).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testbed.docker import docker
from testbed.pis import Fleet, pihost_image, start_pi

TARGET_SCALE, TARGET_RERUN = 1.5, 0.30


def timed(fleet: Fleet, hosts: tuple[str, ...]) -> float:
    start = time.monotonic()
    result = fleet.pyinfra("-y", hosts=hosts)
    took = time.monotonic() - start
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"deploy to {', '.join(hosts)} failed")
    return took


def main() -> int:
    if docker("image", "inspect", "ups-nut-smart:latest", check=False).returncode != 0:
        raise SystemExit("no image ups-nut-smart:latest: build it first (sudo ./dev.sh test)")
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        root = Path(tmp)
        key = root / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
        image = pihost_image("v2")
        pis = {name: start_pi(name, image, key, "root") for name in ("pi1", "pi2", "pi3", "pi4")}
        try:
            fleet = Fleet(root, key, pis)
            one = timed(fleet, ("pi1",))
            three = timed(fleet, ("pi2", "pi3", "pi4"))
            rerun = timed(fleet, ("pi2", "pi3", "pi4"))
        finally:
            for pi in pis.values():
                docker("rm", "-f", pi.container, check=False, timeout=120)
                docker("volume", "rm", f"{pi.container}-docker", check=False)
    scale, share = three / one, rerun / three
    print(
        f"benchmark fleet: first deploy 1 host {one:.1f}s, 3 hosts {three:.1f}s ({scale:.2f}x, target <= "
        f"{TARGET_SCALE}x: {'MET' if scale <= TARGET_SCALE else 'MISSED'}); no-change rerun {rerun:.1f}s "
        f"({share:.0%} of a first run, target <= {TARGET_RERUN:.0%}: {'MET' if share <= TARGET_RERUN else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
