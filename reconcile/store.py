"""The agent's own state files, in its root-only dir (RECONCILE_STATE, mode 0700):

  names.json     name assignments (decide/identity.py)
  secrets.json   generated passwords (0600)
  seen.json      UPSes last seen on battery, and who saw them (decide/power.py)
  procs.json     the processes the agent started, and the config each loaded
  status.json    the last reconcile, for `status`
  recent.json    the last notable event and the stale heals per UPS (persist.Recent), for
                 `status` and the fleet's status table
  nut-scanner.json  nut-scanner's answer for the VID:PIDs on the bus (a cache)
  lock           held by `run` during a pass and by `apply`, so they never race

Each file is one `StateFile[T]` (its name, parser, dumper and mode), read and written
through a `Store`, so no caller pairs a file name with a parser.

State files are input: each is validated on load like a config file. One that fails
is renamed aside (`names.json.corrupt-<time>`) by a command that may write, logged,
and replaced by a fresh start: it is never a reason to stop serving. No message ever
holds a password.

Writes are best effort (Store.save): a state file that cannot be written (a full SD
card) is kept in memory, read from there, and written again at the next pass. Why: a
full agent volume must never keep upsd, a driver or upsmon from starting.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from reconcile import events, logfmt
from reconcile.act.files import ensure_private_dir, remove_leftovers, write_atomic
from reconcile.decide.identity import NameBook
from reconcile.decide.power import Memory, Seen
from reconcile.decide.secrets import GENERATED_ROLES
from reconcile.model import Ledger, Owned, ProcId, UsbDevice
from reconcile.nutsyntax import NutSyntaxError, is_printable_ascii, validate_name, validate_password
from reconcile.observe.actual import FILES
from reconcile.settings import Settings
from reconcile.waiting import await_true

T = TypeVar("T")

SCANNER = "nut-scanner.json"  # its own format: observe/nut_scanner.py reads and writes it
LOCK_TIMEOUT = 60.0


class StoreError(ValueError):
    """A password file that cannot be used: the message names it, never its content."""


class Invalid(ValueError):
    """A state file's content failed validation."""


def _read(path: Path, parse: Callable[[Any], T]) -> tuple[T | None, str | None]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"unreadable: {exc.strerror}"
    try:
        return parse(json.loads(raw.decode("utf-8"))), None
    except (ValueError, UnicodeDecodeError) as exc:
        # Only the kind of problem, never the content: secrets.json holds passwords.
        reason = str(exc) if isinstance(exc, Invalid) else f"not valid JSON ({type(exc).__name__})"
        return None, reason


Parsed = dict[str, tuple[tuple[int, int, int], Any]]


