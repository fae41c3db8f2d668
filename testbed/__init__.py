"""What the tests and the benchmarks both stand on (neither imports the other):

  nut.py      the NUT sandbox: Debian's real upsd, upsdrvctl, dummy-ups, upsc and upsmon
              in a temp dir on a loopback port, and a simulated USB bus (a sysfs tree)
  docker.py   the Docker CLI with a timeout, and the simulated bus bind-mounted into a container
  images.py   the target platforms, their local base images, NUT's source at a fixed
              loopback address, and one build()
  pis.py      docker-in-docker "Raspberry Pis" reached by pyinfra's real SSH connector
  crashing.py the agent that SIGKILLs itself before step N (the fault tests' crash hook)

Only the USB bus and the UPS hardware are simulated.
"""

from __future__ import annotations

from pathlib import Path

from reconcile.waiting import await_true

__all__ = ["REPO", "await_true"]

REPO = Path(__file__).resolve().parent.parent
