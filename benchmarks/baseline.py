"""The design this project replaces, run against the same real NUT for comparison.

What NUT containers commonly do about a UPS that comes and goes (when they do anything):
a watcher fingerprints the USB bus every 60 s (`lsusb` / `nut-scanner` output), and on a
change rewrites ups.conf for the UPSes found and stops and restarts all of NUT (drivers,
upsd, upsmon). Here it runs on the sandbox's simulated bus with dummy-ups standing in for
the UPSes, exactly as the agent's benchmarks do, at an interval short enough to measure
(its 60 s latency then follows from the formula in the report).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from reconcile.observe import processes
from testbed.nut import Sandbox

NUT_BIN = "/lib/nut"


class ReplacedDesign:
    def __init__(self, box: Sandbox, interval: float, data_by_serial: dict[str, Path]) -> None:
        self.box = box
        self.interval = interval
        self.data = data_by_serial
        self.restarts: list[float] = []  # seconds each stop-and-restart of all of NUT took
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._upsmon: subprocess.Popen[bytes] | None = None
        self._last = ""

    # --- NUT, all of it -----------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.box.env, "NUT_ALTPIDPATH": str(self.box.state)}

    def _run(self, *argv: str) -> None:
        subprocess.run(argv, env=self._env(), capture_output=True, timeout=60, check=False)

    def _files(self, serials: list[str]) -> None:
        """Its config: one section per UPS found, named in bus order (no placeholder: with
        no UPS, clients get "Unknown UPS")."""
        names = ["my-ups" if i == 0 else f"my-ups-{i + 1}" for i in range(len(serials))]
        conf = self.box.conf
        sections = "".join(
            f'[{name}]\n  driver = dummy-ups\n  port = "{self.data[serial]}"\n'
            for name, serial in zip(names, serials, strict=True)
        )
        monitors = "".join(
            f"MONITOR {name}@127.0.0.1:{self.box.port} 1 upsmon baseline-pass primary\n" for name in names
        )
        files = {
            "ups.conf": "maxretry = 1\n" + sections,
            "upsd.conf": f"LISTEN 127.0.0.1 {self.box.port}\nALLOW_NO_DEVICE true\n",
            "upsd.users": "[upsmon]\n  password = baseline-pass\n  upsmon primary\n",
            "upsmon.conf": "RUN_AS_USER root\nMINSUPPLIES 0\nSHUTDOWNCMD /bin/true\n" + monitors,
        }
        for name, text in files.items():
            (conf / name).write_text(text)
            os.chmod(conf / name, 0o640)

    def _stop_all(self) -> None:
        if self._upsmon is not None:
            self._upsmon.terminate()
            self._upsmon.wait(10)
            self._upsmon = None
        self._run("upsdrvctl", "-u", "root", "stop")
        pid = processes.read_pid(self.box.state / "upsd.pid")
        if pid and processes.proc_id(pid, "upsd"):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while processes.proc_id(pid, "upsd") and time.monotonic() < deadline:
                time.sleep(0.02)

    def _start_all(self) -> None:
        self._run("upsdrvctl", "-u", "root", "start")
        self._run(f"{NUT_BIN}/upsd", "-u", "root")
        self._upsmon = subprocess.Popen(
            [f"{NUT_BIN}/upsmon", "-p", "-F"], env=self._env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    # --- the watcher ------------------------------------------------------------------

    def _fingerprint(self) -> tuple[str, list[str]]:
        """What `lsusb` would show: each device and its address; and the UPSes' serials."""
        root = self.box.bus.root
        entries, serials = [], []
        for name in sorted(os.listdir(root)):
            folder = root / name
            if not (folder / "idVendor").exists():
                continue
            serial = (folder / "serial").read_text().strip() if (folder / "serial").exists() else ""
            entries.append(f"{name} {(folder / 'devnum').read_text().strip()} {serial}")
            if serial in self.data:
                serials.append(serial)
        return hashlib.sha256("\n".join(entries).encode()).hexdigest(), serials

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            fingerprint, serials = self._fingerprint()
            if fingerprint != self._last:
                self._last = fingerprint
                start = time.monotonic()
                self._stop_all()
                self._files(serials)
                self._start_all()
                self.restarts.append(time.monotonic() - start)

    def start(self) -> None:
        self._last, serials = self._fingerprint()
        self._files(serials)
        self._start_all()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self._stop_all()
