"""What a press of a Home Assistant button may do (pure: no I/O, no clock of its own).

outputs/mqtt.py takes a command from the command topic, and asks these rules in turn:
the opt-in of the commands that run the battery down (`opt_in_refusal`), one command per
UPS a minute (`RateLimit`), and the UPS's state read from upsd right before sending
(`state_refusal`). Each answers None (go on) or why not, in words a user reads in Home
Assistant and in the log. `Reports` keeps a flood of presses from flooding the log.

Why the state rule: a battery test or a calibration runs the battery down on purpose, and
while CAL is in ups.status upsmon never takes OB LB as critical (NUT's clients/upsmon.c),
so one started after an outage, on a half-charged battery, can drain it with no shutdown.
A stop is never refused by these rules: ending a test or a calibration is always safe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

OPT_IN = "MQTT_ALLOW_DEEP_TESTS"  # the setting that allows the commands below (settings.py)
MIN_CHARGE = 90.0  # percent of battery.charge a test or a calibration needs
EVERY = 60.0  # seconds: one command per UPS this often
# ups.status flags under which no test or calibration starts. CAL: one already runs.
BLOCKING_FLAGS = ("OB", "LB", "FSD", "CAL")


def deep(command: str) -> bool:
    """A command that runs the battery down a long way: off unless OPT_IN allows it."""
    return command.startswith("calibrate.") or command == "test.battery.start.deep"


def stops(command: str) -> bool:
    """A command that ends a test or a calibration (test.battery.stop, calibrate.stop ...)."""
    return command.startswith(("test.", "calibrate.")) and command.endswith(".stop")


def starts(command: str) -> bool:
    """A command that starts a test or a calibration: only on a charged UPS on line."""
    return command.startswith(("test.", "calibrate.")) and not stops(command)


def opt_in_refusal(command: str, allow_deep: bool) -> str | None:
    if deep(command) and not allow_deep:
        return f"calibrations and deep battery tests are off ({OPT_IN}=1 allows them)"
    return None


def _charge(value: str | None) -> float | None:
    # Why not upsd_client.number: outputs/ may not need observe/ for a pure rule; the same
    # reading (a finite decimal) in a few lines.
    try:
        number = float((value or "").strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def state_refusal(command: str, variables: Mapping[str, str] | None) -> str | None:
    """Why the UPS may not start `command` now, from its variables as upsd serves them this
    moment (None: upsd has no fresh data for it). Commands that start nothing pass."""
    if not starts(command):
        return None
    if variables is None:
        return "no fresh data from the UPS (its driver is not connected or its data is stale)"
    status = (variables.get("ups.status") or "").strip()
    flags = status.split()
    blocking = [f for f in BLOCKING_FLAGS if f in flags]
    if "OL" not in flags or blocking:
        why = f"{' '.join(blocking)} set" if blocking else "not on line"
        only = "tests and calibrations only on line without OB, LB, FSD or CAL"
        return f"ups.status is {status or 'empty'!r} ({why}): {only}"
    charge = _charge(variables.get("battery.charge"))
    if charge is None:
        return f"the UPS reports no battery.charge: tests and calibrations need it at {MIN_CHARGE:g} % or more"
    if charge < MIN_CHARGE:
        return f"battery.charge is {charge:g} %: tests and calibrations only at {MIN_CHARGE:g} % or more"
    return None


@dataclass
class RateLimit:
    """One command per UPS every `every` seconds, on a monotonic clock the caller reads
    (time.monotonic()): a wall clock set back would hold a UPS's buttons for hours. A press
    that got this far counts, sent or refused by the state rule after it: a button pressed
    again and again is looked at once a minute. Stops are never limited, nor counted."""

    every: float = EVERY
    last: dict[str, float] = field(default_factory=dict)  # UPS name -> when its last press counted

    def take(self, ups: str, command: str, now: float) -> str | None:
        """None, and the press counted; or why not (and it is not counted)."""
        if stops(command):
            return None
        before = self.last.get(ups)
        if before is not None and now - before < self.every:
            wait = math.ceil(self.every - (now - before))
            return f"one command per UPS a minute: the next in {wait} s"
        self.last[ups] = now
        return None


@dataclass
class Reports:
    """How many answers to presses are reported (an event, a log line): `burst` at once,
    then `burst` a minute (a token bucket on the caller's monotonic clock). Why: anyone who
    may publish to the command topic could otherwise fill the log (rotated at 1 MB) and the
    notifier's queue with refusals, crowding out an on-battery notice. An answer not
    reported is counted, and the count goes with the next one reported."""

    burst: int = 10
    every: float = EVERY
    tokens: float | None = None  # None: full
    at: float | None = None  # when tokens was last worked out
    held: int = 0  # answers not reported since the last one that was

    def take(self, now: float) -> int | None:
        """None: do not report this one (counted); else report it, with how many were not."""
        if self.tokens is None or self.at is None:
            tokens = float(self.burst)
        else:
            tokens = min(float(self.burst), self.tokens + (now - self.at) * self.burst / self.every)
        self.at = now
        if tokens < 1.0:
            self.tokens, self.held = tokens, self.held + 1
            return None
        self.tokens = tokens - 1.0
        held, self.held = self.held, 0
        return held
