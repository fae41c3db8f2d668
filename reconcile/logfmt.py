"""One line per event, key=value (logfmt), to stdout and to the hotplug log file.

log.info("driver.start", ups="my-ups", driver="usbhid-ups")
-> ts=2026-11-28T23:30:00+00:00 level=info event=driver.start ups=my-ups driver=usbhid-ups

Values are quoted when needed and every control character is escaped (\n, \r, \t,
\x1b ...): a USB string or an error message can never start a new line or send a
terminal escape sequence to whoever reads the log. The file is capped (LOG_FILE_MAX)
and rotated once, so an SD card never fills with it.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time
from pathlib import Path
from typing import Any

_logger = logging.getLogger("nut-reconcile")


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ch.isprintable():
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _quote(value: Any) -> str:
    # logfmt's booleans are lowercase (as Loki, Grafana and most parsers read them).
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if text and all(ch.isprintable() and ch not in ' "=\\' for ch in text):
        return text
    return '"' + "".join(_escape(ch) for ch in text) + '"'


def format_fields(fields: dict[str, Any]) -> str:
    """`k=v k=v`, quoted and escaped as in the log; None values left out."""
    return " ".join(f"{k}={_quote(v)}" for k, v in fields.items() if v is not None)


def format_event(level: str, event: str, fields: dict[str, Any]) -> str:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    parts = [f"ts={ts}", f"level={level}", f"event={_quote(event)}"]
    parts += [f"{k}={_quote(v)}" for k, v in fields.items() if v is not None]
    return " ".join(parts)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        return format_event(record.levelname.lower(), record.getMessage(), fields)


def setup(debug: bool, log_file: Path | None, to_stderr: bool = False, max_bytes: int = 1 << 20) -> str | None:
    """Configure handlers; returns a warning when the log file cannot be used.

    to_stderr: for commands whose stdout is their answer (scan, plan, status --json).
    max_bytes: the file is rotated to <file>.1 at this size (one old copy is kept).
    """
    _logger.handlers.clear()
    _logger.setLevel(logging.DEBUG if debug else logging.INFO)
    _logger.propagate = False
    out = logging.StreamHandler(sys.stderr if to_stderr else sys.stdout)
    out.setFormatter(_Formatter())
    _logger.addHandler(out)
    if log_file is None:
        return None
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=1, encoding="utf-8")
    except OSError as exc:
        # Why not fatal: a full or read-only log volume must not stop the UPS being served.
        return f"{log_file}: {exc.strerror}"
    handler.setFormatter(_Formatter())
    _logger.addHandler(handler)
    return None


def _log(level: int, event: str, fields: dict[str, Any]) -> None:
    _logger.log(level, event, extra={"fields": fields})


def debug(event: str, **fields: Any) -> None:
    _log(logging.DEBUG, event, fields)


def info(event: str, **fields: Any) -> None:
    _log(logging.INFO, event, fields)


def warning(event: str, **fields: Any) -> None:
    _log(logging.WARNING, event, fields)


def error(event: str, **fields: Any) -> None:
    _log(logging.ERROR, event, fields)
