"""upsmon's NOTIFYCMD when notifications are on: hands upsmon's notice to the agent.

    NOTIFYCMD "/usr/bin/python3 -m reconcile.outputs.relay /var/run/nut/nut-reconcile-notify.sock"

upsmon runs it (forked, as its RUN_AS_USER) with the notice's text as the last argument,
and NOTIFYTYPE (ONBATT, LOWBATT ...) and UPSNAME (my-ups@127.0.0.1:3493) in the
environment. It sends one datagram to the agent's socket and exits; the agent checks it,
adds the UPS's charge and runtime and what happens next, and sends it (outputs/notify.py).

Why a relay and not the sender itself: the notification URLs hold tokens and stay with
the agent (root), never in upsmon's environment or its user's reach. Why so small (only
the standard library, no reconcile import beyond this package): upsmon may run it at
the start of a shutdown, on a Pi. It never fails upsmon: any error is one line on stderr
and exit 0 (upsmon ignores NOTIFYCMD's exit code anyway).
"""

from __future__ import annotations

import json
import os
import socket
import sys

TIMEOUT = 2.0
LIMIT = 4096  # bytes of one datagram (the agent reads no more)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: python -m reconcile.outputs.relay SOCKET MESSAGE", file=sys.stderr)
        return 0
    path, message = argv[1], argv[-1]
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
        print(f"nut-reconcile relay: cannot reach the agent at {path}: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
