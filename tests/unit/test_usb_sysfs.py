from __future__ import annotations

import os
from pathlib import Path

from reconcile.observe.usb_sysfs import appeared, scan
from testbed.nut import SimBus


def test_missing_root_means_no_usb_not_an_error(tmp_path: Path) -> None:
    assert scan(tmp_path / "no-such-dir") == []


def test_scan_reads_devices_and_skips_hubs_interfaces_and_half_made_entries(tmp_path: Path) -> None:
    bus = SimBus(tmp_path)
    bus.add_root_hub(1)
    bus.plug("1-1.2", serial="SN1")
    bus.plug("2-1", "0764", "0501", serial=None, manufacturer="CPS", product="CP1500")
    (tmp_path / "1-1.2:1.0").mkdir()  # an interface
    half = tmp_path / "1-3"
    half.mkdir()
    (half / "idVendor").write_text("051d\n")  # no idProduct yet
    devices = scan(tmp_path)
    assert [(d.port, d.vidpid, d.serial) for d in devices] == [("1-1.2", "051d:0002", "SN1"), ("2-1", "0764:0501", "")]
    assert devices[0].busnum == 1 and devices[0].fingerprint == "051d:0002:serial=SN1"
    assert devices[1].fingerprint == "0764:0501:port=2-1"  # no serial: the port is the identity


def test_weird_strings_are_made_printable_and_flagged(tmp_path: Path) -> None:
    bus = SimBus(tmp_path)
    bus.plug("1-1", serial=b"AB\xff\x01C\nD", manufacturer="Caf\u00e9")
    (dev,) = scan(tmp_path)
    assert dev.serial == "ABCD" and dev.serial_raw_ok is False
    assert dev.manufacturer == "Caf"


def test_appeared_reports_the_entry_time(tmp_path: Path) -> None:
    bus = SimBus(tmp_path)
    bus.plug("1-1")
    os.utime(tmp_path / "1-1", (1000.0, 1000.0))
    assert appeared(tmp_path, ["1-1", "9-9"]) == {"1-1": 1000.0}
