"""The controller's fleet key, and the passwords derived from it.

The Pi's own upsmon (and, later, each NUT client host) logs in to the container's upsd
with a user of its own. Its password must be the same on both sides (upsd.users in the
container, upsmon.conf on the host), the same on every run (else every run would change
both files and recreate the container), and never typed or shown by anyone.

So it is derived: HMAC-SHA256(fleet key, "<host>\\0<user>"), 32 hex digits (letters and
digits only: upsmon sends passwords to upsd unquoted). The fleet key is 32 random bytes
made on the controller's first run, in FLEET_KEY_FILE (default
~/.config/ups-nut-smart/fleet-key, mode 0600). Whoever holds that file can compute every
host's password: keep it like an SSH key. A host with host_password in its data uses that
instead. A new key (the file deleted) changes every derived password at the next run.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
import time
from pathlib import Path

KEY_BYTES = 32
STALE_TMP = 60.0  # seconds: a temp key file this old was left by a run that was killed


class FleetKeyError(ValueError):
    """The key file cannot be used; the message names it."""


def key_file() -> Path:
    given = os.environ.get("FLEET_KEY_FILE")
    return Path(given) if given else Path.home() / ".config" / "ups-nut-smart" / "fleet-key"


def _sweep(path: Path) -> None:
    """Remove the temp key files killed runs left beside `path` (none was ever the key),
    once they are too old to be another run's at work."""
    now = time.time()
    for pattern in (f".{path.name}.tmp", f".{path.name}.*.tmp"):  # the first: earlier versions' one name
        for old in path.parent.glob(pattern):
            try:
                if now - old.lstat().st_mtime > STALE_TMP:
                    old.unlink()
            except OSError:
                pass  # gone already (another run swept it), or not ours to remove: in no one's way


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _sweep(path)
    # Why a temp file of this run's own (mkstemp: a new name, O_EXCL, 0600), then a link:
    # two controller runs at once must not each make a key (the second would silently
    # change every password): link() fails for the loser, who reads the winner's. Why not
    # one fixed temp name: a run killed between its open and its unlink left that file
    # behind, and every later run's O_EXCL open of it failed.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.write(fd, secrets.token_hex(KEY_BYTES).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails if another run made it first
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def fleet_key() -> bytes:
    path = key_file()
    if not path.exists():
        try:
            _create(path)
        except OSError as exc:
            raise FleetKeyError(f"fleet key {path}: cannot create it: {exc.strerror or exc}") from None
    try:
        text = path.read_text(encoding="ascii").strip()
        mode = path.stat().st_mode & 0o777
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetKeyError(f"fleet key {path}: cannot read it: {exc}") from None
    if mode & 0o077:
        raise FleetKeyError(f"fleet key {path}: mode {mode:04o} lets others read it: chmod 600 {path}")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        why = "not 32+ hex digits (delete it to make a new one: every derived password changes)"
        raise FleetKeyError(f"fleet key {path}: {why}")
    return key


def password(host: str, user: str) -> str:
    return hmac.new(fleet_key(), f"{host}\0{user}".encode(), hashlib.sha256).hexdigest()[:32]
