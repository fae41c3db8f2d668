"""Notifications (NOTIFY_URLS): the agent's events and upsmon's notices, sent through Apprise.

Three parts, none of them on the reconcile pass's path:

- `Notifier.consume`, the events consumer: puts the event on a queue and returns. A full
  queue (a sender stuck for long) drops the event, logged once: a pass never waits.
- The worker thread: turns events into notices (outputs/notices.py), keeps the chosen
  ones (NOTIFY_EVENTS), debounces, reads the UPS's charge and runtime from upsd (with a
  timeout), composes the message and hands it to a child process (outputs/send.py)
  that loads Apprise, sends, and is killed when it takes longer than NOTIFY_TIMEOUT (default 30 s). One
  send at a time: a receiver that hangs delays the next message, never a pass.
- The relay socket: upsmon's NOTIFYCMD (outputs/relay.py) sends each of its notices
  here as a datagram; it is checked and emitted as an `upsmon.notice` event, so the log,
  the recent-event record and the notifier all see it.

Every message is logged as `notify.sent` or `notify.failed` with the notice and the
services' schemes, never a URL. Before `run` starts anything, `refusal` asks Apprise
whether it takes every URL: one it refuses turns notifications off (reconcile/cli.py),
logged, and NUT is served all the same.
"""

from __future__ import annotations

import json
import os
import pwd
import queue
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from reconcile import events, logfmt
from reconcile.model import UPSMON_NOTICES
from reconcile.notifycmd import UPSSCHED_CONF
from reconcile.nutsyntax import NutSyntaxError, is_printable_ascii, tokenize, validate_name
from reconcile.observe import upsd_client
from reconcile.outputs.notices import Debounce, Message, Notice, Policy, Readings, compose, notice_for
from reconcile.settings import Notify

CHECK_TIMEOUT = 20.0
UPSD_TIMEOUT = 2.0
QUEUE_SIZE = 256
REFRESH = 30.0  # seconds between readings of the attached UPSes (for the unplugged ones' last values)
SENDER = "reconcile.outputs.send"


def _child(args: list[str], payload: Mapping[str, object], timeout: float) -> dict[str, object]:
    """Run the sender child with `payload` on stdin; its JSON answer, or why there is none."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", SENDER, *args],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        # subprocess.run has killed it already; Apprise's own timeouts did not fire.
        return {"ok": False, "error": f"timed out after {timeout:g} s (killed)"}
    except OSError as exc:
        return {"ok": False, "error": f"cannot start the sender: {exc.strerror or exc}"}
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"ok": False, "error": f"the sender exited {done.returncode} without an answer"}
    return answer if isinstance(answer, dict) else {"ok": False, "error": "the sender's answer is not an object"}


def refusal(config: Notify) -> str | None:
    """Ask Apprise (in the child) whether it takes every URL: None when it does, else which
    ones it refuses and why, each by its index and scheme, never the URL (it holds tokens).
    None too when the check itself cannot run (logged: that is not the user's input, and
    each send will say what fails)."""
    answer = _child(["--check"], {"urls": list(config.urls)}, CHECK_TIMEOUT)
    refused, unknown = answer.get("refused"), answer.get("unknown")
    # Only indexes of the list given count: the answer is the child's, checked like input.
    indexes = [i for i in refused if type(i) is int and 1 <= i <= len(config.urls)] if isinstance(refused, list) else []
    if indexes:
        version = answer.get("version")
        apprise = f"Apprise {version[:20]}" if isinstance(version, str) and version else "Apprise"
        parts = []
        for index in indexes:
            # The scheme only: settings.URL_SCHEME checked it (at most 32 letters, digits, + . -).
            scheme = config.urls[index - 1].split("://", 1)[0].lower()
            if isinstance(unknown, list) and index in unknown:
                why = f"a service {apprise} does not know"
            else:
                why = f"{apprise} refuses it (a part missing or malformed, or a service that cannot run here)"
            parts.append(f"URL {index} of {len(config.urls)} ({scheme}://): {why}")
        return "; ".join(parts)
    if not answer.get("ok"):
        logfmt.error("notify.check", services=config.schemes, error=str(answer.get("error", "")))
    return None


@dataclass(frozen=True)
class Relayed:
    """One datagram from the relay, checked."""

    type: str
    ups: str | None
    message: str


def parse_datagram(data: bytes) -> Relayed:
    """Raises ValueError (with what is wrong) for anything but a relay's notice."""
    notice = json.loads(data.decode("utf-8"))
    if not isinstance(notice, dict) or set(notice) != {"type", "ups", "message"}:
        raise ValueError("not a notice object")
    kind, ups, message = notice["type"], notice["ups"], notice["message"]
    if kind not in UPSMON_NOTICES:
        raise ValueError(f"unknown notice type {str(kind)[:20]!r}")
    if not isinstance(ups, str) or not isinstance(message, str):
        raise ValueError("ups and message must be strings")
    # UPSNAME is upsmon's MONITOR system: my-ups@127.0.0.1:3493. The name is what we serve.
    name = ups.split("@", 1)[0]
    if name:
        try:
            validate_name(name, "UPSNAME")
        except NutSyntaxError as exc:
            raise ValueError(str(exc)) from None
    if len(message) > 512 or not is_printable_ascii(message):
        raise ValueError("message: not printable text of at most 512 characters")
    return Relayed(kind, name or None, message)


