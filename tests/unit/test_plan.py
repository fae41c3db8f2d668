"""The planner: pure, and in NUT's safe order."""

from __future__ import annotations

import dataclasses

from reconcile.decide.desired import Secrets, build
from reconcile.decide.plan import Desired, make_plan
from reconcile.decide.render import render_all, render_upsmon_with
from reconcile.model import Action, ActualState, DriverProc, FileState, Plan, Ups, UsbDevice, WriteFile
from reconcile.userconfig import UserConfig

SECRETS = Secrets("adminpass1", "monpass123", "upsmonpass")


def ups(port: str = "1-1", serial: str = "S1", devnum: int = 2, vid: str = "051d") -> Ups:
    return Ups(UsbDevice(port, vid, "0002", 1, devnum, serial), "usbhid-ups", "udev-rules", True)


def desired(*upses: Ups, names: dict[str, str] | None = None, upsmon: bool = True) -> Desired:
    names = names or {u.usb.fingerprint: ("my-ups" if i == 0 else f"my-ups-{i + 1}") for i, u in enumerate(upses)}
    user = dataclasses.replace(UserConfig(), upsmon_enabled=upsmon)
    config = build(list(upses), names, "my-ups", user, SECRETS, "/run/nut", "root")
    return Desired(
        render_all(config),
        config.upsmon_enabled,
        frozenset(config.placeholders),
        lambda m: render_upsmon_with(config, m),
    )


def actual_from(
    d: Desired, drivers: dict[str, str] | None = None, upsd: int | None = 10, upsmon: int | None = 11
) -> ActualState:
    files = {n: FileState(n, c, True, True) for n, c in d.files.items()}
    procs = {u: DriverProc(u, drv, 100 + i) for i, (u, drv) in enumerate((drivers or {}).items())}
    return ActualState(files, procs, upsd, upsmon)


def kinds(plan: Plan) -> list[str]:
    return [f"write {s.name}" if isinstance(s, WriteFile) else f"{s.kind} {s.ups or ''}".strip() for s in plan.steps]


def test_cold_start_writes_everything_then_starts_upsd_then_upsmon() -> None:
    d = desired()
    empty = ActualState({n: FileState(n, None, True, True) for n in d.files}, {}, None, None)
    assert kinds(make_plan(d, empty)) == [
        "write nut.conf",
        "write ups.conf",
        "write upsd.conf",
        "write upsd.users",
        "start_upsd",
        "write upsmon.conf",
        "start_upsmon",
    ]


def test_plug_order_section_driver_reload_monitor_reload() -> None:
    before = desired()
    plan = make_plan(desired(ups()), actual_from(before))
    assert kinds(plan) == ["write ups.conf", "start_driver my-ups", "reload_upsd", "write upsmon.conf", "reload_upsmon"]


def test_unplug_order_monitor_out_first_then_driver_then_section() -> None:
    before = desired(ups())
    plan = make_plan(desired(), actual_from(before, {"my-ups": "usbhid-ups"}))
    assert kinds(plan) == ["write upsmon.conf", "reload_upsmon", "stop_driver my-ups", "write ups.conf", "reload_upsd"]
    assert "MONITOR" not in plan.writes[0].content


def test_second_ups_unplugged_while_another_is_plugged_uses_an_intermediate_upsmon_conf() -> None:
    a, b, c = ups("1-1", "A"), ups("1-2", "B"), ups("1-3", "C")
    before = desired(a, b)
    after = desired(a, c, names={a.usb.fingerprint: "my-ups", c.usb.fingerprint: "my-ups-3"})
    plan = make_plan(after, actual_from(before, {"my-ups": "usbhid-ups", "my-ups-2": "usbhid-ups"}))
    assert kinds(plan) == [
        "write upsmon.conf",
        "reload_upsmon",
        "stop_driver my-ups-2",
        "write ups.conf",
        "start_driver my-ups-3",
        "reload_upsd",
        "write upsmon.conf",
        "reload_upsmon",
    ]
    middle, final = plan.writes[0].content, plan.writes[2].content
    assert "MONITOR my-ups@" in middle and "my-ups-2@" not in middle and "my-ups-3@" not in middle
    assert "MONITOR my-ups-3@" in final


def test_replug_restarts_only_that_driver() -> None:
    a, b = ups("1-1", "A"), ups("1-2", "B")
    before = desired(a, b)
    replugged = desired(a, ups("1-4", "B", devnum=9))
    plan = make_plan(replugged, actual_from(before, {"my-ups": "usbhid-ups", "my-ups-2": "usbhid-ups"}))
    assert kinds(plan) == ["stop_driver my-ups-2", "write ups.conf", "start_driver my-ups-2", "reload_upsd"]


def test_in_sync_is_empty_and_dead_processes_come_back() -> None:
    d = desired(ups())
    assert make_plan(d, actual_from(d, {"my-ups": "usbhid-ups"})).in_sync
    assert kinds(make_plan(d, actual_from(d, {}, upsd=None, upsmon=None))) == [
        "start_driver my-ups",
        "start_upsd",
        "start_upsmon",
    ]
    assert kinds(make_plan(d, actual_from(d, {"my-ups": "usbhid-ups"}), restart=frozenset({"my-ups"}))) == [
        "stop_driver my-ups",
        "start_driver my-ups",
    ]


def test_placeholder_gets_no_driver_and_no_monitor() -> None:
    d = desired()
    assert "[my-ups]" in d.files["ups.conf"] and "MONITOR" not in d.files["upsmon.conf"]
    assert make_plan(d, actual_from(d)).in_sync


def test_unmanaged_and_read_only_files_are_skipped_but_the_rest_converges() -> None:
    before, after = desired(), desired(ups())
    act = actual_from(before)
    files = dict(act.files)
    files["upsd.users"] = FileState("upsd.users", "[me]\n  password = x\n", managed=False, writable=True)
    files["upsmon.conf"] = dataclasses.replace(files["upsmon.conf"], writable=False)
    plan = make_plan(after, dataclasses.replace(act, files=files))
    assert {s.name for s in plan.skipped} == {"upsd.users", "upsmon.conf"}
    assert kinds(plan) == ["write ups.conf", "start_driver my-ups", "reload_upsd"]


def test_user_owned_ups_conf_drives_which_drivers_run() -> None:
    d = desired()
    act = actual_from(d)
    files = dict(act.files)
    files["ups.conf"] = FileState("ups.conf", "[mine]\n  driver = dummy-ups\n  port = x.dev\n", False, True)
    plan = make_plan(d, dataclasses.replace(act, files=files))
    assert [a for a in plan.actions if a.kind == "start_driver"] == [
        Action("start_driver", "not running", ups="mine", driver="dummy-ups")
    ]


def test_upsd_conf_change_restarts_upsd_and_disabled_upsmon_is_stopped() -> None:
    d = desired(ups(), upsmon=False)
    act = actual_from(desired(ups()), {"my-ups": "usbhid-ups"})
    files = dict(act.files)
    files["upsd.conf"] = dataclasses.replace(files["upsd.conf"], content=f"{files['upsd.conf'].content}# old\n")
    plan = make_plan(d, dataclasses.replace(act, files=files))
    assert kinds(plan)[-3:] == ["stop_upsd", "start_upsd", "stop_upsmon"]
