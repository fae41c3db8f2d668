"""The owner's own thresholds in the default image (NUT 2.8.4 compiled from source), with
compose.yaml's privileges (every capability dropped but four, no new privileges, a
read-only root): NUT 2.8.4's dummy-ups raises LB itself at low_battery_percent (ignorelb),
and on_battery_max_seconds runs through the relay, NUT 2.8.4's upssched (its socket in the
agent's dir) and `upsmon -c fsd`. Driven by the SIMULATE demo's drill, as an owner would.
The host's NUT 2.8.0 runs the same chain in tests/faults/test_thresholds.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import await_true
from testbed.docker import SIM_MOUNT, docker, run_container
from testbed.images import BUILD_TIMEOUT
from testbed.nut import free_port
from tests.container.conftest import SourceImage
from tests.container.test_container import LEAST_PRIVILEGE, upsc

pytestmark = [pytest.mark.docker, pytest.mark.timeout(BUILD_TIMEOUT + 300)]

AWAIT = 60.0
RULE = '[[device]]\nmatch = {vendorid = "051d", productid = "0002"}\n'  # the simulated UPS


@pytest.mark.parametrize(
    ("threshold", "drill", "why"),
    [
        ("low_battery_percent = 50", ("on-battery", "--charge", "45"), "LB"),
        ("on_battery_max_seconds = 10", ("on-battery",), "User requested FSD"),
    ],
    ids=["low_battery_percent", "on_battery_max_seconds"],
)
@pytest.mark.parametrize("source_image", ["amd64"], indirect=True)
def test_each_threshold_halts_through_nut_284_under_the_containers_privileges(
    source_image: SourceImage, container_name: str, tmp_path: Path, threshold: str, drill: tuple[str, ...], why: str
) -> None:
    record = tmp_path / "shutdowns"
    (tmp_path / "config.toml").write_text(
        f"{RULE}{threshold}\n\n[upsmon]\npollfreq = 1\ndeadtime = 3\n"
        f"shutdown_cmd = \"/bin/sh -c 'echo ran >> {SIM_MOUNT}/shutdowns'\"\n"
    )
    port = free_port()
    env = ("-e", "SIMULATE=1", "-e", "SIMULATE_CYCLE=86400", "-e", f"RECONCILE_CONFIG={SIM_MOUNT}/config.toml")
    run_container(source_image.tag, container_name, port, *LEAST_PRIVILEGE, "-v", f"{tmp_path}:{SIM_MOUNT}", *env)

    def logs() -> str:
        out = docker("logs", container_name, check=False)
        upsmon = docker("exec", container_name, "cat", "/var/lib/nut-reconcile/upsmon.log", check=False)
        return out.stdout + out.stderr + upsmon.stdout

    assert await_true(lambda: upsc(port) == "OL CHRG", AWAIT), logs()
    assert await_true(lambda: "event=start.upsmon" in logs(), AWAIT), logs()
    docker("exec", container_name, "nut-reconcile", "drill", *drill)
    assert await_true(record.exists, AWAIT), logs()
    status = upsc(port).split()
    assert "FSD" in status, status
    if why == "LB":
        assert "LB" in status and upsc(port, "battery.charge.low") == "50", status  # dummy-ups 2.8.4's own LB
    else:
        assert "LB" not in status and why in logs(), logs()
        # upssched's socket is in the agent's own dir (root only), not NUT's (group nut).
        assert docker("exec", container_name, "stat", "-c", "%a", "/var/lib/nut-reconcile").stdout.strip() == "700"
    assert record.read_text().splitlines() == ["ran"]
