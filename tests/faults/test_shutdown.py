"""NUT's shutdown path, end to end against the real upsd, dummy-ups and upsmon.

The point of running NUT at all: when the UPS that powers this host reports low
battery while on battery (OB LB), upsmon, as primary, sets FSD on the UPS (so the
secondaries on the network shut down too) and runs the shutdown command.
"""

from __future__ import annotations

import pytest

from tests.helpers import Sandbox, await_true

pytestmark = pytest.mark.nut

# upsmon's own timing: POLLFREQ 5 s, then FINALDELAY 5 s before SHUTDOWNCMD. A ceiling, not a target.
AWAIT = 60.0


def shutdown_config(box: Sandbox) -> str:
    flag = box.root / "shutdown-ran"
    return f'\n[upsmon]\nshutdown_cmd = "/bin/touch {flag}"\n'


def test_low_battery_on_an_attached_ups_runs_the_shutdown_command_and_sets_fsd(sandbox: Sandbox) -> None:
    data = sandbox.data_file()
    sandbox.dummy_rule(data)
    sandbox.write_config(shutdown_config(sandbox))
    sandbox.bus.plug("1-1")
    sandbox.cli("apply", check=True)
    assert sandbox.await_upsc("OL")
    flag = sandbox.root / "shutdown-ran"

    sandbox.data_file(**{"ups.status": "OB LB", "battery.charge": "4"})
    assert await_true(flag.exists, AWAIT), (sandbox.agent / "upsmon.log").read_text()
    code, status = sandbox.upsc("my-ups", "ups.status")
    assert code == 0 and status.split() == ["FSD", "OB", "LB"]
