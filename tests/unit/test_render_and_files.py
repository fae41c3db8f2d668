from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconcile.act.files import remove_leftovers, write_atomic
from reconcile.decide.desired import Problem, build, section
from reconcile.decide.render import mask_secrets, render_all, render_file
from reconcile.model import DeviceRule, NutConfig, Secrets, Ups, UsbDevice
from reconcile.nutsyntax import NutSyntaxError, parse_sections, tokenize
from reconcile.observe.actual import MANAGED_HEADER
from reconcile.userconfig import UserConfig

SECRETS = Secrets(None, "monpass123", "upsmonpass")


def build_one(usb: UsbDevice, statepath: str = "/run/nut") -> tuple[NutConfig, tuple[Problem, ...]]:
    """The desired state for one attached usbhid-ups UPS served as my-ups."""
    return build(
        [Ups(usb, "usbhid-ups", "udev-rules", True)],
        [],
        {usb.fingerprint: "my-ups"},
        "my-ups",
        UserConfig(),
        SECRETS,
        statepath,
        "root",
    )


def test_every_file_has_the_header_and_parses() -> None:
    usb = UsbDevice("1-1", "051d", "0002", 1, 2, 'A"B#\\[x]', "APC", "Back-UPS")
    files = render_all(build_one(usb)[0])
    assert set(files) == {"nut.conf", "ups.conf", "upsd.conf", "upsd.users", "upssched.conf", "upsmon.conf"}
    for name, text in files.items():
        assert text.startswith(MANAGED_HEADER + "\n"), name
        if name != "nut.conf":
            tokenize(text)
    _, secs = parse_sections(files["ups.conf"])
    assert [s.name for s in secs] == ["my-ups"]
    assert secs[0].get("serial") == 'A"B#\\\\\\[x\\]'
    assert "ALLOW_NO_DEVICE true" in files["upsd.conf"] and "MINSUPPLIES 1\n" in files["upsmon.conf"]
    users = {s.name: s for s in parse_sections(files["upsd.users"])[1]}
    assert users["monuser"].options[-1] == ("upsmon", "secondary")
    assert ("upsmon", "primary") in users["upsmon"].options
    # The primary's login may power-cycle the UPS after a forced shutdown, and do nothing else.
    assert ("instcmds", "shutdown.return") in users["upsmon"].options and ("actions", "SET") in users["upsmon"].options


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


def test_a_ups_with_a_too_long_socket_path_is_left_out_and_the_primary_still_served() -> None:
    usb = UsbDevice("1-1", "051d", "0002", 1, 2)
    config, problems = build_one(usb, statepath="/" + "x" * 90)
    assert [p.ups for p in problems] == ["my-ups"] and "NUT_STATEPATH" in problems[0].reason
    assert [s.name for s in config.sections] == ["my-ups"] and config.driverless == ("my-ups",)
    assert config.monitors == () and config.minsupplies == 0


def test_one_unservable_ups_does_not_stop_the_others() -> None:
    good, bad = UsbDevice("1-1", "051d", "0002", 1, 2, "A"), UsbDevice("1-2", "051d", "0002", 1, 3, "B")
    rule = DeviceRule(0, serial="B", options=(("pollinterval", "x" * 600),))
    upses = [Ups(good, "usbhid-ups", "udev-rules", True), Ups(bad, "usbhid-ups", "rule", True, rule)]
    names = {good.fingerprint: "my-ups", bad.fingerprint: "my-ups-2"}
    config, problems = build(upses, [], names, "my-ups", UserConfig(), SECRETS, "/run/nut", "root")
    assert [s.name for s in config.sections] == ["my-ups"]
    assert [p.ups for p in problems] == ["my-ups-2"] and "500" in problems[0].reason


def test_minsupplies_counts_the_upses_that_power_this_host() -> None:
    a, b = UsbDevice("1-1", "051d", "0002", 1, 2, "A"), UsbDevice("1-2", "051d", "0002", 1, 3, "B")
    other = DeviceRule(0, serial="B", powers_host=False)
    upses = [Ups(a, "usbhid-ups", "udev-rules", True), Ups(b, "usbhid-ups", "rule", True, other)]
    config, _ = build(
        upses,
        [],
        {a.fingerprint: "my-ups", b.fingerprint: "my-ups-2"},
        "my-ups",
        UserConfig(),
        SECRETS,
        "/run/nut",
        "root",
    )
    text = render_all(config)["upsmon.conf"]
    assert "MINSUPPLIES 1\n" in text
    assert 'MONITOR my-ups@127.0.0.1:3493 1 upsmon "upsmonpass" primary' in text
    assert 'MONITOR my-ups-2@127.0.0.1:3493 0 upsmon "upsmonpass" primary' in text


def test_the_admin_user_exists_only_when_asked_for() -> None:
    usb = UsbDevice("1-1", "051d", "0002", 1, 2)
    without = render_all(build_one(usb)[0])["upsd.users"]
    assert "[admin]" not in without and "instcmds = ALL" not in without
    with_admin = build(
        [], [], {}, "my-ups", UserConfig(), Secrets("adminpass1", "monpass123", "upsmonpass"), "/r", "root"
    )
    assert "[admin]" in render_all(with_admin[0])["upsd.users"]


def test_a_template_cannot_write_a_raw_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every {{ }} must pass through a NUT filter: a raw one is refused, whatever it holds.
    import reconcile.decide.render as render

    config = build_one(UsbDevice("1-1", "051d", "0002", 1, 2))[0]
    env = render._env()
    monkeypatch.setitem(env.globals, "evil", "x\nSHUTDOWNCMD /bin/rm")
    template = env.from_string("RUN_AS_USER {{ evil }}\n")
    with pytest.raises(NutSyntaxError, match="without a NUT filter") as err:
        template.render(config=config)
    assert "SHUTDOWNCMD" not in str(err.value)
    assert render_file("upsd.conf", config).count("LISTEN") == 1


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


def test_leftover_temp_files_of_a_crash_are_removed_and_nothing_else(tmp_path: Path) -> None:
    for name in (".secrets.json.a1b2c3d4.tmp", ".upsd.users.zz9_xy12.tmp", ".other.json.a1b2c3d4.tmp", "secrets.json"):
        (tmp_path / name).write_text("x")
    removed = remove_leftovers(tmp_path, ("secrets.json", "upsd.users"))
    assert sorted(p.name for p in removed) == [".secrets.json.a1b2c3d4.tmp", ".upsd.users.zz9_xy12.tmp"]
    assert sorted(os.listdir(tmp_path)) == [".other.json.a1b2c3d4.tmp", "secrets.json"]


def test_synology_compat_gives_monuser_dsms_fixed_password_and_only_then() -> None:
    secrets = Secrets(None, "monpass123", "upsmonpass")
    normal = render_all(build([], [], {}, "ups", UserConfig(), secrets, "/r", "root")[0])["upsd.users"]
    compat = UserConfig(synology_compat=True)
    synology = render_all(build([], [], {}, "ups", compat, secrets, "/r", "root")[0])["upsd.users"]
    assert '[monuser]\n  password = "monpass123"' in normal and '"secret"' not in normal
    assert '[monuser]\n  password = "secret"\n  # For network clients' in synology  # a secondary: no FSD
    assert '[upsmon]\n  password = "upsmonpass"' in synology  # our own upsmon keeps its own
