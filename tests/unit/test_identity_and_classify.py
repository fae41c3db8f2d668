from __future__ import annotations

import pytest

from reconcile.decide.classify import classify, twin_warnings
from reconcile.decide.identity import NameBook, assign
from reconcile.model import DeviceRule, Ups, UsbDevice
from reconcile.observe.driver_table import DriverTable

TABLE = DriverTable({"051d:0002": "usbhid-ups", "0764:0501": "usbhid-ups", "0665:5161": "nutdrv_qx"}, None)


def dev(port: str = "1-1", vid: str = "051d", pid: str = "0002", serial: str = "S1", devnum: int = 2) -> UsbDevice:
    return UsbDevice(
        port=port, vendorid=vid, productid=pid, busnum=int(port.split("-")[0]), devnum=devnum, serial=serial
    )


def ups(d: UsbDevice, rule: DeviceRule | None = None) -> Ups:
    return Ups(usb=d, driver="usbhid-ups", driver_from="udev-rules", usb_driver=True, rule=rule)


def test_classify_precedence_rule_then_scanner_then_table() -> None:
    devices = [dev("1-1"), dev("1-2", "0665", "5161", "Q"), dev("1-3", "0764", "0501", "C"), dev("1-4", "1234", "5678")]
    rules = [DeviceRule(0, vendorid="0764", driver="dummy-ups")]
    found = classify(devices, TABLE, {"0665:5161": "blazer_usb"}, rules)
    assert [(u.usb.port, u.driver, u.driver_from, u.usb_driver) for u in found] == [
        ("1-1", "usbhid-ups", "udev-rules", True),
        ("1-2", "blazer_usb", "nut-scanner", True),
        ("1-3", "dummy-ups", "rule", False),
    ]  # 1-4: nobody knows it, so it is not a UPS


def test_ignore_rule_hides_a_device() -> None:
    assert classify([dev()], TABLE, {}, [DeviceRule(0, vendorid="051d", ignore=True)]) == []


def test_single_ups_is_primary_and_a_swap_takes_over() -> None:
    names, book = assign([ups(dev())], NameBook(), "my-ups")
    assert names == {"051d:0002:serial=S1": "my-ups"}
    other = dev("1-1", "0764", "0501", "C9")
    names, book = assign([ups(other)], book, "my-ups")
    assert names == {other.fingerprint: "my-ups"} and book.primary == other.fingerprint


def test_holder_keeps_primary_and_second_gets_a_persisted_name() -> None:
    a, b = dev("1-2", serial="A"), dev("1-1", serial="B")
    names, book = assign([ups(a)], NameBook(), "my-ups")
    names, book = assign([ups(a), ups(b)], book, "my-ups")
    # b sits on a lower port, but a already holds my-ups: dashboards do not jump
    assert names == {a.fingerprint: "my-ups", b.fingerprint: "my-ups-2"}
    # restart (same book), b replugged on another port: same names
    names2, book2 = assign([ups(dev("2-7", serial="B")), ups(a)], book, "my-ups")
    assert names2 == {a.fingerprint: "my-ups", b.fingerprint: "my-ups-2"} and book2 == book


def test_first_start_with_several_the_lowest_port_is_primary() -> None:
    a, b, c = dev("2-1", serial="A"), dev("1-1.2", serial="B"), dev("1-1", serial="C")
    names, _ = assign([ups(a), ups(b), ups(c)], NameBook(), "my-ups")
    assert names[c.fingerprint] == "my-ups"
    assert names[b.fingerprint] == "my-ups-2" and names[a.fingerprint] == "my-ups-3"


def test_a_name_stays_reserved_while_its_device_is_away() -> None:
    a, b, c = dev(serial="A"), dev("1-2", serial="B"), dev("1-3", serial="C")
    _, book = assign([ups(a), ups(b)], NameBook(), "my-ups")
    names, book = assign([ups(a), ups(c)], book, "my-ups")  # b away
    assert names[c.fingerprint] == "my-ups-3"
    names, _ = assign([ups(a), ups(b), ups(c)], book, "my-ups")
    assert names[b.fingerprint] == "my-ups-2"


def test_pinned_names_win() -> None:
    pin_primary = DeviceRule(0, serial="B", name="my-ups")
    pin_other = DeviceRule(1, serial="A", name="rack")
    a, b = dev(serial="A"), dev("1-2", serial="B")
    names, book = assign([ups(a, pin_other), ups(b, pin_primary)], NameBook(primary=a.fingerprint), "my-ups")
    assert names == {a.fingerprint: "rack", b.fingerprint: "my-ups"}
    assert book.primary == b.fingerprint and book.names == {}