def load(
    agent_dir: Path, name: str, parse: Callable[[Any], T], set_aside: bool, parsed: Parsed | None = None
) -> T | None:
    """The validated content of a state file, or None (absent, or invalid: then logged,
    and renamed aside when `set_aside`). `parsed` (kept by a long-running caller) skips
    reading and validating again a file whose inode, mtime and size are the ones it had.
    The value returned is shared: callers never change it."""
    where = os.path.join(agent_dir, name)  # a plain string: this runs at every tick
    try:
        st = os.stat(where)
        key: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    if parsed is not None and key is not None:
        known = parsed.get(where)
        if known is not None and known[0] == key:
            cached: T = known[1]
            return cached
    path = Path(where)
    value, problem = _read(path, parse)
    if problem is None:
        if parsed is not None and key is not None:
            parsed[where] = (key, value)
        return value
    if set_aside:
        aside = path.with_name(f"{name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        try:
            os.replace(path, aside)
            events.emit(events.StateCorrupt(str(path), problem, moved_to=str(aside), then="starting afresh"))
        except OSError as exc:
            events.emit(events.StateCorrupt(str(path), problem, error=f"cannot move it aside: {exc.strerror}"))
    else:
        events.emit(events.StateCorruptRead(str(path), problem, then="read as empty (nothing is changed)"))
    return None


def save(agent_dir: Path, name: str, data: Any, mode: int = 0o600) -> None:
    write_atomic(agent_dir / name, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=mode)


# --- names ---------------------------------------------------------------------------


def parse_names(data: Any) -> NameBook:
    try:
        return NameBook.from_json(data)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


# --- secrets -------------------------------------------------------------------------


def parse_secrets(data: Any) -> dict[str, str]:
    if not isinstance(data, dict) or set(data) - {"admin", *GENERATED_ROLES}:
        raise Invalid(f"not a JSON object with only {', '.join(GENERATED_ROLES)} (and admin)")
    out = {}
    for role, value in data.items():
        if not isinstance(value, str):
            raise Invalid(f"{role}: not a string")
        try:
            validate_password(value, role)
        except NutSyntaxError as exc:
            raise Invalid(str(exc)) from None
        out[role] = value
    # Why admin is dropped: earlier versions generated one; it exists only when asked for now.
    out.pop("admin", None)
    return out


def read_password_file(role: str, path: Path) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"password file for {role} ({path}): cannot read: {exc}") from None
    try:
        return validate_password(secret, f"password file for {role} ({path})")
    except NutSyntaxError as exc:
        raise StoreError(str(exc)) from None


# --- seen (UPSes last seen on battery) -------------------------------------------------

_PORT = re.compile(r"[0-9]+-[0-9.]+")
_HEX4 = re.compile(r"[0-9a-f]{4}")


def _text(value: Any, what: str, limit: int = 512) -> str:
    if not isinstance(value, str) or len(value) > limit or not is_printable_ascii(value):
        raise Invalid(f"{what}: not a printable ASCII string")
    return value


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 62:
        raise Invalid(f"{what}: not a whole number")
    return value


def _proc(value: Any, what: str) -> ProcId | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise Invalid(f"{what}: not [pid, start]")
    return ProcId(_int(value[0], what), _int(value[1], what))


def _device(data: Any, what: str) -> UsbDevice:
    if not isinstance(data, dict):
        raise Invalid(f"{what}: not an object")
    dev = UsbDevice(
        port=_text(data.get("port"), f"{what}.port", 64),
        vendorid=_text(data.get("vendorid"), f"{what}.vendorid", 4),
        productid=_text(data.get("productid"), f"{what}.productid", 4),
        busnum=_int(data.get("busnum"), f"{what}.busnum"),
        devnum=_int(data.get("devnum"), f"{what}.devnum"),
        serial=_text(data.get("serial", ""), f"{what}.serial", 256),
        manufacturer=_text(data.get("manufacturer", ""), f"{what}.manufacturer", 256),
        product=_text(data.get("product", ""), f"{what}.product", 256),
        serial_raw_ok=bool(data.get("serial_raw_ok", True)),
    )
    if not (_PORT.fullmatch(dev.port) and _HEX4.fullmatch(dev.vendorid) and _HEX4.fullmatch(dev.productid)):
        raise Invalid(f"{what}: not a USB device")
    return dev


def parse_seen(data: Any) -> Memory:
    if not isinstance(data, dict) or not isinstance(data.get("ups"), dict):
        raise Invalid("not a JSON object with 'ups'")
    memory: Memory = {}
    for name, entry in data["ups"].items():
        try:
            validate_name(name, "UPS name")
        except NutSyntaxError as exc:
            raise Invalid(str(exc)) from None
        if not isinstance(entry, dict):
            raise Invalid(f"{name}: not an object")
        memory[name] = Seen(
            name=name,
            key=_text(entry.get("key"), f"{name}.key"),
            device=_device(entry.get("device"), f"{name}.device"),
            twin=entry.get("twin") is True,
            status=_text(entry.get("status"), f"{name}.status", 64),
            upsmon=_proc(entry.get("upsmon"), f"{name}.upsmon"),
            upsd=_proc(entry.get("upsd"), f"{name}.upsd"),
        )
    return memory


