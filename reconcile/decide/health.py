"""What makes the agent healthy (`health`, the image's HEALTHCHECK, the fleet's gate):
pure checks over a decision and a few live readings, and the one-line verdict they add
up to (`verdict`): what `nut-reconcile health` prints, and what `run` records at every
tick for the image's HEALTHCHECK (act/verdict.py, docker/nut-health.sh).

Serving is not enough: a UPS exists to shut its hosts down. So besides fresh data for
every UPS on the bus, the shutdown path must be whole:

- our upsmon runs (unless [upsmon] enabled = false),
- upsmon.conf watches every attached or held UPS, and MINSUPPLIES is at least 1 while a
  UPS that powers this host is attached (0 would mean nothing can ever shut it down),
- the network upsmons the owner expects ([shutdown] expect_secondaries: the Pi's own
  upsmon that halts the Pi, set by the fleet rollout) are logged in to the first UPS
  (UPS_NAME, my-ups: the one the fleet points every secondary at). upsd's LIST CLIENT
  counts logins; our own upsmon is one of them.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconcile.decide.decision import Decision

# Why in model.py: act/verdict.py records it, and act/ never imports decide/.
from reconcile.model import Verdict as Verdict

# What `run` records as it stops: a stopping container must not read as healthy.
STOPPED = Verdict(False, "unhealthy: the agent stopped")


def _upsmon_conf(text: str | None) -> tuple[set[str], int]:
    """The UPS names upsmon.conf's MONITOR lines watch, and its MINSUPPLIES (NUT's default 1)."""
    watched, minsupplies = set(), 1
    for line in (text or "").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "MONITOR":
            watched.add(words[1].rsplit("@", 1)[0])
        elif len(words) == 2 and words[0] == "MINSUPPLIES" and words[1].isdigit():
            minsupplies = int(words[1])
    return watched, minsupplies


def serving(d: Decision) -> dict[str, str]:
    """UPS name -> why it is not served well, for every UPS on the bus (or held)."""
    served = d.obs.facts.served or {}
    bad = {}
    for ups in d.attached:
        name = d.names[ups.key]
        view = served.get(name)
        if view is None or view.state != "ok":
            bad[name] = view.state if view else "not served"
    for ups in d.held:
        bad[d.names[ups.key]] = "held: vanished while on battery"
    return bad


def shutdown_path(d: Decision, primary: str, clients: Mapping[str, int], expect_secondaries: int) -> list[str]:
    """Why the shutdown path is broken (empty: whole). `clients`: upsd's LIST CLIENT
    count per UPS; `primary`: the first UPS's name."""
    if not d.config.upsmon_enabled:
        return []
    broken = []
    if d.owned.upsmon is None:
        broken.append("upsmon is not running")
    watched, minsupplies = _upsmon_conf(d.actual.files["upsmon.conf"].content)
    ours = [d.names[u.key] for u in (*d.attached, *d.held)]
    unwatched = sorted(set(ours) - watched)
    if unwatched:
        broken.append(f"upsmon.conf does not watch {', '.join(unwatched)}")
    if any(u.powers_host for u in d.attached) and minsupplies < 1:
        broken.append(f"MINSUPPLIES is {minsupplies}: no UPS can shut this host down")
    if expect_secondaries and primary in ours:
        want = expect_secondaries + (1 if d.owned.upsmon is not None else 0)
        if clients.get(primary, 0) < want:
            broken.append(
                f"{primary}: {clients.get(primary, 0)} upsmon login(s), {want} expected (ours and "
                f"{expect_secondaries} network secondary: is the host's own upsmon running and logged in?)"
            )
    return broken


def verdict(d: Decision, primary: str, clients: Mapping[str, int], expect_secondaries: int) -> Verdict:
    """The first that fails of: upsd answers, every UPS on the bus is served with fresh
    data (`serving`), the shutdown path is whole (`shutdown_path`); else healthy."""
    served = d.obs.facts.served
    if served is None:
        return Verdict(False, "unhealthy: upsd is not answering" + ("" if d.owned.upsd else " (not running)"))
    bad = serving(d)
    if bad:
        return Verdict(False, "unhealthy: " + ", ".join(f"{n} {s}" for n, s in sorted(bad.items())))
    broken = shutdown_path(d, primary, clients, expect_secondaries)
    if broken:
        return Verdict(False, "unhealthy: shutdown path: " + "; ".join(broken))
    return Verdict(True, f"healthy: upsd serves {', '.join(sorted(served)) or 'no UPS'}")


def failed(error: str) -> Verdict:
    """What `run` records when a pass raised (the loop goes on): one line whatever the error says."""
    return Verdict(False, "unhealthy: the agent's last pass failed: " + " ".join(error.split()))
