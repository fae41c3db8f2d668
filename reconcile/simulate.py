"""SIMULATE=1: try the agent without a UPS.

The agent plays the USB bus and the UPS itself: a sysfs-like tree with one APC device
that is plugged and unplugged in a cycle, and a dummy-ups data file whose readings
change over time (on line and charging, on battery and discharging). NUT serves it
through its real dummy-ups driver, so `upsc my-ups@localhost` and any dashboard show
plug, data, unplug ("Driver not connected") and replug.

The schedule within one cycle (SIMULATE_CYCLE seconds, default 120):
  0    - 40 %  plugged, on line, charging
  40   - 70 %  plugged, on battery, discharging
  70   - 85 %  plugged, on line
  85   - 100 % unplugged

A drill of the power-failure chain (`nut-reconcile drill on-battery`, `drill low-battery`,
then `drill on-line`, then `drill auto`) pins the simulated UPS at one state instead of the
cycle: on battery with 80 % left (staged clients go down), OB LB with 4 % left (every host
goes down), or on line and charging. It only exists with SIMULATE=1: no command makes a real UPS
report a state it is not in. With the fleet's host_shutdown on, a low-battery drill halts
the Pi for real (its own upsmon sees FSD): that is what it is for.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reconcile.act.files import write_atomic
from reconcile.model import DeviceRule

VENDORID, PRODUCTID, SERIAL = "051d", "0002", "SIM0000001"
PORT = "1-1"
MODEL = "Simulated UPS (SIMULATE)"


@dataclass(frozen=True)
class SimState:
    plugged: bool
    values: tuple[tuple[str, str], ...]


DRILLS = {"on-battery": ("OB DISCHRG", 80.0), "low-battery": ("OB LB", 4.0), "on-line": ("OL CHRG", 40.0)}
DRILL_FILE = "drill"  # in the simulator's root: the drill in force, if any


def state_at(elapsed: float, cycle: float, drill: str | None = None) -> SimState:
    """Pure: what the simulated UPS looks like `elapsed` seconds into the demo (or, with
    `drill`, the drill's state)."""
    phase = (elapsed % cycle) / cycle
    if drill in DRILLS:
        status, charge = DRILLS[drill]
    elif phase >= 0.85:
        return SimState(False, ())
    elif phase < 0.40:
        status, charge = "OL CHRG", 60 + 40 * phase / 0.40
    elif phase < 0.70:
        status, charge = "OB DISCHRG", 100 - 50 * (phase - 0.40) / 0.30
    else:
        status, charge = "OL", 50 + 10 * (phase - 0.70) / 0.15
    on_battery = status.startswith("OB")
    values = (
        ("device.mfr", "ups-nut-smart"),
        # Why no "=" in the model: dummy-ups's parser makes it a token of its own, and clients
        # read "SIMULATE = 1".
        ("device.model", MODEL),
        ("ups.mfr", "ups-nut-smart"),
        ("ups.model", MODEL),
        ("ups.serial", SERIAL),
        ("ups.status", status),
        ("battery.charge", f"{charge:.0f}"),
        ("battery.runtime", f"{charge * 18:.0f}"),
        ("input.voltage", "0.0" if on_battery else "230.0"),
        ("ups.load", "23"),
        # A real UPS's off-delay: the agent sets it before its power cycle (decide/forced.py).
        ("ups.delay.shutdown", "20"),
    )
    return SimState(True, values)


class Simulator:
    def __init__(self, root: Path, cycle: float) -> None:
        self.root = root
        self.cycle = cycle
        self.sysfs = root / "sys"
        self.data = root / "ups.dev"
        self._last: SimState | None = None

    def rule(self) -> DeviceRule:
        return DeviceRule(
            index=-1,
            vendorid=VENDORID,
            productid=PRODUCTID,
            serial=SERIAL,
            driver="dummy-ups",
            options=(("port", str(self.data)),),
            desc=MODEL,
        )

    @property
    def plugged(self) -> bool:
        """Whether the last step left the simulated UPS on the bus."""
        return self._last is not None and self._last.plugged

    def drill(self) -> str | None:
        try:
            text = (self.root / DRILL_FILE).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return text if text in DRILLS else None

    def set_drill(self, drill: str) -> None:
        """`drill`: a key of DRILLS, or "auto" (back to the cycle)."""
        if drill == "auto":
            (self.root / DRILL_FILE).unlink(missing_ok=True)
        else:
            write_atomic(self.root / DRILL_FILE, drill + "\n", mode=0o644)

    def step(self, elapsed: float) -> SimState:
        state = state_at(elapsed, self.cycle, self.drill())
        if state == self._last:
            return state
        self.sysfs.mkdir(parents=True, exist_ok=True)
        if state.values:
            # dummy-ups re-reads the file when its mtime changes; atomic, so never half.
            write_atomic(self.data, "".join(f"{k}: {v}\n" for k, v in state.values), mode=0o644)
        device = self.sysfs / PORT
        if state.plugged and not device.exists():
            tmp = Path(tempfile.mkdtemp(dir=self.sysfs, prefix=".plug-"))
            for name, value in (
                ("idVendor", VENDORID),
                ("idProduct", PRODUCTID),
                ("busnum", "1"),
                ("devnum", "2"),
                ("serial", SERIAL),
                ("manufacturer", "American Power Conversion"),
                ("product", "Back-UPS ES 700G (simulated)"),
            ):
                (tmp / name).write_text(value + "\n", encoding="ascii")
            tmp.rename(device)
        elif not state.plugged and device.exists():
            shutil.rmtree(device)
        self._last = state
        return state