def dump_seen(memory: Memory) -> dict[str, Any]:
    def proc(p: ProcId | None) -> list[int] | None:
        return None if p is None else [p.pid, p.start]

    return {
        "ups": {
            name: {
                "key": s.key,
                "device": asdict(s.device),
                "twin": s.twin,
                "status": s.status,
                "upsmon": proc(s.upsmon),
                "upsd": proc(s.upsd),
            }
            for name, s in sorted(memory.items())
        }
    }


# --- procs (the ledger) ----------------------------------------------------------------

_LEDGER_KEY = re.compile(r"upsd|upsmon|driver:[a-z0-9][a-z0-9_.-]{0,40}")
_PROGRAM = re.compile(r"[a-z0-9][a-z0-9_-]{0,40}")
_DIGEST = re.compile(r"[0-9a-f]{32}|absent")


def parse_procs(data: Any) -> Ledger:
    if not isinstance(data, dict):
        raise Invalid("not a JSON object")
    ledger: Ledger = {}
    for key, entry in data.items():
        if not isinstance(key, str) or not _LEDGER_KEY.fullmatch(key) or not isinstance(entry, dict):
            raise Invalid(f"{key!r}: not a process record")
        program = entry.get("program")
        if not isinstance(program, str) or not _PROGRAM.fullmatch(program):
            raise Invalid(f"{key}.program: not a program name")
        pid = entry.get("pid")
        loaded = entry.get("loaded", [])
        if not isinstance(loaded, list) or not all(
            isinstance(i, list) and len(i) == 2 and _text(i[0], f"{key}.loaded", 64) and _DIGEST.fullmatch(str(i[1]))
            for i in loaded
        ):
            raise Invalid(f"{key}.loaded: not a list of [file, digest]")
        ledger[key] = Owned(
            program=program,
            pid=None if pid is None else _int(pid, f"{key}.pid"),
            start=_int(entry.get("start"), f"{key}.start"),
            loaded=tuple((str(a), str(b)) for a, b in loaded),
        )
    return ledger


def dump_procs(ledger: Ledger) -> dict[str, Any]:
    return {
        key: {"program": o.program, "pid": o.pid, "start": o.start, "loaded": [list(i) for i in o.loaded]}
        for key, o in sorted(ledger.items())
    }


# --- status ----------------------------------------------------------------------------


