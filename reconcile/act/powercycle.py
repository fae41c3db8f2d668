"""The UPS's power cycle after a forced shutdown, sent through upsd (decide/forced.py says when).

What NUT's late shutdown (`upsdrvctl shutdown`, the driver's -k) does, done online:
set the UPS's delays, then `shutdown.return`: the UPS cuts its load when the off-delay
(`ups.delay.shutdown`) is over and restores it once mains are back and the start delay
(`ups.delay.start`) is over, so the hosts that halted boot again. Why through upsd and
not the driver's -k: -k needs the running driver stopped first (it must claim the USB
device itself), and the container is about to lose its host; upsd is up, and NUT's own
protocol with the primary's login is all it takes.

The conversation, in this order (each line logged at debug level, never the password):

    USERNAME, PASSWORD          the primary upsmon's login (upsd.users: SET, shutdown.return)
    LIST VAR <ups>              its maker and subdriver (CyberPower counts in minutes)
    SET TRACKING ON             so that upsd's OK names a tracking id, not just "queued"
    SET VAR <ups> ups.delay.start "<s>"     then GET TRACKING until the driver answers
    SET VAR <ups> ups.delay.shutdown "<s>"  likewise
    GET VAR <ups> ups.delay.start, GET VAR <ups> ups.delay.shutdown
    INSTCMD <ups> shutdown.return           then GET TRACKING: SUCCESS, ERR ..., or PENDING

Why the delays are set and read back first: usbhid-ups arms both timers at
`shutdown.return`, and its start delay (30 s by default) must be above the off-delay or
the UPS may switch off and stay off when mains return during the countdown; an off-delay
shorter than asked cuts a host still halting. So the command is sent only when the UPS
reports both as asked (decide/forced.Delays.refused); else nothing is sent and the
reason is reported (`ups.no_power_cycle`). Every call has a timeout, and the whole
conversation a budget (the stop's path has little time: Docker kills after 10 s).

What reached the UPS is said apart from what did not (`Sent.reached`): upsd refusing the
login or its SET and INSTCMD (ERR ACCESS-DENIED), no connection, the budget spent before
the command, or upsd saying the driver is not there, reached nothing, and the run loop
tries it again at a later pass; a command upsd passed on to the driver (whatever it
answered), or a refusal read back from the UPS, is never sent twice in an FSD.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from reconcile import events, logfmt
from reconcile.model import OFF_DELAY, START_DELAY
from reconcile.model import POWER_CYCLE_COMMAND as COMMAND
from reconcile.observe import upsd_client
from reconcile.waiting import await_value

TIMEOUT = 5.0  # each call to upsd
BUDGET = 20.0  # the whole conversation for one UPS
POLL = 0.1  # between GET TRACKING questions while the driver has not answered
# upsd's answers that it did not pass a request on to the UPS: the login is not allowed
# it (upsd takes any USERNAME and PASSWORD, and checks them at SET and INSTCMD), or the
# driver is not there. Nothing reached the UPS then: it is tried again.
_NOT_PASSED_ON = (
    "ERR ACCESS-DENIED",
    "ERR USERNAME-REQUIRED",
    "ERR PASSWORD-REQUIRED",
    "ERR DRIVER-NOT-CONNECTED",
    "ERR DATA-STALE",
)


class Delays(Protocol):
    """The delays to set and the check of what the UPS reports back (decide/forced.Delays)."""

    @property
    def start(self) -> int: ...

    @property
    def off(self) -> int: ...

    def refused(self, start: int | None, off: int | None) -> str | None: ...


# The UPS's variables (its maker, its subdriver) -> the delays for it (decide/forced.delays).
DelayPlan = Callable[[Mapping[str, str]], Delays]


@dataclass(frozen=True)
class Sent:
    ups: str
    command: str  # what was (or would have been) sent to upsd, without the login
    answer: str  # the driver's answer (through upsd's TRACKING), or why nothing was sent
    ok: bool  # the driver did it
    refused: bool = False  # the UPS would not take the delays: nothing was sent
    start_delay: int | None = None  # ups.delay.start read back
    off_delay: int | None = None  # ups.delay.shutdown read back
    # The UPS answered: upsd passed the command to its driver (whatever the driver said),
    # or the UPS's delays, read back, refuse it. False: nothing reached it (login refused,
    # access denied, no connection, out of time first, no driver): tried again (decide/forced.py).
    reached: bool = False


class _Talk:
    """One upsd connection for one UPS's power cycle, each line logged (debug)."""

    def __init__(self, conn: upsd_client.Connection, ups: str, deadline: float) -> None:
        self.conn, self.ups, self.deadline = conn, ups, deadline
        self.tracking = False
        self.not_passed_on = False  # upsd kept a request from the UPS (_NOT_PASSED_ON)
        self.commanded = False  # upsd passed the command on to the driver

    def say(self, line: str, shown: str | None = None, late: bool = False) -> str:
        """One line and upsd's reply. Past the deadline nothing more is asked (`late`: the
        driver's answer to what was already sent, asked once more)."""
        if not late and time.monotonic() > self.deadline:
            raise upsd_client.UpsdError(f"out of time before {shown or line.split(' ', 1)[0]}")
        reply = self.conn.command(line)
        logfmt.debug("power_cycle.said", ups=self.ups, request=shown or line, reply=reply)
        self.not_passed_on |= reply.startswith(_NOT_PASSED_ON)
        return reply

    def tracked(self, line: str, command: bool = False) -> str:
        """`line` (a SET VAR or INSTCMD), then the driver's answer: SUCCESS, upsd's ERR ...,
        or PENDING when it has not answered by the deadline. Without tracking, upsd's own
        reply (OK: queued). `command`: the line is the power cycle's INSTCMD."""
        reply = self.say(line)
        if command:
            self.commanded = not reply.startswith(_NOT_PASSED_ON)
        if not reply.startswith("OK TRACKING "):
            return reply
        tid = reply.split(" ", 2)[2].strip()

        def answered() -> str | None:
            answer = self.say(f"GET TRACKING {tid}", late=True)
            return None if answer == "PENDING" else answer

        left = self.deadline - time.monotonic()
        return await_value(answered, max(0.0, left), POLL) or "PENDING"

    def delay(self, var: str) -> int | None:
        reply = self.say(f"GET VAR {self.ups} {var}")
        value = reply.split(" ", 3)[3].strip('"') if reply.startswith("VAR ") and reply.count(" ") >= 3 else ""
        return int(value) if value.isdigit() else None


