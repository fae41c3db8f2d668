"""The UPS's power cycle after a forced shutdown, sent through upsd (decide/forced.py says when).

What NUT's late shutdown (`upsdrvctl shutdown`, the driver's -k) does, done online:
set the UPS's off-delay (`ups.delay.shutdown`), then `shutdown.return`: the UPS cuts its
load when the delay is over and restores it once mains are back, so the hosts that
halted boot again. Why through upsd and not the driver's -k: -k needs the running driver
stopped first (it must claim the USB device itself), and the container is about to lose
its host; upsd is up, and NUT's own protocol with the primary's login is all it takes.

Why the delay is set first and checked: a UPS cuts after its own default when the set
fails (20 s for usbhid-ups), and a host still halting then loses power with its SD card
mounted. So the command is only sent when the UPS's off-delay is at least the one asked
for; else nothing is sent and the reason is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconcile import events
from reconcile.observe import upsd_client

TIMEOUT = 5.0


@dataclass(frozen=True)
class Sent:
    ups: str
    command: str  # what was sent to upsd, without the login
    answer: str  # upsd's reply, or why nothing was sent
    ok: bool


def _delay(conn: upsd_client.Connection, ups: str, var: str) -> int | None:
    reply = conn.command(f"GET VAR {ups} {var}")
    value = reply.split(" ", 3)[3].strip('"') if reply.startswith("VAR ") and reply.count(" ") >= 3 else ""
    return int(value) if value.isdigit() else None


def power_cycle(
    at: tuple[str, int], user: str, password: str, ups: str, off_delay: int, timeout: float = TIMEOUT
) -> Sent:
    """Ask `ups` (through upsd at `at`, logged in as `user`) to cut its load after
    `off_delay` seconds and to return with mains. Never raises for upsd's answers:
    the result says what happened."""
    command = f"INSTCMD {ups} shutdown.return"
    var = "ups.delay.shutdown"
    try:
        with upsd_client.Connection(*at, timeout=timeout) as conn:
            for line, what in ((f"USERNAME {user}", "USERNAME"), (f"PASSWORD {password}", "PASSWORD")):
                reply = conn.command(line)
                if reply != "OK":
                    # (`what`, never the line: the password must not reach the log)
                    return Sent(ups, command, f"login refused at {what}: {reply}", False)
            set_reply = conn.command(f'SET VAR {ups} {var} "{off_delay}"')
            if set_reply != "OK":
                now = _delay(conn, ups, var)
                if now is None or now < off_delay:
                    why = f"not sent: SET VAR {var} {off_delay} answered {set_reply}, and the UPS's off-delay is {now}"
                    return Sent(ups, command, why, False)
            reply = conn.command(command)
            return Sent(ups, command, reply, reply == "OK")
    except upsd_client.UpsdError as exc:
        return Sent(ups, command, f"not sent: {exc}", False)


def send_all(at: tuple[str, int], login: tuple[str, str], upses: tuple[str, ...], off_delay: int) -> tuple[str, ...]:
    """power_cycle for each of `upses`, each result an `ups.power_cycle` event. Returns
    the UPSes it was sent to, accepted or not: a power cycle is sent once per FSD."""
    for ups in upses:
        sent = power_cycle(at, *login, ups, off_delay)
        events.emit(events.PowerCycled(ups, off_delay, sent.command, sent.answer, sent.ok))
    return upses
