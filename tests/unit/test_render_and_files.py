from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconcile.act.files import write_atomic
from reconcile.decide.desired import DesiredError, Secrets, build, section
from reconcile.decide.render import mask_secrets, render_all
from reconcile.model import DeviceRule, NutConfig, Ups, UsbDevice
from reconcile.nutsyntax import parse_sections, tokenize
from reconcile.observe.actual import MANAGED_HEADER
from reconcile.userconfig import UserConfig

SECRETS = Secrets("adminpass1", "monpass123", "upsmonpass")


def build_one(usb: UsbDevice, statepath: str = "/run/nut") -> NutConfig:
    """The desired state for one attached usbhid-ups UPS served as my-ups."""
    return build(
        [Ups(usb, "usbhid-ups", "udev-rules", True)],
        {usb.fingerprint: "my-ups"},
        "my-ups",
        UserConfig(),
        SECRETS,
        statepath,
        "root",
    )


def test_every_file_has_the_header_and_parses() -> None:
    usb = UsbDevice("1-1", "051d", "0002", 1, 2, 'A"B#\\[x]', "APC", "Back-UPS")
    files = render_all(build_one(usb))
    assert set(files) == {"nut.conf", "ups.conf", "upsd.conf", "upsd.users", "upsmon.conf"}
    for name, text in files.items():
        assert text.startswith(MANAGED_HEADER + "\n"), name
        if name != "nut.conf":
            tokenize(text)
    _, secs = parse_sections(files["ups.conf"])
    assert [s.name for s in secs] == ["my-ups"]
    assert secs[0].get("serial") == 'A"B#\\\\\\[x\\]'
    assert "ALLOW_NO_DEVICE true" in files["upsd.conf"] and "MINSUPPLIES 1" in files["upsmon.conf"]
    users = {s.name: s for s in parse_sections(files["upsd.users"])[1]}
    assert users["monuser"].options[-1] == ("upsmon", "secondary")
    assert users["upsmon"].options[-1] == ("upsmon", "primary")


def test_user_options_flags_and_overrides() -> None:
    rule = DeviceRule(
        0,
        options=(("pollinterval", "5"), ("allow_duplicates", True), ("vendorid", "051D"), ("ignorelb", False)),
        desc="Rack UPS",
    )
    s = section(Ups(UsbDevice("1-1", "051d", "0002", 1, 2), "usbhid-ups", "rule", True, rule), "my-ups")
    assert dict(s.options) == {
        "port": "auto",
        "productid": "0002",
        "pollinterval": "5",
        "allow_duplicates": None,
        "vendorid": "051D",
        "desc": "Rack UPS",
    }


def test_unprintable_serial_is_not_used_as_a_match() -> None:
    usb = UsbDevice("1-1", "051d", "0002", 1, 2, serial="ABC", serial_raw_ok=False)
    assert "serial" not in dict(section(Ups(usb, "usbhid-ups", "udev-rules", True), "my-ups").options)


def test_too_long_socket_path_is_an_error() -> None:
    usb = UsbDevice("1-1", "051d", "0002", 1, 2)
    with pytest.raises(DesiredError, match="NUT_STATEPATH"):
        build_one(usb, statepath="/" + "x" * 100)


def test_mask_secrets_hides_passwords_everywhere() -> None:
    text = 'x\n  password = "s3cretpass"\nMONITOR a@h:1 1 upsmon "s3cretpass" primary\nplain s3cretpass\n'
    masked = mask_secrets(text, ("s3cretpass",))
    assert "s3cretpass" not in masked and masked.count("********") == 3


def test_atomic_write_sets_mode_and_a_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ups.conf"
    write_atomic(target, "old\n")
    assert target.read_text() == "old\n" and oct(target.stat().st_mode & 0o777) == "0o640"

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["ups.conf"]  # no temp file left behind