def power_cycle(
    at: tuple[str, int], user: str, password: str, ups: str, plan: DelayPlan, budget: float = BUDGET
) -> Sent:
    """Ask `ups` (through upsd at `at`, logged in as `user`) to cut its load after the
    off-delay `plan` gives for it and to return with mains, once its delays are set and
    read back. Never raises for upsd's answers: the result says what happened."""
    command = f"INSTCMD {ups} {COMMAND}"
    deadline = time.monotonic() + budget
    talk: _Talk | None = None
    try:
        with upsd_client.Connection(*at, timeout=min(TIMEOUT, budget)) as conn:
            talk = _Talk(conn, ups, deadline)
            for line, what in ((f"USERNAME {user}", "USERNAME"), (f"PASSWORD {password}", "PASSWORD")):
                # (`what`, never the line: the password must not reach the log)
                reply = talk.say(line, shown=what)
                if reply != "OK":
                    return Sent(ups, command, f"not sent: login refused at {what}: {reply}", False)
            want = plan(upsd_client.variables(conn, ups))
            talk.tracking = talk.say("SET TRACKING ON") == "OK"
            answers = []
            for var, value in ((START_DELAY, want.start), (OFF_DELAY, want.off)):
                line = f'SET VAR {ups} {var} "{value}"'
                answers.append(f"SET {var} {value}: {talk.tracked(line)}")
            start, off = talk.delay(START_DELAY), talk.delay(OFF_DELAY)
            why = want.refused(start, off)
            if why is not None:
                # A refusal is the UPS's own word unless upsd kept a SET or GET from it
                # (access denied, no driver): a failure like any other then (tried again).
                said = not talk.not_passed_on
                reason = f"not sent: {why} ({'; '.join(answers)})"
                return Sent(ups, command, reason, False, said, start, off, said)
            answer = talk.tracked(command, command=True)
            if answer == "OK" and not talk.tracking:
                return Sent(ups, command, "OK (queued: this upsd tracks no command)", True, False, start, off, True)
            return Sent(ups, command, answer, answer == "SUCCESS", False, start, off, talk.commanded)
    except upsd_client.UpsdError as exc:
        if talk is not None and talk.commanded:
            # Sent, its answer lost (the connection, while asking GET TRACKING): the driver
            # may be doing it, and a second shutdown.return would restart its countdown.
            return Sent(ups, command, f"sent, the driver's answer lost: {exc}", False, reached=True)
        return Sent(ups, command, f"not sent: {exc}", False)


def send_all(
    at: tuple[str, int],
    login: tuple[str, str],
    upses: tuple[str, ...],
    plan: DelayPlan,
    commands: Mapping[str, frozenset[str]],
    budget: float = BUDGET,
) -> tuple[str, ...]:
    """power_cycle for each of `upses`, each result an `ups.power_cycle` event (ok=false
    when it failed, also when nothing reached the UPS) or an `ups.no_power_cycle` one when
    the UPS would not take the delays. `commands`: what each UPS offers (for that event).
    Returns the UPSes it reached (Sent.reached: the UPS answered the command, accepted or
    not, or refused the delays): the others are tried again (decide/forced.py says how
    often). `budget`: for all of them."""
    deadline = time.monotonic() + budget
    reached: list[str] = []
    for ups in upses:
        sent = power_cycle(at, *login, ups, plan, max(0.5, deadline - time.monotonic()))
        if sent.refused:
            offered = " ".join(sorted(commands.get(ups, frozenset()))) or "none"
            events.emit(events.PowerCycleRefused(ups, offered, sent.answer))
        else:
            # The off-delay the UPS reports (CyberPower: whole minutes), else the one asked for.
            off = sent.off_delay if sent.off_delay is not None else plan({}).off
            events.emit(events.PowerCycled(ups, off, sent.command, sent.answer, sent.ok, sent.start_delay))
        if sent.reached:
            reached.append(ups)
    return tuple(reached)
