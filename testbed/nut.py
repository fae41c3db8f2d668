"""A simulated USB bus (a sysfs tree) and a real-NUT sandbox.

Only the USB bus and the UPS hardware are simulated. NUT is Debian's real upsd,
upsdrvctl, dummy-ups, upsc and upsmon, run as root in a temp dir on a loopback port.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconcile.act.daemons import reap
from reconcile.waiting import await_true
from testbed import REPO, stub_driver

CLI_TIMEOUT = 60


class SimBus:
    """A directory laid out like /sys/bus/usb/devices. Devices appear and vanish
    atomically (built aside, then renamed in), as the kernel's do."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._devnum = 1

    def plug(
        self,
        port: str = "1-1",
        vendorid: str = "051d",
        productid: str = "0002",
        serial: str | bytes | None = "3B1234X56789",
        manufacturer: str = "American Power Conversion",
        product: str = "Back-UPS ES 700G",
    ) -> None:
        self._devnum += 1
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".plug-"))
        attrs: dict[str, str | bytes] = {
            "idVendor": vendorid,
            "idProduct": productid,
            "busnum": port.split("-")[0],
            "devnum": str(self._devnum),
            "manufacturer": manufacturer,
            "product": product,
            "speed": "1.5",
        }
        if serial is not None:
            attrs["serial"] = serial
        for name, value in attrs.items():
            data = value if isinstance(value, bytes) else value.encode()
            (tmp / name).write_bytes(data + b"\n")
        os.rename(tmp, self.root / port)

    def unplug(self, port: str = "1-1") -> None:
        shutil.rmtree(self.root / port)

    def add_root_hub(self, bus: int = 1) -> None:
        hub = self.root / f"usb{bus}"
        hub.mkdir()
        (hub / "idVendor").write_text("1d6b\n")
        (hub / "idProduct").write_text("0002\n")


# Real kernel uevents for tests: the kernel sends one for a device when its action is
# written to the device's `uevent` file (root only). A virtual device of subsystem mem
# stands in for a USB one, so the agent listens to "mem" (UEVENT_SUBSYSTEM) in the tests.
UEVENT_DEVICE = "/sys/devices/virtual/mem/null/uevent"
UEVENT_ENV = {"UEVENTS": "1", "UEVENT_SUBSYSTEM": "mem", "DEBUG": "1"}


def synthetic_uevent(action: str = "change", device: str = UEVENT_DEVICE) -> None:
    """Make the kernel multicast a real uevent (every listener on the machine gets it)."""
    fd = os.open(device, os.O_WRONLY)
    try:
        os.write(fd, action.encode("ascii"))
    finally:
        os.close(fd)


@contextlib.contextmanager
def nut_readable_dir(prefix: str = "nrs-") -> Iterator[Path]:
    """A short temp dir the `nut` user can reach (pytest's own is root-only, and a
    driver socket path must fit 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def upsc(port: int, target: str = "my-ups", var: str | None = None) -> tuple[int, str]:
    """A NUT client on this host: (exit code, the answer or upsc's error)."""
    argv = ["upsc", f"{target}@127.0.0.1:{port}"] + ([var] if var else [])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    # upsc prints "Init SSL without certificate database" on stderr: not part of the answer.
    err = "\n".join(line for line in r.stderr.splitlines() if "Init SSL" not in line)
    return r.returncode, (r.stdout.strip() if r.returncode == 0 else err.strip())


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _reaped(pid: int) -> bool:
    reap()  # pytest is the subreaper of the daemons the CLI started (see conftest)
    return not _alive(pid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nut_processes(confpath: Path) -> list[tuple[int, str]]:
    """Live processes (not zombies) whose environment points at this sandbox."""
    found = []
    marker = f"NUT_CONFPATH={confpath}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state = stat[stat.rfind(")") + 2]
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        if marker in environ.split(b"\0") and state != "Z" and comm not in ("python", "python3", "pytest"):
            found.append((int(entry), comm))
    return found


# compose.yaml's capability set (cap_drop ALL, cap_add these four, no-new-privileges), for
# the agent run as in its container: root, but without CAP_SYS_PTRACE (so /proc hides the
# environment of upsd, which runs as nut) or CAP_DAC_OVERRIDE.
CONTAINER_CAPS = ("chown", "setuid", "setgid", "kill")
AS_CONTAINER = [
    "setpriv",
    "--bounding-set",
    "-all," + ",".join(f"+{c}" for c in CONTAINER_CAPS),
    "--inh-caps",
    "-all",
    "--no-new-privs",
    "--",
]


# NUT's driver directory (Debian's, compiled into upsdrvctl) and how a test adds a driver to
# it: an overlay of a directory of its own on it, in a mount namespace of the agent's (and of
# every program it starts), so the host's directory is never written.
DRIVER_PATH = "/lib/nut"
WITH_DRIVERS = 'mount -t overlay overlay -o "lowerdir=$0:{path}" {path} && exec "$@"'


def _agent(
    crash_before_step: int | None,
    container_caps: bool = False,
    module: str = "reconcile",
    drivers: Path | None = None,
) -> list[str]:
    """The agent's command line; with crash_before_step, the one that dies before step N;
    with container_caps, under the container's capability set; `module`: a wrapper of the
    agent's CLI (testbed.small_uevent_buffer); `drivers`: a directory of more NUT drivers
    (stub_drivers) that upsdrvctl finds beside its own."""
    prefix = AS_CONTAINER if container_caps else []
    if drivers is not None:
        mount = WITH_DRIVERS.format(path=DRIVER_PATH)
        prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount, str(drivers), *prefix]
    if crash_before_step is None:
        return [*prefix, sys.executable, "-m", module]
    return [*prefix, sys.executable, "-m", "testbed.crashing", str(crash_before_step)]


