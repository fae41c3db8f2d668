"""The Docker CLI with a timeout, and the simulated USB bus bind-mounted into a container."""

from __future__ import annotations

import subprocess
from pathlib import Path

from testbed.nut import SimBus


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def run_container(image: str, name: str, port: int, *args: str) -> None:
    """`docker run -d` the image as `name`, with upsd published on 127.0.0.1:`port`."""
    docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:3493", *args, image)


SIM_MOUNT = "/sim"
SIM_ENV = ("-e", f"USB_SYSFS_ROOT={SIM_MOUNT}/usb", "-e", f"RECONCILE_CONFIG={SIM_MOUNT}/config.toml")


def container_sim(root: Path) -> SimBus:
    """A host directory to bind-mount at /sim (with SIM_ENV): a bus under usb/, a dummy-ups
    data file (battery.charge 77) and the TOML rule mapping an APC 051d:0002 to it."""
    (root / "ups.dev").write_text("ups.status: OL\nbattery.charge: 77\nups.mfr: APC\n")
    (root / "config.toml").write_text(
        '[[device]]\nmatch = {vendorid = "051d", productid = "0002"}\n'
        f'driver = "dummy-ups"\noptions = {{port = "{SIM_MOUNT}/ups.dev"}}\n'
    )
    return SimBus(root / "usb")
