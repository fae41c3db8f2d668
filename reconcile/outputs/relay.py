"""upsmon's NOTIFYCMD when notifications are on: hands upsmon's notice to the agent.

    NOTIFYCMD /usr/local/bin/nut-reconcile-notify

`nut-reconcile-notify` is this module's console script (pyproject.toml): one program at a
path without spaces, taking nothing but what upsmon gives it. Why that shape: NUT 2.8.4
runs NOTIFYCMD's one word through the shell (`system("<cmd> \\"<notice>\\"")`), NUT 2.8.6
execs its first token as a program path (no shell, no words split off it); a bare path
works in both, a `python -m ... <socket>` line only in the first.

upsmon runs it (forked, as its RUN_AS_USER) with the notice's text as the last argument,
and NOTIFYTYPE (ONBATT, LOWBATT ...) and UPSNAME (my-ups@127.0.0.1:3493) in the
environment. It sends one datagram to the agent's socket and exits; the agent checks it,
adds the UPS's charge and runtime and what happens next, and sends it (outputs/notify.py).

The socket is `$NUT_STATEPATH/nut-reconcile-notify.sock` (reconcile/notifycmd.py says why).

upssched (a [[device]] rule's on_battery_max_seconds): NUT has one NOTIFYCMD, so the relay
runs upssched too, first, for ONBATT and ONLINE when upssched.conf (in NUT_CONFPATH, the
agent's) has a timer: upssched reads NOTIFYTYPE and UPSNAME from the environment it
inherits. With notifications off no agent socket exists, and the relay then stays quiet.

Why a relay and not the sender itself: the notification URLs hold tokens and stay with
the agent (root), never in upsmon's environment or its user's reach. Why so small (the
standard library and reconcile.notifycmd only): upsmon may run it at the start of a
shutdown, on a Pi. It never fails upsmon: any error is one line on stderr and exit 0
(upsmon ignores NOTIFYCMD's exit code anyway).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping

from reconcile.notifycmd import PROGRAM, UPSSCHED_CONF, find_upssched, socket_path

TIMEOUT = 2.0
LIMIT = 4096  # bytes of one datagram (the agent reads no more)
# upssched's own client gives up after a few tries of a quarter second each; its daemon
# forks away at once (stdin/stdout/stderr on /dev/null), so nothing holds this up.
UPSSCHED_TIMEOUT = 10.0
UPSSCHED_TYPES = ("ONBATT", "ONLINE")  # model.UPSSCHED_NOTICES (not imported: stdlib only)


def has_timers(env: Mapping[str, str]) -> bool:
    """Whether upssched.conf in NUT's config dir starts a timer (an `AT ...` line)."""
    conf = os.path.join(env.get("NUT_CONFPATH") or "", UPSSCHED_CONF)
    try:
        with open(conf, encoding="ascii", errors="replace") as handle:
            return any(line.split()[:1] == ["AT"] for line in handle)
    except OSError:
        return False


def run_upssched(env: Mapping[str, str]) -> bool:
    """Run upssched for this notice when it has a timer to start or cancel; True if it ran."""
    if env.get("NOTIFYTYPE") not in UPSSCHED_TYPES or not has_timers(env):
        return False
    program = find_upssched(env)
    if program is None:
        print(f"{PROGRAM}: upssched not found: on_battery_max_seconds is not enforced", file=sys.stderr)
        return False
    try:
        # Its output (errors only) goes where the relay's does: upsmon's log.
        done = subprocess.run([program], stdin=subprocess.DEVNULL, timeout=UPSSCHED_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"{PROGRAM}: upssched: {exc}", file=sys.stderr)
        return True
    if done.returncode != 0:
        print(f"{PROGRAM}: upssched exited {done.returncode}", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv if argv is None else argv
    if len(args) < 2:
        print(f"usage: {PROGRAM} MESSAGE (upsmon's NOTIFYCMD; NOTIFYTYPE, UPSNAME in the environment)", file=sys.stderr)
        return 0
    chained = run_upssched(os.environ)
    # Why the last argument: it is where upsmon puts the notice, however it was started.
    path, message = socket_path(os.environ), args[-1]
    if chained and not os.path.exists(path):
        return 0  # notifications are off: upssched was all there was to do
    notice = {
        "type": os.environ.get("NOTIFYTYPE", ""),
        "ups": os.environ.get("UPSNAME", ""),
        "message": message[:512],
    }
    data = json.dumps(notice).encode("utf-8", "replace")[:LIMIT]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.sendto(data, path)
    except OSError as exc:
        print(f"{PROGRAM}: cannot reach the agent at {path}: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
