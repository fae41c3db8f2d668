"""Ask NUT's nut-scanner which driver fits the USB devices present (-U -P).

It runs only when the set of VID:PIDs on the bus changed, never every tick, always
with a timeout; its answer is cached in the agent's dir (written only by a pass that
applies). Its output is raw (no escaping), so every field is validated before use, and
so is the cache.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

_LINE = re.compile(r"USB:(.*)")
_FIELD = re.compile(r'(\w+)="([^"]*)"')
_DRIVER = re.compile(r"[a-z0-9][a-z0-9_-]{0,40}")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


def parse(output: str) -> dict[str, str]:
    """'USB:driver="usbhid-ups",port="auto",vendorid="051D",...' lines -> {"051d:0002": driver}."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        fields = dict(_FIELD.findall(m.group(1)))
        vid, pid, driver = fields.get("vendorid", ""), fields.get("productid", ""), fields.get("driver", "")
        if _HEX4.fullmatch(vid) and _HEX4.fullmatch(pid) and _DRIVER.fullmatch(driver):
            found.setdefault(f"{vid.lower()}:{pid.lower()}", driver)
    return found


def run(binary: str, timeout: float, env: dict[str, str] | None = None) -> dict[str, str]:
    """Raises subprocess.TimeoutExpired or OSError; the caller logs and goes on."""
    result = subprocess.run(
        [binary, "-U", "-P", "-q"],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        env=env,
        check=False,
    )
    return parse(result.stdout)


_VIDPID = re.compile(r"[0-9a-f]{4}:[0-9a-f]{4}")


def cache_key(vidpids: set[str]) -> tuple[str, ...]:
    return tuple(sorted(vidpids))


def read_cache(path: Path, key: tuple[str, ...]) -> dict[str, str] | None:
    """The drivers cached for exactly this set of VID:PIDs, if the cache is valid."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("bus") != list(key) or not isinstance(data.get("drivers"), dict):
        return None
    drivers = data["drivers"]
    if not all(
        isinstance(k, str) and _VIDPID.fullmatch(k) and isinstance(v, str) and _DRIVER.fullmatch(v)
        for k, v in drivers.items()
    ):
        return None
    return dict(drivers)


def cache_text(key: tuple[str, ...], drivers: dict[str, str]) -> str:
    return json.dumps({"bus": list(key), "drivers": drivers}, sort_keys=True) + "\n"
