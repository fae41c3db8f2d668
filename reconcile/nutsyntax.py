"""NUT's configuration syntax: validating, escaping and reading values.

Every value that reaches a NUT file passes through here. The rules are NUT's own
(common/parseconf.c): words split on spaces, `"` groups, `\\` escapes the next
character, `#` starts a comment, `=` is a word of its own outside quotes, bytes
below 0x20 (but newline) and above 0x7e are dropped by NUT without a word.

What this module makes safe is a `Safe` string; the templates' renderer refuses to
write anything else (see decide/render.py), so no template can forget the escaping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# NUT truncates a word silently at 512 characters; we refuse instead.
MAX_WORD = 500

# Why lowercase only: upsd compares names case-insensitively, so "UPS" and "ups"
# would be one UPS to clients but two sections to the drivers. `@`, `:` break
# client addressing (ups@host:port), `/` the socket path, and `default` is reserved.
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,40}")
_KEY_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
# Why so narrow: upsmon sends the password to upsd unquoted, and upsd splits what it
# reads with the same parser as the files, so `#`, quotes, backslashes or spaces would be
# cut off on the wire and `=` would become a word of its own: the login is refused.
_PASSWORD_RE = re.compile(r"[A-Za-z0-9._~+%,-]{8,128}")
PASSWORD_CHARS = "A-Z a-z 0-9 . _ ~ + % , -"
# POSIX extended regex metacharacters (NUT compiles USB match values with REG_EXTENDED).
_ERE_SPECIAL = set(".[]()*+?{}|^$\\")

# Every notify type upsmon knows (clients/upsmon.h, notifylist[]), in its order: NUT 2.8.4's,
# plus SHUTDOWN_HOSTSYNC (2.8.5) and SUSPEND_TIMEJUMP_UNEXPECTED (2.8.6). Why every upsmon.conf
# we write (the agent's, the fleet's hosts' and clients') sets a NOTIFYFLAG for each: a type
# left out gets NUT's default, SYSLOG+WALL, and NUT 2.8.3-2.8.5 hand notice text the UPS
# server chose (ALARM's ups.alarm) to a shell through wall() (CVE-2026-54161, docs/security.md).
# An upsmon older than a type logs "invalid notify type" for that line and goes on.
NOTIFY_TYPES = (
    *("ONLINE", "ONBATT", "LOWBATT", "FSD", "COMMOK", "COMMBAD", "SHUTDOWN", "SHUTDOWN_HOSTSYNC"),
    *("REPLBATT", "NOCOMM", "NOPARENT", "CAL", "NOTCAL", "OFF", "NOTOFF", "BYPASS", "NOTBYPASS"),
    *("ECO", "NOTECO", "ALARM", "NOTALARM", "OVER", "NOTOVER", "TRIM", "NOTTRIM", "BOOST", "NOTBOOST"),
    *("OTHER", "NOTOTHER", "SUSPEND_TIMEJUMP_UNEXPECTED", "SUSPEND_STARTING", "SUSPEND_FINISHED"),
)


class NutSyntaxError(ValueError):
    """A value that cannot be written safely; the message names the culprit."""


class Safe(str):
    """A string this module made safe to write into a NUT config file as it is.

    Only the functions below create one; str operations on it (concatenation,
    formatting) give back a plain str, which the renderer refuses."""

    __slots__ = ()


def is_printable_ascii(text: str) -> bool:
    return all(0x20 <= ord(ch) <= 0x7E for ch in text)


def printable_ascii(text: str) -> str:
    """Drop what NUT would drop anyway (control bytes, non-ASCII), and trim."""
    return "".join(ch for ch in text if 0x20 <= ord(ch) <= 0x7E).strip()


def validate_name(name: str, what: str) -> str:
    if not _NAME_RE.fullmatch(name) or name == "default":
        raise NutSyntaxError(
            f"{what}={name!r} is not a valid UPS name: use 1-41 characters from a-z, 0-9, "
            "'_', '.', '-', starting with a letter or digit (and not 'default')"
        )
    return name


def validate_user(name: str, what: str) -> str:
    """An upsd.users section name. Why the UPS-name rules: a user name is a `[section]`
    of upsd.users (parseconf reads it like a UPS name there) and upsmon sends it to upsd
    unquoted (USERNAME <name>), so the same narrow set keeps both sides reading one word."""
    if not _NAME_RE.fullmatch(name) or name == "default":
        raise NutSyntaxError(
            f"{what}: {name!r} is not a valid upsd user name: use 1-41 characters from a-z, 0-9, "
            "'_', '.', '-', starting with a letter or digit"
        )
    return name


def validate_key(key: str, what: str) -> str:
    if not _KEY_RE.fullmatch(key):
        raise NutSyntaxError(f"{what}: {key!r} is not a valid NUT option name (a-z, 0-9, '_', '.', '-')")
    return key


def validate_password(password: str, what: str) -> str:
    if not _PASSWORD_RE.fullmatch(password):
        # Never echo the password itself: only what is wrong with it.
        raise NutSyntaxError(
            f"{what}: the password must be 8-128 characters from {PASSWORD_CHARS} "
            "(upsmon sends it to upsd unquoted, so other characters break the login)"
        )
    return password


def name_token(name: str, what: str = "UPS name") -> Safe:
    """A UPS or user name, bare (a section header `[name]` is one unquoted word)."""
    return Safe(validate_name(name, what))


def key_token(key: str, what: str = "option") -> Safe:
    return Safe(validate_key(key, what))


_BARE_RE = re.compile(r"[A-Za-z0-9_.:@\[\]-]{1,200}")


def bare(word: str, what: str = "word") -> Safe:
    """A word written without quotes (an address, `ups@host:port`): only characters that
    NUT's parser keeps in one word as they are (no space, quote, backslash, `#` or `=`)."""
    if not _BARE_RE.fullmatch(word):
        raise NutSyntaxError(f"{what}: {word!r} is not a single plain word")
    return Safe(word)


