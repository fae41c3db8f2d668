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
goes down), or on line and charging. `drill on-battery --charge 45` pins it on battery at
45 %, to drill a [[device]] rule's low_battery_percent. It only exists with SIMULATE=1: no
command makes a real UPS report a state it is not in. With the fleet's host_shutdown on, a low-battery drill halts
the Pi for real (its own upsmon sees FSD): that is what it is for.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reconcile.act.files import write_atomic
from reconcile.model import DeviceRule, Thresholds

VENDORID, PRODUCTID, SERIAL = "051d", "0002", "SIM0000001"
PORT = "1-1"
MODEL = "Simulated UPS (SIMULATE)"


@dataclass(frozen=True)
class SimState:
    plugged: bool
    values: tuple[tuple[str, str], ...]


DRILLS = {"on-battery": ("OB DISCHRG", 80.0), "low-battery": ("OB LB", 4.0), "on-line": ("OL CHRG", 40.0)}
DRILL_FILE = "drill"  # in the simulator's root: the drill in force, if any
CHARGE_RANGE = (1, 100)  # `drill on-battery --charge N`: the charge to pin, in percent


def drill_state(drill: str | None) -> tuple[str, float] | None:
    """(status, charge) of a drill: a key of DRILLS, or "on-battery <percent>" (a drill of
    the owner's own threshold, e.g. at 45 % with low_battery_percent = 50); else None."""
    name, _, charge = (drill or "").partition(" ")
    if name not in DRILLS:
        return None
    status, default = DRILLS[name]
    if not charge:
        return status, default
    low, high = CHARGE_RANGE
    if name != "on-battery" or not charge.isdigit() or not low <= int(charge) <= high:
        return None
    return status, float(charge)


def state_at(elapsed: float, cycle: float, drill: str | None = None) -> SimState:
    """Pure: what the simulated UPS looks like `elapsed` seconds into the demo (or, with
    `drill`, the drill's state)."""
    phase = (elapsed % cycle) / cycle
    pinned = drill_state(drill)
    if pinned is not None:
        status, charge = pinned
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
        ("battery.charge", f"{charge:.0f}"),
        ("battery.runtime", f"{charge * 18:.0f}"),
        # Why after the battery: with ignorelb (low_battery_percent), dummy-ups decides LB
        # when it reads ups.status, from the charge it knows by then (NUT 2.8.0 does not look
        # again at the end of the file, 2.8.4 does).
        ("ups.status", status),
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

    def rule(self, rules: Iterable[DeviceRule] = ()) -> DeviceRule:
        """dummy-ups on the demo's data file, with the name and powers_host of the user's
        first rule that matches the simulated device (ignore aside): a pinned name is served
        as a real UPS's would be, so the demo drills a pinned-name Pi's chain too."""
        user = next(
            (
                r
                for r in rules
                if not r.ignore
                and r.vendorid in (None, VENDORID)
                and r.productid in (None, PRODUCTID)
                and r.serial in (None, SERIAL)
            ),
            None,
        )
        return DeviceRule(
            index=-1,
            vendorid=VENDORID,
            productid=PRODUCTID,
            serial=SERIAL,
            name=None if user is None else user.name,
            driver="dummy-ups",
            options=(("port", str(self.data)),),
            desc=MODEL,
            powers_host=True if user is None else user.powers_host,
            # The owner's own thresholds too: the drill shows what they do (dummy-ups honours
            # ignorelb and override.* as every NUT driver does).
            thresholds=Thresholds() if user is None else user.thresholds,
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
        return text if drill_state(text) is not None else None

    def set_drill(self, drill: str) -> None:
        """`drill`: a key of DRILLS (or "on-battery <percent>", see drill_state), or "auto"
        (back to the cycle)."""
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
