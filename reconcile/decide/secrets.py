"""Which passwords upsd.users and upsmon.conf get: policy only, no file is read here
(store.py reads the password files and secrets.json; the caller passes them in)."""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import Callable, Mapping

from reconcile.model import Secrets
from reconcile.userconfig import UserConfig

GENERATED_ROLES = ("monuser", "upsmon")  # admin is never generated: it exists only when asked for


def choose_secrets(
    user: UserConfig, files: Mapping[str, str], stored: Mapping[str, str], generate: Callable[[], str]
) -> tuple[Secrets, dict[str, str]]:
    """Passwords, first found: the TOML file, a *_FILE variable or Docker secret, the ones
    generated on an earlier start; else generated now. Returns them and what to keep."""
    keep = dict(stored)
    values: dict[str, str | None] = {}
    for role in ("admin", *GENERATED_ROLES):
        given = user.password_for(role) or files.get(role)
        if given is not None:
            values[role] = given
        elif role == "admin":
            values[role] = None
        elif role in stored:
            values[role] = stored[role]
        else:
            values[role] = keep[role] = generate()
    monuser, upsmon = values["monuser"], values["upsmon"]
    assert monuser is not None and upsmon is not None
    return Secrets(values["admin"], monuser, upsmon, user.secondaries), keep


def generate_password() -> str:
    # Letters and digits only: upsmon sends passwords to upsd unquoted.
    return pysecrets.token_hex(16)