def number(value: int, what: str = "number") -> Safe:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise NutSyntaxError(f"{what}: {value!r} is not a whole number")
    return Safe(str(value))


def comment(text: str, what: str = "comment") -> Safe:
    """Text after `#`: NUT skips it up to the newline, so only a newline (or a byte NUT
    drops) could end it early. Printable ASCII only."""
    if not is_printable_ascii(text):
        raise NutSyntaxError(f"{what}: {text!r} holds control or non-ASCII characters")
    return Safe(text)


def encode(value: str, what: str) -> Safe:
    """Quote a value for any NUT config file (NUT's pconf_encode, plus checks).

    Control characters and non-ASCII are refused rather than passed on: NUT drops
    them silently, and a raw newline inside quotes would swallow the next lines.
    """
    if not is_printable_ascii(value):
        raise NutSyntaxError(f"{what}: {value!r} holds control or non-ASCII characters")
    if len(value) > MAX_WORD:
        raise NutSyntaxError(f"{what}: value is {len(value)} characters, NUT allows {MAX_WORD}")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("#", "\\#")
    return Safe(f'"{escaped}"')


def ere_escape(text: str) -> str:
    """Escape a literal for a POSIX extended regex (usbhid-ups anchors it with ^...$)."""
    return "".join("\\" + ch if ch in _ERE_SPECIAL else ch for ch in text)


@dataclass(frozen=True)
class Section:
    name: str
    options: tuple[tuple[str, str | None], ...]  # (key, value); None for a bare flag

    def get(self, key: str) -> str | None:
        for k, v in self.options:
            if k == key:
                return v
        return None


def tokenize(text: str) -> list[list[str]]:
    """Split a NUT config file into lines of words, as common/parseconf.c does."""
    lines: list[list[str]] = []
    words: list[str] = []
    word: list[str] | None = None
    in_quote = escaped = in_comment = False
    for ch in text:
        if ch != "\n" and not (0x20 <= ord(ch) <= 0x7E):
            continue  # NUT drops these bytes without a word
        if in_comment:
            if ch == "\n":
                in_comment = False
                lines, words = _end_line(lines, words)
            continue
        if escaped:
            escaped = False
            if ch == "\n" and not in_quote:
                continue  # backslash-newline joins the next line
            word = (word or []) + [ch]
            continue
        if ch == "\\":
            escaped = True
            continue
        if in_quote:
            if ch == '"':
                in_quote = False
            elif ch == "#":
                raise NutSyntaxError("unescaped '#' inside quotes")
            else:
                word = (word or []) + [ch]
            continue
        if ch == '"':
            in_quote = True
            word = word or []
        elif ch == "#":
            in_comment = True
            if word is not None:
                words.append("".join(word))
                word = None
        elif ch in " \n":
            if word is not None:
                words.append("".join(word))
                word = None
            if ch == "\n":
                lines, words = _end_line(lines, words)
        elif ch == "=":
            if word is not None:
                words.append("".join(word))
                word = None
            words.append("=")
        else:
            word = (word or []) + [ch]
    if in_quote:
        raise NutSyntaxError("unterminated quote")
    if word is not None:
        words.append("".join(word))
    lines, _ = _end_line(lines, words)
    return lines


def _end_line(lines: list[list[str]], words: list[str]) -> tuple[list[list[str]], list[str]]:
    if words:
        lines.append(words)
    return lines, []


def parse_sections(text: str) -> tuple[Section, list[Section]]:
    """Read ups.conf-style text: (global options, sections in file order)."""
    globals_: list[tuple[str, str | None]] = []
    sections: list[Section] = []
    current: tuple[str, list[tuple[str, str | None]]] | None = None
    for words in tokenize(text):
        if len(words) == 1 and words[0].startswith("[") and words[0].endswith("]"):
            if current:
                sections.append(Section(current[0], tuple(current[1])))
            current = (words[0][1:-1], [])
            continue
        if len(words) >= 3 and words[1] == "=":
            option: tuple[str, str | None] = (words[0], words[2])
        else:
            option = (words[0], " ".join(words[1:]) or None)
        (current[1] if current else globals_).append(option)
    if current:
        sections.append(Section(current[0], tuple(current[1])))
    return Section("", tuple(globals_)), sections


def section_drivers(text: str | None) -> dict[str, str]:
    """ups.conf section name -> driver. Raises NutSyntaxError on a file NUT cannot parse."""
    return dict(_section_drivers(text or ""))


@lru_cache(maxsize=16)
def _section_drivers(text: str) -> tuple[tuple[str, str], ...]:
    # Why cached: the same ups.conf is parsed at every tick of a running agent.
    _, sections = parse_sections(text)
    return tuple((s.name, s.get("driver") or "") for s in sections)