class Notifier:
    def __init__(
        self, config: Notify, host: str, upsd: tuple[str, int], policy: Policy, confpath: Path | None = None
    ) -> None:
        self.config, self.host, self.upsd, self.policy = config, host, upsd, policy
        self.confpath = confpath  # NUT's config dir: upssched.conf's timers (on_battery_max_seconds)
        self.queue: queue.Queue[events.Event] = queue.Queue(QUEUE_SIZE)
        self.debounce = Debounce(config.debounce)
        self.backing_off: frozenset[str] = frozenset()
        self.readings: dict[str, Readings] = {}
        self.refreshed = 0.0
        self.dropped = False
        self.stopping = threading.Event()
        self.relay: Relay | None = None
        self.thread = threading.Thread(target=self._work, name="notify", daemon=True)

    # --- the consumer (on the emitting thread: quick, never raises) ------------------

    def consume(self, event: events.Event) -> None:
        if event.level == "debug" and not isinstance(event, (events.Tick, events.BackoffHold)):
            return
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            if not self.dropped:
                self.dropped = True  # logged once while it lasts
                logfmt.error("notify.dropped", why=f"{QUEUE_SIZE} events wait for a sender that is stuck")

    # --- the worker -------------------------------------------------------------------

    def _work(self) -> None:
        while not self.stopping.is_set():
            due = self.debounce.next_due()
            wait = 1.0 if due is None else max(0.0, min(1.0, due - time.monotonic()))
            try:
                event = self.queue.get(timeout=wait)
            except queue.Empty:
                event = None
            try:
                if event is not None:
                    self.dropped = False
                    self._handle(event)
                self.debounce, ready = self.debounce.due(time.monotonic())
                for notice in ready:
                    self._send(notice)
            except Exception as exc:  # noqa: BLE001 - the worker must survive one bad event
                logfmt.error("notify.failed", error=f"{type(exc).__name__}: {exc}")

    def _handle(self, event: events.Event) -> None:
        if isinstance(event, events.Tick):
            if time.monotonic() - self.refreshed >= REFRESH:
                self.refreshed = time.monotonic()
                for ups in filter(None, event.attached.split(",")):
                    self._read(ups)
            return
        self._track(event)
        notice = notice_for(event, self.backing_off)
        if notice is None:
            return
        if notice.name == "backoff" and notice.ups:
            self.backing_off |= {notice.ups}
        if notice.name not in self.config.events:
            return
        self.debounce, ready = self.debounce.offer(notice, time.monotonic())
        for one in ready:
            self._send(one)

    def _track(self, event: events.Event) -> None:
        """What later messages need: which UPSes cannot be power-cycled, which back off."""
        if isinstance(event, events.NoPowerCycle):
            cannot = self.policy.no_power_cycle | {event.ups}
            self.policy = replace(self.policy, no_power_cycle=cannot)
        elif isinstance(event, events.StepDone) and event.step_kind == "start_driver" and event.ups:
            self.backing_off -= {event.ups}
            self.policy = replace(self.policy, no_power_cycle=self.policy.no_power_cycle - {event.ups})
        elif isinstance(event, events.Unplugged):
            self.backing_off -= {event.ups}
        elif isinstance(event, (events.Plugged, events.Swapped)):
            # The USB product string, until upsd serves the driver's own model.
            model = event.model if isinstance(event, events.Plugged) else None
            self.readings[event.ups] = Readings(model=model)

    def _read(self, ups: str) -> Readings:
        """The UPS's readings now, or the last ones known (an unplugged UPS has none now)."""
        try:
            with upsd_client.Connection(*self.upsd, timeout=UPSD_TIMEOUT) as conn:
                values = upsd_client.variables(conn, ups)
        except upsd_client.UpsdError:
            return self.readings.get(ups, Readings())
        known = self.readings.get(ups, Readings())
        status = values.get("ups.status")
        # Why the last known values fill the gaps: a driver just (re)started serves its
        # status as WAIT and no model for a moment, which tells the reader nothing.
        # Why only with ignorelb: without it the UPS decides LB itself, whatever these say.
        own_lb = bool(values.get("driver.flag.ignorelb"))
        found = Readings(
            model=upsd_client.model_of(values) or known.model,
            charge=upsd_client.number(values.get("battery.charge")),
            runtime=upsd_client.number(values.get("battery.runtime")),
            status=status if status and status != "WAIT" else None,
            charge_low=upsd_client.number(values.get("battery.charge.low")) if own_lb else None,
            runtime_low=upsd_client.number(values.get("battery.runtime.low")) if own_lb else None,
            on_battery_max=upssched_timers(self.confpath).get(ups) if self.confpath else None,
        )
        if found.charge is None and found.runtime is None and found.status is None:
            found = replace(known, model=found.model, on_battery_max=found.on_battery_max)
        self.readings[ups] = found
        return found

    def _send(self, notice: Notice) -> None:
        readings = self._read(notice.ups) if notice.ups else Readings()
        message = compose(notice, self.host, readings, self.policy)
        began = time.monotonic()
        answer = send(self.config, message)
        took = f"{time.monotonic() - began:.2f}s"
        if answer.get("ok"):
            logfmt.info("notify.sent", notice=notice.name, ups=notice.ups, services=self.config.schemes, took=took)
        else:
            logfmt.error(
                "notify.failed",
                notice=notice.name,
                ups=notice.ups,
                services=self.config.schemes,
                error=str(answer.get("error", "")),
                took=took,
            )

    # --- start and stop ---------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.relay is not None:
            self.relay.stop()
        self.thread.join(timeout=1.0)


