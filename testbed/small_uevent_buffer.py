"""`python -m testbed.small_uevent_buffer run`: the agent with the smallest uevent socket
buffer the kernel allows, so a burst of uevents overflows it (ENOBUFS) for certain."""

from __future__ import annotations

import sys

from reconcile.cli import main
from reconcile.observe import uevents

uevents.BUFFER = 1  # the kernel rounds it up to its minimum (a few KiB)

if __name__ == "__main__":
    sys.exit(main())