def parse_status(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise Invalid("not a JSON object")
    return data


def status_record(by: str, outcome: str, errors: list[str], state: dict[str, Any]) -> dict[str, Any]:
    return {
        "by": by,
        "pid": os.getpid(),
        "last_reconcile": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "outcome": outcome,
        "errors": errors,
        "state": state,
    }


# --- recent events ------------------------------------------------------------------------

_KIND = re.compile(r"[a-z][a-z0-9_.]{0,40}|upsmon\.[A-Z]{2,12}")
_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def parse_recent(data: Any) -> dict[str, Any]:
    """{"last_event": {"kind", "ups", "at"} | null, "heals": {ups: count}}, checked field by field."""
    if not isinstance(data, dict) or set(data) - {"last_event", "heals"}:
        raise Invalid("not an object of last_event and heals")
    last = data.get("last_event")
    if last is not None:
        if not isinstance(last, dict) or set(last) != {"kind", "ups", "at"}:
            raise Invalid("last_event: not an object of kind, ups and at")
        if not isinstance(last["kind"], str) or not _KIND.fullmatch(last["kind"]):
            raise Invalid("last_event.kind: not an event kind")
        if last["ups"] is not None:
            _name(last["ups"], "last_event.ups")
        if not isinstance(last["at"], str) or not _STAMP.fullmatch(last["at"]):
            raise Invalid("last_event.at: not a UTC time (2026-01-31T12:00:00Z)")
    heals = data.get("heals", {})
    if not isinstance(heals, dict):
        raise Invalid("heals: not an object")
    for ups, count in heals.items():
        _name(ups, "heals")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count < 1 << 40:
            raise Invalid(f"heals.{ups}: not a count")
    return {"last_event": last, "heals": dict(heals)}


def _name(value: Any, what: str) -> None:
    try:
        validate_name(value if isinstance(value, str) else "", what)
    except NutSyntaxError:
        raise Invalid(f"{what}: not a UPS name") from None


# --- the files, and the store that reads and writes them ----------------------------------


def _dump_status(data: dict[str, Any]) -> dict[str, Any]:
    return data


@dataclass(frozen=True)
class StateFile(Generic[T]):
    """One state file: where it is (name, in the agent's dir), how it is validated on load
    (parse: JSON value -> T, raises Invalid), how it is written (dump) and its mode."""

    name: str
    parse: Callable[[Any], T]
    dump: Callable[[T], Any]
    mode: int = 0o600


NAMES: StateFile[NameBook] = StateFile("names.json", parse_names, NameBook.to_json)
SECRETS: StateFile[dict[str, str]] = StateFile("secrets.json", parse_secrets, dict)
SEEN: StateFile[Memory] = StateFile("seen.json", parse_seen, dump_seen)
PROCS: StateFile[Ledger] = StateFile("procs.json", parse_procs, dump_procs)
# status.json is for `status` and whoever reads the volume: readable (no password in it).
STATUS: StateFile[dict[str, Any]] = StateFile("status.json", parse_status, _dump_status, mode=0o644)
RECENT: StateFile[dict[str, Any]] = StateFile("recent.json", parse_recent, dict, mode=0o644)
STATE_FILES = (*(f.name for f in (NAMES, SECRETS, SEEN, PROCS, STATUS, RECENT)), SCANNER)


@dataclass
class Store:
    """The agent's state files, read and written for one process.

    `set_aside`: a corrupt file is renamed aside (commands that may write) or only read
    as empty. A long-running agent keeps one Store: a file whose inode, mtime and size
    did not change is not read or validated again, and a value that could not be
    written stays in memory (and is what load returns) until a save succeeds."""

    agent_dir: Path
    set_aside: bool = False
    parsed: Parsed = field(default_factory=dict)
    unsaved: dict[str, Any] = field(default_factory=dict)  # file name -> value not yet on disk
    failing: set[str] = field(default_factory=set)  # file names whose last write failed (logged once)

    def load(self, f: StateFile[T]) -> T | None:
        """The file's value: the one kept in memory when its write failed, else its
        validated content, or None (absent or corrupt). Shared: callers never change it."""
        if f.name in self.unsaved:
            kept: T = self.unsaved[f.name]
            return kept
        return load(self.agent_dir, f.name, f.parse, self.set_aside, self.parsed)

    def save(self, f: StateFile[T], value: T) -> bool:
        """Write `value`, or keep it in memory when the write fails (logged once while it
        lasts; retried by retry_unsaved or the next save). True when it is on disk."""
        try:
            save(self.agent_dir, f.name, f.dump(value), mode=f.mode)
        except OSError as exc:
            self.unsaved[f.name] = value
            if f.name not in self.failing:
                self.failing.add(f.name)
                error = exc.strerror or str(exc)
                events.emit(events.StateWrite(f.name, error, then="kept in memory, retried next pass"))
            return False
        self.unsaved.pop(f.name, None)
        if f.name in self.failing:
            self.failing.discard(f.name)
            events.emit(events.StateWritten(f.name, then="written again"))
        return True

    def write(self, f: StateFile[T], value: T) -> None:
        """Write `value` now, or raise OSError: for a file nothing depends on (status.json)."""
        save(self.agent_dir, f.name, f.dump(value), mode=f.mode)

    def retry_unsaved(self, files: tuple[StateFile[Any], ...]) -> None:
        """Write again what a failed write left in memory (in the order given)."""
        for f in files:
            if f.name in self.unsaved:
                self.save(f, self.unsaved[f.name])


# --- the dir itself ----------------------------------------------------------------------


def prepare(settings: Settings) -> None:
    """For a command that may write, holding the lock (`locked`): the temp files a crash
    left (in the agent's dir and in NUT's config dir: they may hold a password) are gone,
    and state from an earlier version's dir is moved in. Why under the lock: a temp file
    is a leftover only when no pass is running; the loop's own write in flight is not."""
    ensure_private_dir(settings.agent_dir)
    for directory, names in ((settings.agent_dir, STATE_FILES), (settings.confpath, FILES)):
        for path in remove_leftovers(directory, names):
            events.emit(events.StateLeftover(str(path)))
    _migrate(settings.agent_dir, settings.legacy_agent_dir)


def _migrate(agent_dir: Path, legacy_dir: Path) -> None:
    """Earlier versions kept names.json and secrets.json in NUT's state dir, which group
    nut can write. Move them (validated) into the agent's dir once, then remove them."""
    _migrate_one(NAMES, agent_dir, legacy_dir)
    _migrate_one(SECRETS, agent_dir, legacy_dir)
    for leftover in ("upsmon.pid", NAMES.name, SECRETS.name):
        try:
            (legacy_dir / leftover).unlink()
        except OSError:
            pass


def _migrate_one(f: StateFile[T], agent_dir: Path, legacy_dir: Path) -> None:
    old = legacy_dir / f.name
    if not old.is_file() or old.is_symlink():
        return
    value, problem = _read(old, f.parse)
    if not (agent_dir / f.name).exists() and problem is None and value is not None:
        save(agent_dir, f.name, f.dump(value), mode=f.mode)
        logfmt.info("state.migrated", file=f.name, source=str(old), to=str(agent_dir / f.name))
    elif problem is not None:
        logfmt.warning("state.migrated", file=f.name, source=str(old), why=f"not taken over: {problem}")
    old.unlink()


def _take(fd: int, path: Path, timeout: float) -> None:
    def take() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    if not take():
        logfmt.info("lock.wait", lock=str(path), why="another nut-reconcile is in a pass")
        if not await_true(take, timeout, 0.05):
            raise TimeoutError(f"{path}: another nut-reconcile held it for {timeout:g}s")


def _open_lock(agent_dir: Path) -> int:
    ensure_private_dir(agent_dir)  # the lock lives in it (a fresh volume has none yet)
    return os.open(agent_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


@contextmanager
def locked(agent_dir: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """One writer at a time: `run` holds this during each pass (through Lock), `apply`
    for its one pass, so a `docker exec ... apply` never races the running loop."""
    fd = _open_lock(agent_dir)
    try:
        _take(fd, agent_dir / "lock", timeout)
        yield
    finally:
        os.close(fd)


class Lock:
    """`locked`, for `run`: the lock file stays open between passes, so a pass costs one
    stat and two flocks instead of a mkdir, an open and a close."""

    def __init__(self, agent_dir: Path, timeout: float = LOCK_TIMEOUT) -> None:
        self.agent_dir, self.path, self.timeout = agent_dir, agent_dir / "lock", timeout
        self.fd: int | None = None

    def _fd(self) -> int:
        if self.fd is not None:
            # Why check: a lock file removed or replaced (a wiped volume) would leave this
            # fd locking an inode that `apply` no longer opens: then the two would not exclude.
            try:
                here, mine = os.stat(self.path), os.fstat(self.fd)
                if (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
                    return self.fd
            except OSError:
                pass
            self.close()
        self.fd = _open_lock(self.agent_dir)
        return self.fd

    @contextmanager
    def held(self) -> Iterator[None]:
        fd = self._fd()
        _take(fd, self.path, self.timeout)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
