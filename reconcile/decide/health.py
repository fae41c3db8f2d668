"""What makes the agent healthy (`health`, the image's HEALTHCHECK, the fleet's gate):
pure checks over a decision and a few live readings, and the one-line verdict they add
up to (`verdict`): what `nut-reconcile health` prints, and what `run` records at every
tick for the image's HEALTHCHECK (act/verdict.py, docker/nut-health.sh).

Serving is not enough: a UPS exists to shut its hosts down. So besides fresh data for
every UPS on the bus, the shutdown path must be whole (`shutdown_path`, the one rule that
`health`, the recorded verdict, `status`'s `armed` and so the fleet's ARMED all read):

- our upsmon runs (unless [upsmon] enabled = false),
- upsmon.conf watches every attached or held UPS, and MINSUPPLIES is at least 1 while a
  UPS that powers this host is attached (0 would mean nothing can ever shut it down),
- every network upsmon the owner expects ([[shutdown.secondary]], set by the fleet
  rollout: the Pi's own upsmon that halts the Pi, each nut_clients host) is logged in to
  the UPS it must watch, from where it must come, read from the host's side: upsd's LIST
  CLIENT names no user, only each login's address, so a login counts for a secondary
  only from its address. Ours comes from the address our upsmon dials (127.0.0.1). The
  container's own host (`from = "host"`) comes through Docker's proxy, from the bridge's
  gateway (observe/routes.py); with host networking from where ours comes, beside ours
  (then two logins from 127.0.0.1). A secondary with `from` addresses comes from one of them;
  one without, from any address that is neither ours nor the host's. Each login counts
  once (a matching: a NAS never stands in for the Pi's upsmon),
- no secondary watches a placeholder (a UPS name with no driver, "Driver not connected")
  while another UPS is on the bus: it would never see OB, LB or FSD.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reconcile.decide import logins as login_addresses
from reconcile.decide.decision import Decision

# Why in model.py: act/verdict.py records it, and act/ never imports decide/.
from reconcile.model import Verdict as Verdict
from reconcile.userconfig import HOST_UPSMON, LOGGING_SHUTDOWN_CMD, Secondary

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


@dataclass(frozen=True)
class ShutdownPath:
    """What `shutdown_path` found: why the path is broken (empty: whole), whether each
    expected secondary is logged in (None: not known, upsd did not list the logins),
    and `armed`: our upsmon runs, nothing is broken, and something halts this host (a
    secondary from the host is expected, or SHUTDOWNCMD is the owner's own, not the
    container's logging one), so a low battery halts the hosts. `unarmed`: why not armed
    though nothing is broken (`health` stays healthy: a container alone can serve NUT)."""

    broken: tuple[str, ...] = ()
    secondaries: tuple[tuple[Secondary, bool | None], ...] = ()
    armed: bool = False
    unarmed: str = ""


# Why armed is more than "nothing broken": with compose.yaml alone, no secondary is
# expected and the container's SHUTDOWNCMD only logs, so every check passes while nothing
# would ever halt the Pi. "Armed" must say what a low battery would really do.
NOTHING_HALTS = (
    "nothing halts this host: a container's SHUTDOWNCMD cannot halt its host, and no "
    'secondary from the host is expected ([[shutdown.secondary]] from = "host": the host\'s own upsmon; '
    "on a Pi: sudo .venv/bin/pyinfra @local deploy.py -y)"
)


Want = Callable[[str], bool]


def _match(wants: Sequence[Want], logins: Sequence[str]) -> list[bool]:
    """Which wants get a login of their own (each login serves one want), earlier wants
    first: augmenting paths (Kuhn), so a login that two wants accept goes where it lets
    the most wants be met. A want once met stays met."""
    owner: dict[int, int] = {}  # login index -> the want it serves

    def place(want: int, seen: set[int]) -> bool:
        for i, address in enumerate(logins):
            if i in seen or not wants[want](address):
                continue
            seen.add(i)
            if i not in owner or place(owner[i], seen):
                owner[i] = want
                return True
        return False

    return [place(w, set()) for w in range(len(wants))]


# One spelling of an address, and where our upsmon's login comes from: decide/logins.py,
# the one answer the power-cycle gate (decide/forced.py) reads too.
_address = login_addresses.address


def _our_address(d: Decision) -> str:
    """Where upsd sees our upsmon come from: the address it dials (MONITOR ...@host:port)."""
    return login_addresses.own_address(d.config)


# The addresses a client on this host dialling loopback arrives from (Linux answers every
# 127.0.0.0/8 destination from 127.0.0.1): ours and, with host networking, the host's.
LOOPBACK = frozenset({"127.0.0.1", "::1"})


def _listed(ups: str, logins: Sequence[str]) -> str:
    return f"logins on {ups}: {', '.join(logins)}" if logins else f"no login on {ups}"


def shutdown_path(d: Decision, secondaries: Sequence[Secondary], contained: bool = True) -> ShutdownPath:
    """The shutdown path as the module's doc says, from this decision (its observation's
    LIST CLIENT logins and gateways) and the secondaries the owner expects. `contained`:
    the agent runs in a container (observe/container.py), so its SHUTDOWNCMD, whatever it
    names, never halts the host (True unless known otherwise: never armed by a guess)."""
    if not d.config.upsmon_enabled:
        return ShutdownPath()
    broken = []
    running = d.owned.upsmon is not None
    if not running:
        broken.append("upsmon is not running")
    watched, minsupplies = _upsmon_conf(d.actual.files["upsmon.conf"].content)
    ours = [d.names[u.key] for u in (*d.attached, *d.held)]
    unwatched = sorted(set(ours) - watched)
    if unwatched:
        broken.append(f"upsmon.conf does not watch {', '.join(unwatched)}")
    if any(u.powers_host for u in d.attached) and minsupplies < 1:
        broken.append(f"MINSUPPLIES is {minsupplies}: no UPS can shut this host down")
    found, more = _secondaries(d, secondaries, watched if running else set())
    # In a container no SHUTDOWNCMD halts the host (the README's "/sbin/shutdown -h +0"
    # copied into config.toml halts only the container's view): only the host's own upsmon.
    own_cmd = not contained and d.config.shutdown_cmd != LOGGING_SHUTDOWN_CMD
    halts = any(s.this_host for s in secondaries) or own_cmd
    whole = running and not broken and not more
    return ShutdownPath(tuple(broken + more), found, whole and halts, "" if halts else NOTHING_HALTS)


def _secondaries(
    d: Decision, secondaries: Sequence[Secondary], ours_on: set[str]
) -> tuple[tuple[tuple[Secondary, bool | None], ...], list[str]]:
    """Each secondary: logged in or not; and why not, in words. `ours_on`: the UPSes our
    upsmon (running) watches, so logs in to, from our address."""
    if not secondaries:
        return (), []
    served = d.obs.facts.served
    attached = sorted(d.names[u.key] for u in d.attached)
    placeholders = {s.name for s in d.config.sections} - {d.names[u.key] for u in (*d.attached, *d.held)}
    logins = d.obs.logins
    found: dict[int, bool | None] = {}
    broken: list[str] = []
    for i, s in enumerate(secondaries):
        if s.ups in placeholders and attached:
            found[i] = False
            bus = (
                f"the UPS on the bus is {attached[0]}"
                if len(attached) == 1
                else (f"the UPSes on the bus are {', '.join(attached)}")
            )
            broken.append(f"{s.name} watches {s.ups}, a placeholder; {bus}")
        elif served is not None and s.ups not in served:
            found[i] = False
            broken.append(
                f"{s.name} watches {s.ups}, which upsd does not serve (it serves {', '.join(sorted(served))})"
            )
    pending = [i for i in range(len(secondaries)) if i not in found]
    if pending and (served is None or logins is None):
        names = ", ".join(dict.fromkeys(secondaries[i].name for i in pending))
        broken.append(f"upsd did not list its logins (LIST CLIENT): not known whether {names} logged in")
        found.update(dict.fromkeys(pending))
    me = _our_address(d)
    gateways = {_address(g) for g in d.obs.gateways}

    # The host's: through Docker's proxy from the gateway; with host networking from where
    # ours comes from (the host's upsmon dials 127.0.0.1, ours perhaps ::1).
    beside = {me} | (LOOPBACK if me in LOOPBACK else set())

    def host(address: str) -> bool:
        return address in gateways or address in beside

    for ups in sorted({secondaries[i].ups for i in pending if i not in found}):
        here = [i for i in pending if secondaries[i].ups == ups]
        # Wants in this order: ours, the host's, by address, from anywhere else. Why ours
        # first: with host networking the host's upsmon also comes from 127.0.0.1.
        order = sorted(here, key=lambda i: 0 if secondaries[i].from_host else 1 if secondaries[i].addresses else 2)
        wants: list[Want] = [lambda a: a == me] if ups in ours_on else []
        for i in order:
            s = secondaries[i]
            if s.from_host:
                wants.append(host)
            elif s.addresses:
                wants.append(frozenset(s.addresses).__contains__)
            else:
                wants.append(lambda a: not host(a))
        listed = [_address(a) for a in (logins or {}).get(ups, ())]
        met = _match(wants, listed)
        if ups in ours_on and not met.pop(0):
            broken.append(f"{ups}: our upsmon is not logged in ({_listed(ups, listed)})")
        for i, ok in zip(order, met, strict=True):
            found[i] = ok
            if not ok:
                broken.append(f"{_missing(secondaries[i], me, sorted(gateways))} ({_listed(ups, listed)})")
    return tuple((s, found[i]) for i, s in enumerate(secondaries)), broken


def _missing(s: Secondary, me: str, gateways: Sequence[str]) -> str:
    if s.from_host:
        where = ", ".join([*gateways, f"or {me} beside our upsmon's login"]) if gateways else f"{me}, beside ours"
        who = "" if s.name == HOST_UPSMON else f"{s.name}: "  # (expect_secondaries: no name of its own)
        return f"{who}the host's own upsmon is not logged in to {s.ups} from the host ({where})"
    if s.addresses:
        return f"{s.name} is not logged in to {s.ups} from {' or '.join(s.addresses)}"
    return f"{s.name} is not logged in to {s.ups} (no login from an address that is neither ours nor the host's)"


def verdict(d: Decision, secondaries: Sequence[Secondary]) -> Verdict:
    """The first that fails of: upsd answers, every UPS on the bus is served with fresh
    data (`serving`), the shutdown path is whole (`shutdown_path`); else healthy."""
    served = d.obs.facts.served
    if served is None:
        return Verdict(False, "unhealthy: upsd is not answering" + ("" if d.owned.upsd else " (not running)"))
    bad = serving(d)
    if bad:
        return Verdict(False, "unhealthy: " + ", ".join(f"{n} {s}" for n, s in sorted(bad.items())))
    broken = shutdown_path(d, secondaries).broken
    if broken:
        return Verdict(False, "unhealthy: shutdown path: " + "; ".join(broken))
    return Verdict(True, f"healthy: upsd serves {', '.join(sorted(served)) or 'no UPS'}")


def failed(error: str) -> Verdict:
    """What `run` records when a pass raised (the loop goes on): one line whatever the error says."""
    return Verdict(False, "unhealthy: the agent's last pass failed: " + " ".join(error.split()))
