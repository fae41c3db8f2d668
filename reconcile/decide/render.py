"""Render the five NUT files from the Jinja2 templates (templates/*.j2).

Every value goes through the `nut` filter (reconcile.nutsyntax.encode): quoted and
escaped by NUT's rules, control characters refused. Rendering is pure.
"""

from __future__ import annotations

import dataclasses
import re
from functools import cache
from importlib import resources

import jinja2

from reconcile.model import NutConfig
from reconcile.nutsyntax import encode
from reconcile.observe.actual import FILES, MANAGED_HEADER


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
    )
    env.filters["nut"] = lambda value: encode(str(value), "value")
    return env


def render_file(name: str, config: NutConfig) -> str:
    template = _env().get_template(f"{name}.j2")
    return template.render(config=config, header=MANAGED_HEADER)


def render_all(config: NutConfig) -> dict[str, str]:
    return {name: render_file(name, config) for name in FILES}


def render_upsmon_with(config: NutConfig, monitors: tuple[str, ...]) -> str:
    """upsmon.conf watching only `monitors` (the plan's intermediate step)."""
    return render_file("upsmon.conf", dataclasses.replace(config, monitors=monitors))


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
