"""upsmon's NOTIFYCMD: the program's name and where it finds the agent's socket.

The agent (settings._notify) writes the program's path into upsmon.conf and opens the
socket; the program (outputs/relay.py, installed as `nut-reconcile-notify`) sends each of
upsmon's notices to it. Both read these names from here. Standard library only: upsmon
runs the program at the start of a shutdown, on a Pi.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

PROGRAM = "nut-reconcile-notify"  # the console script (pyproject.toml [project.scripts])
SOCKET = "nut-reconcile-notify.sock"  # in NUT's state dir
# NUT_STATEPATH's default: the agent's (settings.py) and the image's NUT's own
# (configure --with-statepath), so an upsmon started without it still finds the socket.
DEFAULT_STATEPATH = "/var/run/nut"


def socket_path(env: Mapping[str, str]) -> str:
    """The agent's socket for an environment: `$NUT_STATEPATH/nut-reconcile-notify.sock`.

    Why NUT_STATEPATH and no argument or variable of our own: NUT 2.8.6 gives NOTIFYCMD's
    program nothing but the notice, and upsmon needs NUT_STATEPATH itself (the agent
    starts every NUT program with it, settings.nut_env, and adopts only an upsmon whose
    environment has it), so upsmon's children inherit it wherever the agent put it."""
    return os.path.join(env.get("NUT_STATEPATH") or DEFAULT_STATEPATH, SOCKET)


# upssched (on_battery_max_seconds): where the relay and the agent (settings.py) look for
# it, in this order; NUT_UPSSCHED (an executable's path) first, then PATH. One list for
# both, so the upssched the agent checked at start is the one the relay runs.
UPSSCHED_DIRS = ("/opt/nut/sbin", "/usr/sbin", "/sbin", "/lib/nut", "/usr/lib/nut")
UPSSCHED_CONF = "upssched.conf"  # in NUT's config dir (NUT_CONFPATH), where upssched reads it


def find_upssched(env: Mapping[str, str]) -> str | None:
    """The upssched program for an environment, or None."""
    override = env.get("NUT_UPSSCHED")
    if override:
        return override if os.path.isfile(override) and os.access(override, os.X_OK) else None
    for directory in UPSSCHED_DIRS:
        candidate = os.path.join(directory, "upssched")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("upssched", path=env.get("PATH"))
