"""Render the five NUT files from the Jinja2 templates (templates/*.j2). Pure.

Every `{{ ... }}` must go through one of the filters below, each a function of
reconcile.nutsyntax that validates and escapes by NUT's rules: `nut` (a quoted value),
`name` (a UPS or user name), `key` (an option name), `bare` (a plain word such as an
address), `number`, `comment`. The
environment's `finalize` refuses anything else, so a template that writes a raw value
fails at once instead of writing it: no future template can forget the escaping.
"""

from __future__ import annotations

import dataclasses
import re
from functools import cache, lru_cache
from importlib import resources

import jinja2

from reconcile.model import Monitor, NutConfig, UpsSection
from reconcile.nutsyntax import NutSyntaxError, Safe, bare, comment, encode, key_token, name_token, number
from reconcile.observe.actual import FILES, MANAGED_HEADER


def _finalize(value: object) -> Safe:
    if isinstance(value, Safe):
        return value
    # Never the value itself: it may be a password.
    raise NutSyntaxError(
        f"a template wrote a {type(value).__name__} without a NUT filter (nut, name, key, bare, number or comment)"
    )


@cache
def _env() -> jinja2.Environment:
    folder = resources.files("reconcile.templates")
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: (folder / name).read_text(encoding="utf-8")),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters["nut"] = lambda value: encode(str(value), "value")
    env.filters["name"] = name_token
    env.filters["key"] = key_token
    env.filters["bare"] = bare
    env.filters["number"] = number
    env.filters["comment"] = comment
    return env


def render_file(name: str, config: NutConfig) -> str:
    template = _env().get_template(f"{name}.j2")
    return template.render(config=config, header=comment(MANAGED_HEADER))


def render_all(config: NutConfig) -> dict[str, str]:
    return dict(_render_all(config))


@lru_cache(maxsize=8)
def _render_all(config: NutConfig) -> tuple[tuple[str, str], ...]:
    # Why cached: a running agent decides the same configuration at every tick.
    return tuple((name, render_file(name, config)) for name in FILES)


def render_upsmon_with(config: NutConfig, monitors: tuple[Monitor, ...]) -> str:
    """upsmon.conf watching only `monitors` (the plan's intermediate step)."""
    return render_file("upsmon.conf", dataclasses.replace(config, monitors=monitors))


@lru_cache(maxsize=64)
def check_section(section: UpsSection) -> None:
    """Raises NutSyntaxError if this section cannot be written (so it can be left out alone)."""
    _env().get_template("ups.conf.j2").render(config=_OneSection((section,)), header=comment(MANAGED_HEADER))


@dataclasses.dataclass(frozen=True)
class _OneSection:
    sections: tuple[UpsSection, ...]


_PASSWORD_LINE = re.compile(r"^(\s*password\s*=\s*).*$", re.MULTILINE)
_MONITOR_LINE = re.compile(r"^(\s*MONITOR\s+\S+\s+\S+\s+\S+\s+)(\"(?:[^\"\\]|\\.)*\"|\S+)", re.MULTILINE)
MASK = '"********"'


def mask_secrets(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Hide passwords in file text (upsd.users, upsmon.conf) for diffs, plans and logs."""
    text = _PASSWORD_LINE.sub(lambda m: m.group(1) + MASK, text)
    text = _MONITOR_LINE.sub(lambda m: m.group(1) + MASK, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text
