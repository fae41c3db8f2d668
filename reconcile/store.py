"""The agent's own state files in the state dir (NUT_STATEPATH/reconcile):
names.json (name assignments), secrets.json (generated passwords, 0600),
status.json (last reconcile), upsmon.pid."""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import time
from pathlib import Path
from typing import Any

from reconcile.act.files import write_atomic
from reconcile.decide.desired import Secrets
from reconcile.decide.identity import NameBook
from reconcile.nutsyntax import NutSyntaxError, validate_password
from reconcile.userconfig import UserConfig


class StoreError(ValueError):
    pass


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable ({exc}); move it away to start afresh") from None


def load_names(agent_dir: Path) -> NameBook:
    data = _read_json(agent_dir / "names.json")
    if data is None:
        return NameBook()
    try:
        return NameBook.from_json(data)
    except ValueError as exc:
        raise StoreError(f"{agent_dir / 'names.json'}: {exc}") from None


def save_names(agent_dir: Path, book: NameBook) -> None:
    agent_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(agent_dir / "names.json", json.dumps(book.to_json(), indent=2) + "\n", mode=0o644)


def _generate() -> str:
    # Letters and digits only: upsmon sends passwords to upsd unquoted.
    return pysecrets.token_hex(16)


def read_password_file(role: str, path: Path) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"password file for {role} ({path}): cannot read: {exc}") from None
    try:
        return validate_password(secret, f"password file for {role} ({path})")
    except NutSyntaxError as exc:
        raise StoreError(str(exc)) from None


def load_secrets(agent_dir: Path, user: UserConfig, create: bool, files: tuple[tuple[str, Path], ...] = ()) -> Secrets:
    """Passwords, first found: the TOML file, a *_FILE variable or Docker secret, the
    ones generated on an earlier start; else generated now and kept (0600)."""
    path = agent_dir / "secrets.json"
    from_files = {role: read_password_file(role, p) for role, p in files}
    data = _read_json(path)
    stored: dict[str, str] = data if isinstance(data, dict) else {}
    values = {}
    changed = False
    for role in ("admin", "monuser", "upsmon"):
        given = user.password_for(role) or from_files.get(role)
        if given is not None:
            values[role] = given
        elif isinstance(stored.get(role), str) and stored[role]:
            values[role] = stored[role]
        else:
            values[role] = _generate()
            stored[role] = values[role]
            changed = True
    if changed and create:
        agent_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(stored) + "\n", mode=0o600)
    return Secrets(admin=values["admin"], monuser=values["monuser"], upsmon=values["upsmon"])


def save_status(agent_dir: Path, by: str, outcome: str, errors: list[str], state: dict[str, Any]) -> dict[str, Any]:
    """Record the last reconcile (by `run` or `apply`) for `status`. Returns what was written."""
    status = {
        "by": by,
        "pid": os.getpid(),
        "last_reconcile": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "outcome": outcome,
        "errors": errors,
        "state": state,
    }
    agent_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(agent_dir / "status.json", json.dumps(status, indent=2, sort_keys=True) + "\n", mode=0o644)
    return status


def load_status(agent_dir: Path) -> dict[str, Any] | None:
    data = _read_json(agent_dir / "status.json")
    return data if isinstance(data, dict) else None