class Relay:
    """The socket upsmon's NOTIFYCMD (outputs/relay.py) sends its notices to: each one
    checked, then emitted as an `upsmon.notice` event (on this thread)."""

    def __init__(self, path: Path, run_user: str) -> None:
        """Open the socket, connectable by upsmon's user only (and root). Raises OSError,
        or KeyError for a user that does not exist."""
        self.path = path
        try:
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()  # left by an agent before this one: ours to replace
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o600)
        user = pwd.getpwnam(run_user)
        os.chown(path, user.pw_uid, user.pw_gid)
        self.sock.settimeout(1.0)  # so the thread sees `stopping`
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="notify-relay", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError as exc:
                logfmt.error("notify.relay", error=exc.strerror or str(exc))
                return
            try:
                notice = parse_datagram(data)
            except ValueError as exc:
                logfmt.warning("notify.relay", why=f"a datagram refused: {exc}")
                continue
            events.emit(events.UpsmonNotice(notice.type, notice.ups, notice.message))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=1.5)
        self.sock.close()
        self.path.unlink(missing_ok=True)


def send(config: Notify, message: Message) -> dict[str, object]:
    """One message to every URL, through the child; its answer ({"ok", "error"})."""
    payload: dict[str, object] = {
        "urls": list(config.urls),
        "title": message.title,
        "body": message.body,
        "type": message.type,
    }
    return _child([], payload, config.timeout)


def upssched_timers(confpath: Path) -> dict[str, int]:
    """upssched's on-battery timers in force (the agent's upssched.conf): UPS name -> seconds."""
    try:
        lines = tokenize((confpath / UPSSCHED_CONF).read_text(encoding="ascii", errors="replace"))
    except (OSError, NutSyntaxError):
        return {}
    timers = {}
    for words in lines:
        # AT ONBATT <ups>@<host:port> START-TIMER <name> <seconds>
        if len(words) == 6 and words[:2] == ["AT", "ONBATT"] and words[3] == "START-TIMER" and words[5].isdigit():
            timers[words[2].split("@", 1)[0]] = int(words[5])
    return timers


def start(
    config: Notify, host: str, upsd: tuple[str, int], policy: Policy, run_user: str, confpath: Path | None = None
) -> Notifier:
    """Start the notifier and its relay socket. A socket that cannot be opened is logged:
    the agent's own notices still go out (upsmon's do not)."""
    notifier = Notifier(config, host, upsd, policy, confpath)
    try:
        notifier.relay = Relay(config.socket, run_user)
    except (OSError, KeyError) as exc:
        logfmt.error("notify.relay", socket=str(config.socket), error=str(exc))
    notifier.start()
    logfmt.info("notify.ready", services=config.schemes, events=",".join(sorted(config.events)))
    return notifier
