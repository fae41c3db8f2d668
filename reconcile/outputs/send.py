"""The child process that sends one notification through Apprise (outputs/notify.py runs it).

Why a child process: Apprise and what it loads (requests, its plugins) cost the agent
about 17 MiB it would keep for good; here they are paid for the second a message takes,
and a sender that hangs is killed by its parent's timeout, never the agent.

Reads one JSON object on stdin (never argv: argv is readable by every user through
/proc, and the URLs hold tokens):
  {"urls": [...], "title": "...", "body": "...", "type": "info|success|warning|failure"}
or, with `--check`, {"urls": [...]} only: which URLs Apprise does not accept.
Writes one JSON object on stdout: {"ok": bool, "refused": [1-based indexes], "error": "..."};
a check also gives "unknown" (those of the refused whose scheme this Apprise does not
know at all) and "version" (Apprise's). It never prints a URL: a refused one is named by
its index.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any


def _load(raw: str) -> dict[str, Any]:
    data = json.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("urls"), list):
        raise ValueError("not an object with a list of urls")
    if not all(isinstance(u, str) for u in data["urls"]):
        raise ValueError("urls: not strings")
    return data


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def _schemes(sender: Any) -> set[str] | None:
    """Every scheme this Apprise has a service for (its public details()), or None when it
    cannot say: then a refused URL is not told apart as an unknown scheme."""
    try:
        found: set[str] = set()
        for service in sender.details(show_disabled=True)["schemas"]:
            for key in ("protocols", "secure_protocols"):
                given = service.get(key) or ()
                # Why both: a service lists one protocol as a string, several as a list.
                found.update(p.lower() for p in ([given] if isinstance(given, str) else given) if isinstance(p, str))
        return found
    except Exception:  # noqa: BLE001 - Apprise's details() differ between versions; the check goes on without them
        return None


def main(argv: list[str]) -> int:
    check = argv[1:] == ["--check"]
    try:
        data = _load(sys.stdin.read())
    except ValueError as exc:
        print(json.dumps({"ok": False, "refused": [], "error": f"bad request: {exc}"}))
        return 2
    # Why Apprise's log is off unless DEBUG=1: its messages may name a service's host or
    # account; our own line (in the parent) says what failed, by scheme and index.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING if os.environ.get("DEBUG") == "1" else 100)
    try:
        import apprise
    except ImportError as exc:
        print(json.dumps({"ok": False, "refused": [], "error": f"Apprise is not installed: {exc}"}))
        return 1
    sender = apprise.Apprise()
    refused = [i for i, url in enumerate(data["urls"], 1) if not sender.add(url)]
    if check or refused:
        error = f"Apprise does not accept URL {', '.join(map(str, refused))}" if refused else ""
        schemes = _schemes(sender) if refused else None
        unknown = [] if schemes is None else [i for i in refused if _scheme(data["urls"][i - 1]) not in schemes]
        version = str(getattr(apprise, "__version__", ""))
        print(
            json.dumps({"ok": not refused, "refused": refused, "unknown": unknown, "version": version, "error": error})
        )
        return 0 if not refused else 1
    kinds = {"info", "success", "warning", "failure"}
    kind = str(data.get("type")) if data.get("type") in kinds else "info"
    ok = bool(sender.notify(body=str(data.get("body", "")), title=str(data.get("title", "")), notify_type=kind))
    # Apprise says only whether every service took it; which one failed is in its log (DEBUG=1).
    print(json.dumps({"ok": ok, "refused": [], "error": "" if ok else "a service did not take the message"}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
