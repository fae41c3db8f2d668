"""What lands on a host, rendered from fleet/templates/*.j2. Pure.

Every value a template writes goes through a filter that quotes it for the file's syntax
(`yaml`, `toml`, `tomlkey`, `env`); the environment's `finalize` refuses anything else,
as the agent's own renderer does (reconcile/decide/render.py), so a template that writes
a raw value fails at once instead of writing it. Values were validated before
(fleet/data.py), and the agent's TOML is read back by the agent's own parser.
"""

from __future__ import annotations

import json
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from fleet import digest
from fleet.clients import ClientConfig
from fleet.config import HOST_SECRET, HOST_USER, HostConfig, client_secret
from reconcile.nutsyntax import NOTIFY_TYPES, bare, encode, name_token, number
from reconcile.userconfig import ConfigError
from reconcile.userconfig import parse as parse_agent_config

TEMPLATES = Path(__file__).resolve().parent / "templates"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ENV_VALUE = re.compile(r"[A-Za-z0-9_./:+,<>-]*")


class Quoted(str):
    """A value a filter has quoted for its file: the only thing a template may write."""


def _finalize(value: object) -> Quoted:
    if isinstance(value, Quoted):
        return value
    # Never the value itself: it may be a password.
    raise ValueError(f"a fleet template wrote a {type(value).__name__} without a filter (yaml, toml, tomlkey or env)")


def _quoted(function: Any) -> Any:
    return lambda value: Quoted(function(value))


def toml_value(value: Any) -> str:
    """A TOML value: JSON's string escapes are TOML's basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"{value!r} cannot be written to TOML")


def toml_key(key: Any) -> str:
    if not isinstance(key, str):
        raise ValueError(f"{key!r} is not a key")
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def env_value(value: Any) -> str:
    text = str(value)
    if not _ENV_VALUE.fullmatch(text):
        raise ValueError(f"{text!r} cannot be written to an env file")
    return text


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters["yaml"] = _quoted(json.dumps)  # a JSON string is a YAML double-quoted scalar
    env.filters["toml"] = _quoted(toml_value)
    env.filters["tomlkey"] = _quoted(toml_key)
    env.filters["env"] = _quoted(env_value)
    # The host's own NUT files (upsmon.conf, nut.conf) pass through the agent's NUT syntax.
    env.filters["nut"] = _quoted(lambda value: encode(str(value), "value"))
    env.filters["nutname"] = _quoted(name_token)
    env.filters["bare"] = _quoted(bare)
    env.filters["number"] = _quoted(number)
    # The upsmon.conf files set a NOTIFYFLAG for each: none may fall back to NUT's SYSLOG+WALL.
    env.globals["notify_types"] = NOTIFY_TYPES
    return env


def _render(name: str, config: HostConfig, **more: Any) -> str:
    return (
        _env()
        .get_template(name)
        .render(c=config, host_user=HOST_USER, host_secret=HOST_SECRET, client_secret=client_secret, **more)
    )


def compose(config: HostConfig, files_digest: str = "") -> str:
    return _render("compose.yaml.j2", config, files_label=digest.LABEL, files_digest=files_digest)


def env_file(config: HostConfig) -> str:
    return _render("env.j2", config)


def agent_config(config: HostConfig) -> str:
    return _render("config.toml.j2", config)


def check_agent_config(config: HostConfig) -> None:
    """Raises ValueError (naming the key) if the agent would refuse its TOML."""
    text = agent_config(config)
    try:
        data = tomllib.loads(text)
        # A password_file is read by the agent on the Pi (a Docker secret), not here.
        for entry in data.get("users", {}).values():
            if "password_file" in entry:
                entry.pop("password_file")
                entry["password"] = "checked-on-the-pi"
        parse_agent_config(data)
    except (tomllib.TOMLDecodeError, ConfigError, ValueError) as exc:
        raise ValueError(str(exc)) from None


def host_upsmon(config: HostConfig) -> str:
    """/etc/nut/upsmon.conf of the host itself (holds its password: a secret file)."""
    return _render("host-upsmon.conf.j2", config)


def host_nut_conf() -> str:
    return _env().get_template("host-nut.conf.j2").render()


def client_files(client: ClientConfig) -> dict[str, str]:
    """A NUT client host's /etc/nut files (upsmon.conf holds its password: a secret)."""
    out = {"upsmon.conf": _env().get_template("client-upsmon.conf.j2").render(k=client)}
    if client.shutdown_after:
        out["upssched.conf"] = _env().get_template("client-upssched.conf.j2").render(k=client)
        out["upssched-cmd"] = _env().get_template("client-upssched-cmd.j2").render(k=client)
    return out


def files(config: HostConfig) -> dict[str, str]:
    """Project-dir file name -> content, for everything but the secrets. compose.yaml
    carries the digest of them all, the secrets too, as the container's label."""
    out = {"compose.yaml": compose(config), ".env": env_file(config), "config.toml": agent_config(config)}
    out["compose.yaml"] = compose(config, digest.of(out, config.secrets))
    return out