def test_identical_models_without_serial_are_told_apart_by_port() -> None:
    a, b = dev("1-1", serial=""), dev("1-2", serial="")
    names, _ = assign([ups(a), ups(b)], NameBook(), "my-ups")
    assert sorted(names.values()) == ["my-ups", "my-ups-2"]


def test_units_with_the_same_serial_get_one_name_each_and_a_warning() -> None:
    # Cheap UPSes report 000000000000: two of them must not share [my-ups-2].
    table = DriverTable({"051d:0002": "usbhid-ups"}, None)
    a, b, c = dev("1-1", serial="000000000000"), dev("1-2", serial="000000000000"), dev("1-3", serial="OTHER")
    upses = classify([a, b, c], table, {}, [])
    assert [u.twin for u in upses] == [True, True, False]
    names, book = assign(upses, NameBook(), "my-ups")
    assert sorted(names.values()) == ["my-ups", "my-ups-2", "my-ups-3"]
    assert len({u.key for u in upses}) == 3
    (warning,) = twin_warnings(upses)
    assert "1-1, 1-2" in warning and "names may move" in warning
    # The same units after a restart keep their names; a swap of ports swaps them.
    again, _ = assign(classify([a, b, c], table, {}, []), book, "my-ups")
    assert again == names


def test_book_round_trips_through_json() -> None:
    book = NameBook("x", {"y": "my-ups-2"})
    assert NameBook.from_json(book.to_json()) == book


@pytest.mark.parametrize(
    "data",
    [
        {"primary": None, "names": {"x": "a\nSHUTDOWNCMD /bin/sh"}},
        {"primary": None, "names": {"x": "ok-name", "y": "ok-name"}},
        {"primary": None, "names": {"x": "default"}},
        {"primary": 5, "names": {}},
        {"primary": None, "names": {"x\n": "ok"}},
        {"primary": None, "names": [], "extra": 1},
        ["not", "an", "object"],
    ],
)
def test_a_hostile_book_is_refused(data: object) -> None:
    with pytest.raises(ValueError):
        NameBook.from_json(data)


def test_a_book_name_equal_to_the_primary_name_is_not_given_twice() -> None:
    a, b = dev("1-1", serial="A"), dev("1-2", serial="B")
    names, _ = assign([ups(a), ups(b)], NameBook(a.fingerprint, {b.fingerprint: "my-ups"}), "my-ups")
    assert sorted(names.values()) == ["my-ups", "my-ups-2"]


# --- names age out ----------------------------------------------------------------------

DAY = 20_000


def test_a_fingerprint_not_seen_for_longer_than_the_forget_time_loses_its_name() -> None:
    a, gone, recent = dev("1-1", serial="A"), "051d:0002:serial=GONE", "051d:0002:serial=RECENT"
    book = NameBook(None, {gone: "my-ups-2", recent: "my-ups-3"}, {gone: DAY - 31, recent: DAY - 30})
    names, after = assign([ups(a), ups(dev("1-2", serial="NEW"))], book, "my-ups", DAY, 30)
    assert names["051d:0002:serial=NEW"] == "my-ups-2"  # the freed name
    assert gone not in after.names and gone not in after.seen
    assert after.seen == {a.fingerprint: DAY, "051d:0002:serial=NEW": DAY, recent: DAY - 30}


def test_a_unit_a_rule_names_by_serial_is_never_forgotten() -> None:
    pinned = "051d:0002:serial=P1"
    book = NameBook(None, {pinned: "my-ups-2"}, {pinned: DAY - 1000})
    rule = DeviceRule(0, vendorid="051d", serial="P1", driver="dummy-ups")
    _, after = assign([ups(dev())], book, "my-ups", DAY, 30, (rule,))
    assert after.names[pinned] == "my-ups-2"
    other = DeviceRule(0, vendorid="0764", serial="P1")  # another VID: not this unit
    _, after = assign([ups(dev())], book, "my-ups", DAY, 30, (other,))
    assert pinned not in after.names


def test_an_earlier_versions_book_starts_its_clock_and_zero_never_forgets() -> None:
    old = NameBook.from_json({"primary": None, "names": {"051d:0002:serial=X": "my-ups-2"}})
    _, after = assign([ups(dev())], old, "my-ups", DAY, 30)
    assert after.seen["051d:0002:serial=X"] == DAY  # no day yet: counted from now
    _, kept = assign([ups(dev())], NameBook(None, {"k": "my-ups-2"}, {"k": 0}), "my-ups", DAY, 0)
    assert kept.names == {"k": "my-ups-2"}


def test_an_unchanged_day_leaves_the_book_equal_so_nothing_is_written() -> None:
    _, first = assign([ups(dev())], NameBook(), "my-ups", DAY, 30)
    _, second = assign([ups(dev())], first, "my-ups", DAY, 30)
    assert second == first
    assert NameBook.from_json(first.to_json()) == first