@dataclass
class Sandbox:
    root: Path
    port: int
    bus: SimBus
    env: dict[str, str]
    rules: list[str] = field(default_factory=list)
    children: list[subprocess.Popen[str]] = field(default_factory=list)
    container_caps: bool = False  # every agent command runs with compose.yaml's capabilities only
    drivers: Path | None = None  # more NUT drivers for the agent (stub_drivers): use_stub_driver()

    @property
    def conf(self) -> Path:
        return Path(self.env["NUT_CONFPATH"])

    @property
    def state(self) -> Path:
        return Path(self.env["NUT_STATEPATH"])

    @property
    def agent(self) -> Path:
        """The agent's own state dir (names, secrets, process records)."""
        return Path(self.env["RECONCILE_STATE"])

    @property
    def log(self) -> Path:
        return Path(self.env["LOG_FILE"])

    def data_file(self, name: str = "ups.dev", **values: str) -> Path:
        path = self.root / name
        values = {"ups.status": "OL", "battery.charge": "91", "ups.mfr": "APC", **values}
        path.write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
        return path

    def write_config(self, extra: str = "") -> None:
        text = f'[upsd]\nlisten = ["127.0.0.1:{self.port}"]\n\n' + "\n".join(self.rules) + "\n" + extra
        Path(self.env["RECONCILE_CONFIG"]).write_text(text)

    def dummy_rule(
        self,
        data: Path,
        vendorid: str = "051d",
        productid: str = "0002",
        serial: str | None = None,
        name: str | None = None,
    ) -> None:
        match = f'vendorid = "{vendorid}", productid = "{productid}"'
        if serial is not None:
            match += f', serial = "{serial}"'
        rule = f'[[device]]\nmatch = {{{match}}}\ndriver = "dummy-ups"\noptions = {{port = "{data}"}}\n'
        if name:
            rule += f'name = "{name}"\n'
        self.rules.append(rule)
        self.write_config()

    def use_stub_driver(self) -> None:
        """Let the agent start testbed/stub_driver.py as the NUT driver `stub-ups`."""
        self.drivers = stub_drivers(self.root / "drivers")

    def stub_rule(self, device: dict[str, Any], name: str = "stub.json") -> Path:
        """A [[device]] rule serving the plugged device with the stub driver, from `device`
        (its JSON: stub_driver.py says what it holds); the file's path, to change it later."""
        path = self.root / name
        write_stub(path, device)
        rule = f'[[device]]\nmatch = {{vendorid = "051d", productid = "0002"}}\ndriver = "{stub_driver.NAME}"\n'
        self.rules.append(rule + f'options = {{port = "{path}"}}\n')
        self.write_config()
        return path

    def command(self, *args: str) -> list[str]:
        """The agent's command line as this sandbox runs it (with its capability set)."""
        return [*_agent(None, self.container_caps, drivers=self.drivers), *args]

    def cli(
        self, *args: str, env: dict[str, str] | None = None, check: bool = False, crash_before_step: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*_agent(crash_before_step, self.container_caps, drivers=self.drivers), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"nut-reconcile {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def start_run(
        self, env: dict[str, str] | None = None, crash_before_step: int | None = None, module: str = "reconcile"
    ) -> subprocess.Popen[str]:
        with open(self.root / "run.out", "a") as out:  # the child keeps its own copy of the fd
            child = subprocess.Popen(
                [*_agent(crash_before_step, self.container_caps, module, self.drivers), "run"],
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.children.append(child)
        return child

    def run_output(self) -> str:
        path = self.root / "run.out"
        return path.read_text() if path.exists() else ""

    def await_log(self, fragment: str, count: int = 1, timeout: float = 20) -> bool:
        """Wait until the agent's output holds `fragment` at least `count` times.

        Why a wait: the agent logs a start only after it has confirmed the process,
        which can be after a client already sees the process serving."""
        return await_true(lambda: self.run_output().count(fragment) >= count, timeout)

    def upsc(self, target: str = "my-ups", var: str | None = None) -> tuple[int, str]:
        return upsc(self.port, target, var)

    def await_upsc(
        self, expected: str, target: str = "my-ups", var: str | None = "ups.status", timeout: float = 20
    ) -> bool:
        return await_true(lambda: self.upsc(target, var)[1] == expected, timeout)

    def served(self) -> set[str]:
        """The UPS names upsd lists (upsc -l); empty when upsd does not answer."""
        r = subprocess.run(
            ["upsc", "-l", f"127.0.0.1:{self.port}"], capture_output=True, text=True, timeout=10, check=False
        )
        return set(r.stdout.split()) if r.returncode == 0 else set()

    def processes(self) -> dict[str, int]:
        """How many of each NUT program run for this sandbox (zombies excluded)."""
        counts: dict[str, int] = {}
        for _, comm in nut_processes(self.conf):
            counts[comm] = counts.get(comm, 0) + 1
        return counts

    def converged(self, expected: dict[str, str], var: str = "ups.status") -> str | None:
        """None when NUT serves exactly `expected` ({name: value of var, or "Driver not
        connected"}), one driver runs per UPS with data, and `plan` finds nothing to do;
        else what differs (for the assertion message)."""
        if self.served() != set(expected):
            return f"served {sorted(self.served())}, expected {sorted(expected)}"
        for name, value in expected.items():
            got = self.upsc(name, var)[1]
            if got != value and not (value == "Driver not connected" and got == "Error: Driver not connected"):
                return f"{name}: {var} is {got!r}, expected {value!r}"
        drivers = sum(1 for v in expected.values() if v != "Driver not connected")
        want = {"upsd": 1, "upsmon": 1} | ({"dummy-ups": drivers} if drivers else {})
        if self.processes() != want:
            return f"processes {self.processes()}, expected {want}"
        plan = self.cli("plan")
        if plan.returncode != 0:
            return f"plan is not in sync:\n{plan.stdout}{plan.stderr}"
        return None

    def await_converged(self, expected: dict[str, str], timeout: float = 30) -> str | None:
        last: list[str | None] = [None]

        def check() -> bool:
            last[0] = self.converged(expected)
            return last[0] is None

        return None if await_true(check, timeout, 0.2) else last[0]

    def pid_of(self, pidfile: str) -> int:
        return int((self.state / pidfile).read_text().strip())

    def cleanup(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(5)
        leftovers = nut_processes(self.conf)
        for pid, _ in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid, _ in leftovers:
            await_true(functools.partial(_reaped, pid), 5)


def stub_drivers(directory: Path) -> Path:
    """A directory holding the stub driver's program (testbed/stub_driver.py) under its
    driver name: run by this very interpreter, so its process name is the driver's."""
    directory.mkdir(exist_ok=True)
    program = directory / stub_driver.NAME
    program.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
        "from testbed.stub_driver import main\nsys.exit(main(sys.argv))\n"
    )
    program.chmod(0o755)
    directory.chmod(0o755)
    return directory


def write_stub(path: Path, device: dict[str, Any]) -> None:
    """The stub driver's JSON, written whole (it reads the file again when it changes)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(device))
    os.replace(tmp, path)


def make_sandbox(tmp: Path, container_caps: bool = False) -> Iterator[Sandbox]:
    """`tmp` and its parents must be searchable by the `nut` user: upsd drops to it."""
    for d in ("conf", "state", "sys", "log"):
        (tmp / d).mkdir()
    os.chmod(tmp, 0o755)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "NUT_CONFPATH": str(tmp / "conf"),
        "NUT_STATEPATH": str(tmp / "state"),
        "USB_SYSFS_ROOT": str(tmp / "sys"),
        "RECONCILE_CONFIG": str(tmp / "config.toml"),
        "RECONCILE_STATE": str(tmp / "agent"),
        "LOG_FILE": str(tmp / "log" / "hotplug.log"),
        "SCAN_INTERVAL": "1",
        "SETTLE_TIME": "1",
        # The sandbox polls (the tested fallback): this machine has no USB, so no uevent of
        # subsystem usb ever comes. The uevent tests turn it on with UEVENT_ENV.
        "UEVENTS": "0",
        "PYTHONPATH": str(REPO),
    }
    box = Sandbox(root=tmp, port=port, bus=SimBus(tmp / "sys"), env=env, container_caps=container_caps)
    box.write_config()
    try:
        yield box
    finally:
        box.cleanup()
