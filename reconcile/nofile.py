"""upsd's MAXCONN fitted to the agent's open-files limit at start, which every NUT daemon it
starts inherits: observe (observe/limits.py), decide (decide/limits.py, the rule and why),
act (act/limits.py raises the soft limit). Called once by cycle.Agent.load."""

from __future__ import annotations

from reconcile import logfmt
from reconcile.act.limits import raise_nofile
from reconcile.decide.limits import RESERVE, Fit, LimitError, fit
from reconcile.observe.limits import nofile
from reconcile.settings import SettingsError

__all__ = ["Fit", "fit_maxconn", "log"]


def fit_maxconn(asked: int) -> Fit:
    """The MAXCONN to write for `asked` (upsd.maxconn), the soft limit raised first where the
    rule says so. Raises SettingsError (RLIMIT_NOFILE) when no MAXCONN fits the limit."""
    soft, hard = nofile()
    try:
        found = fit(asked, soft, hard)
        if found.raise_soft_to is not None and raise_nofile(found.raise_soft_to) is not None:
            # Not raised (not seen on Linux below the hard limit): the soft one is the ceiling.
            found = fit(asked, soft, soft)
    except LimitError as exc:
        raise SettingsError("RLIMIT_NOFILE", str(exc)) from None
    return found


def log(found: Fit | None) -> None:
    """What the limit did to MAXCONN, once the log is set up (`run` and `apply`)."""
    if found is None:
        return
    if found.lowered:
        logfmt.warning(
            "upsd.maxconn",
            maxconn=found.maxconn,
            asked=found.asked,
            nofile=found.hard,
            why=f"the hard limit of open files ({found.hard}) allows no more, so upsd turns further clients "
            f"away: raise it to {found.asked + RESERVE} (docker run --ulimit nofile=N:N, or ulimits: in compose)",
        )
    elif found.raise_soft_to is not None:
        logfmt.info("upsd.nofile", soft=found.raise_soft_to, was=found.soft, maxconn=found.maxconn)
