from __future__ import annotations

from reconcile.observe import driver_table, nut_scanner
from tests.helpers import FIXTURES

RULES = FIXTURES / "nut-2.8.0-62-nut-usbups.rules"


def test_nut_udev_rules_give_the_driver_per_vidpid() -> None:
    table = driver_table.load(str(RULES))
    assert len(table.by_vidpid) == 120  # as seen in Debian 12's NUT 2.8.0
    assert table.lookup("051d:0002") == "usbhid-ups"  # APC Back-UPS
    assert table.lookup("03f0:1f01") == "bcmxcp_usb"  # HP T500
    assert table.lookup("0001:0000") == "nutdrv_qx"
    assert table.lookup("1d6b:0002") is None  # a root hub is not a UPS
    assert {"usbhid-ups", "nutdrv_qx", "tripplite_usb"} <= table.usb_drivers
    assert table.is_usb_driver("blazer_usb") and not table.is_usb_driver("dummy-ups")


def test_ecoflow_line_from_nut_2_8_4_is_understood() -> None:
    text = '#  EcoFlow  - usbhid-ups\nATTR{idVendor}=="3746", ATTR{idProduct}=="ffff", MODE="664", GROUP="nut"\n'
    assert driver_table.parse(text).lookup("3746:ffff") == "usbhid-ups"


def test_no_rules_file_means_an_empty_table() -> None:
    assert driver_table.load(None).by_vidpid == {}


def test_nut_scanner_output_is_parsed_and_validated() -> None:
    out = (
        'USB:driver="usbhid-ups",port="auto",vendorid="051D",productid="0002",product="Back-UPS",bus="001"\n'
        'USB:driver="evil; rm -rf /",port="auto",vendorid="0001",productid="0000"\n'
        'USB:driver="nutdrv_qx",port="auto",vendorid="XYZ1",productid="0000"\n'
        "Scanning USB bus.\n"
    )
    assert nut_scanner.parse(out) == {"051d:0002": "usbhid-ups"}
