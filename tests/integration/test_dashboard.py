"""A dashboard's view: Home Assistant's NUT client library (aionut) reads `my-ups`
through plug, unplug, replug on another port, and a swap to another model."""

from __future__ import annotations

import asyncio
import json

import pytest
from aionut import AIONUTClient, NUTError

from testbed import await_true
from testbed.nut import Sandbox

pytestmark = pytest.mark.nut
AWAIT = 20.0


def dashboard_read(box: Sandbox, password: str) -> tuple[dict[str, str], dict[str, str] | str]:
    async def read() -> tuple[dict[str, str], dict[str, str] | str]:
        client = AIONUTClient("127.0.0.1", box.port, "monuser", password, timeout=5, persistent=False)
        try:
            names = await client.list_ups()
            try:
                return names, await client.list_vars("my-ups")
            except NUTError as exc:
                return names, str(exc)
        finally:
            client.shutdown()

    return asyncio.run(read())


def test_dashboard_sees_one_stable_name_through_hotplug(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file("apc.dev", **{"ups.mfr": "APC", "battery.charge": "91"}), "051d", "0002")
    sandbox.dummy_rule(sandbox.data_file("cps.dev", **{"ups.mfr": "CPS", "battery.charge": "57"}), "0764", "0501")
    sandbox.start_run()
    secrets = sandbox.agent / "secrets.json"
    assert await_true(secrets.exists, AWAIT), sandbox.run_output()
    password = json.loads(secrets.read_text())["monuser"]

    def sees(mfr: str | None) -> bool:
        try:
            names, data = dashboard_read(sandbox, password)
        except NUTError:
            return False
        if set(names) != {"my-ups"}:
            return False
        if mfr is None:
            return isinstance(data, str) and "DRIVER-NOT-CONNECTED" in data.upper().replace(" ", "-")
        return isinstance(data, dict) and data.get("ups.mfr") == mfr and data.get("ups.status") == "OL"

    assert await_true(lambda: sees(None), AWAIT), sandbox.run_output()
    sandbox.bus.plug("1-1", "051d", "0002", serial="APC1")
    assert await_true(lambda: sees("APC"), AWAIT), sandbox.run_output()
    sandbox.bus.unplug("1-1")
    assert await_true(lambda: sees(None), AWAIT), sandbox.run_output()
    sandbox.bus.plug("1-3", "051d", "0002", serial="APC1")
    assert await_true(lambda: sees("APC"), AWAIT), sandbox.run_output()
    sandbox.bus.unplug("1-3")
    sandbox.bus.plug("1-1", "0764", "0501", serial="CPS1")
    assert await_true(lambda: sees("CPS"), AWAIT), sandbox.run_output()
