"""upsd's MAXCONN against the open-files limit (RLIMIT_NOFILE) it inherits from the agent. Pure.

Why MAXCONN is written at all: with none, upsd sizes its connection table from the limit
(sysconf(_SC_OPEN_MAX), server/upsd.c), and a container whose limit is huge (Docker's can be
2^30) has upsd allocate gigabytes or die of it (home-assistant/operating-system#2433).

Why it must fit the limit: every NUT refuses to start when MAXCONN exceeds the soft limit
(2.8.0 and 2.8.4 compare it with _SC_OPEN_MAX), and from NUT 2.8.6 on when it exceeds the
limit less the descriptors upsd keeps for itself (RESERVE_FD_COUNT_UPSD, 8).

What a careful owner expects, so what `fit` decides:
  - the soft limit is enough: MAXCONN as asked, the limit left alone;
  - the soft limit is too low, the hard one is enough: raise the soft limit to MAXCONN plus
    the reserve (any process may, up to its hard limit; upsd inherits it), MAXCONN as asked.
    Not to the hard limit: only what upsd needs;
  - even the hard limit is too low: MAXCONN lowered to the hard limit less the reserve (and
    the soft limit raised to the hard one), with a warning giving both numbers. Why not
    refuse: upsd is the power-failure chain (upsmon halts the hosts through it), and fewer
    connections than asked only turns extra dashboards away, while no upsd at all would
    leave every host unprotected. A MAXCONN that low is the limit's doing, not the owner's;
  - a hard limit too low for any useful MAXCONN: refused (LimitError), with the number, as
    NUT itself refuses a hard limit below its reserve plus a few connections.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconcile.userconfig import MAXCONN_RANGE

# Descriptors upsd holds besides its connection table: the standard three, syslog, files it
# reads. NUT 2.8.6 reserves 8 (RESERVE_FD_COUNT_UPSD, server/upsd.h); twice that leaves room
# should a later release reserve more, and costs nothing.
RESERVE = 16
# The least MAXCONN worth running (the least upsd.maxconn takes): every UPS, LISTEN address
# and client takes one.
LOWEST = MAXCONN_RANGE[0]


class LimitError(ValueError):
    """The open-files limit leaves upsd no room: the message says which limit and what to do."""


@dataclass(frozen=True)
class Fit:
    maxconn: int  # what upsd.conf says
    raise_soft_to: int | None  # the soft limit to set before upsd starts; None: leave it
    asked: int  # the MAXCONN configured (or the default)
    soft: int | None  # the limits seen (None: unlimited)
    hard: int | None

    @property
    def lowered(self) -> bool:
        """MAXCONN is less than asked: the hard limit did not allow it (warn)."""
        return self.maxconn < self.asked


def fit(asked: int, soft: int | None, hard: int | None) -> Fit:
    """MAXCONN for upsd and the soft RLIMIT_NOFILE it needs, from the MAXCONN `asked` and
    the agent's own limits (None: unlimited). Raises LimitError when no MAXCONN fits."""
    need = asked + RESERVE
    if soft is None or soft >= need:
        return Fit(asked, None, asked, soft, hard)
    if hard is None or hard >= need:
        return Fit(asked, need, asked, soft, hard)
    room = hard - RESERVE
    if room < LOWEST:
        raise LimitError(
            f"the hard limit of open files is {hard}: upsd needs at least {LOWEST + RESERVE} "
            f"({LOWEST} connections and {RESERVE} for itself); raise it "
            f"(ulimit -Hn, or docker run --ulimit nofile={asked + RESERVE}:{asked + RESERVE})"
        )
    return Fit(room, hard if soft < hard else None, asked, soft, hard)
