"""The planner: pure, level-triggered, in NUT's safe order, with the needs between steps."""

from __future__ import annotations

import dataclasses

from reconcile.decide.desired import build
from reconcile.decide.loaded import UPSD_FILES, of_files, of_section, section_blocks
from reconcile.decide.plan import Desired, drop, make_plan
from reconcile.decide.render import render_all, render_upsmon_with
from reconcile.model import (
    ActualState,
    Daemon,
    DriverProc,
    FileState,
    Plan,
    ProcId,
    Secrets,
    Served,
    StartDriver,
    Stranger,
    Ups,
    UsbDevice,
    WriteFile,
)
from reconcile.userconfig import UserConfig

SECRETS = Secrets(None, "monpass123", "upsmonpass")
UPSD, UPSMON = ProcId(10, 1000), ProcId(11, 1001)


def ups(port: str = "1-1", serial: str = "S1", devnum: int = 2, vid: str = "051d") -> Ups:
    return Ups(UsbDevice(port, vid, "0002", 1, devnum, serial), "usbhid-ups", "udev-rules", True)


def desired(
    *upses: Ups, names: dict[str, str] | None = None, upsmon: bool = True, held: tuple[Ups, ...] = ()
) -> Desired:
    every = (*upses, *held)
    names = names or {u.key: ("my-ups" if i == 0 else f"my-ups-{i + 1}") for i, u in enumerate(every)}
    user = dataclasses.replace(UserConfig(), upsmon_enabled=upsmon)
    config, problems = build(list(upses), list(held), names, "my-ups", user, SECRETS, "/run/nut", "root")
    assert problems == ()
    return Desired(
        files=render_all(config),
        upsmon_enabled=config.upsmon_enabled,
        held=frozenset(names[u.key] for u in held),
        monitors=config.monitors,
        upsmon_with=lambda m: render_upsmon_with(config, m),
    )


def running(
    d: Desired,
    drivers: dict[str, str] | None = None,
    upsd: bool = True,
    upsmon: bool = True,
    served: set[str] | None = None,
) -> ActualState:
    """What is there once `d` was applied completely: its files, each process having
    loaded them, upsd serving exactly its sections (unless `served` says otherwise)."""
    files = {n: FileState(n, c, True, True) for n, c in d.files.items()}
    blocks = section_blocks(d.files["ups.conf"])
    procs = {
        u: DriverProc(u, drv, ProcId(100 + i, 2000 + i), of_section(blocks.get(u)))
        for i, (u, drv) in enumerate((drivers or {}).items())
    }
    contents: dict[str, str | None] = dict(d.files)
    sections = set(blocks) if served is None else served
    return ActualState(
        files=files,
        drivers=procs,
        upsd=Daemon(UPSD, of_files(contents, UPSD_FILES)) if upsd else None,
        upsmon=Daemon(UPSMON, of_files(contents, ("upsmon.conf",))) if upsmon else None,
        served={name: Served("ok", "OL") for name in sections} if upsd else None,
    )


def kinds(plan: Plan) -> list[str]:
    out = []
    for s in plan.steps:
        if isinstance(s, WriteFile):
            out.append(f"write {s.name}")
        else:
            out.append(f"{s.kind} {getattr(s, 'ups', '')}".strip())
    return out


def needs(plan: Plan) -> list[list[int]]:
    return [sorted(s.needs) for s in plan.steps]


def test_cold_start_writes_everything_then_starts_upsd_then_upsmon() -> None:
    d = desired()
    empty = ActualState({n: FileState(n, None, True, True) for n in d.files}, {}, None, None)
    plan = make_plan(d, empty)
    assert kinds(plan) == [
        "write nut.conf",
        "write ups.conf",
        "write upsd.conf",
        "write upsd.users",
        "write upssched.conf",
        "start_upsd",
        "write upsmon.conf",
        "start_upsmon",
    ]
    assert needs(plan) == [[], [], [], [], [], [0, 1, 2, 3], [5], [5, 6]]


def test_plug_order_section_driver_reload_monitor_reload() -> None:
    plan = make_plan(desired(ups()), running(desired()))
    assert kinds(plan) == ["write ups.conf", "start_driver my-ups", "reload_upsd", "write upsmon.conf", "reload_upsmon"]
    assert needs(plan) == [[], [0], [0], [2], [3]]


def test_unplug_order_monitor_out_first_then_driver_then_section() -> None:
    before = desired(ups())
    plan = make_plan(desired(), running(before, {"my-ups": "usbhid-ups"}))
    assert kinds(plan) == ["write upsmon.conf", "reload_upsmon", "stop_driver my-ups", "write ups.conf", "reload_upsd"]
    # Each step needs the one before: a failed upsmon.conf write stops the whole chain.
    assert needs(plan) == [[], [0], [1], [1, 2], [3]]
    assert "MONITOR" not in plan.writes[0].content and "MINSUPPLIES 0\n" in plan.writes[0].content


def test_second_ups_unplugged_while_another_is_plugged_uses_an_intermediate_upsmon_conf() -> None:
    a, b, c = ups("1-1", "A"), ups("1-2", "B"), ups("1-3", "C")
    before = desired(a, b)
    after = desired(a, c, names={a.key: "my-ups", c.key: "my-ups-3"})
    plan = make_plan(after, running(before, {"my-ups": "usbhid-ups", "my-ups-2": "usbhid-ups"}))
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
    assert "MINSUPPLIES 1\n" in middle and "MINSUPPLIES 2\n" in final
    assert "MONITOR my-ups-3@" in final


def test_replug_restarts_only_that_driver() -> None:
    a, b = ups("1-1", "A"), ups("1-2", "B")
    before = desired(a, b)
    replugged = desired(a, ups("1-4", "B", devnum=9))
    plan = make_plan(replugged, running(before, {"my-ups": "usbhid-ups", "my-ups-2": "usbhid-ups"}))
    assert kinds(plan) == ["stop_driver my-ups-2", "write ups.conf", "start_driver my-ups-2", "reload_upsd"]
    assert needs(plan) == [[], [0], [0, 1], [1]]


def test_in_sync_is_empty_and_dead_processes_come_back() -> None:
    d = desired(ups())
    assert make_plan(d, running(d, {"my-ups": "usbhid-ups"})).in_sync
    assert kinds(make_plan(d, running(d, {}, upsd=False, upsmon=False))) == [
        "start_driver my-ups",
        "start_upsd",
        "start_upsmon",
    ]
    assert kinds(make_plan(d, running(d, {"my-ups": "usbhid-ups"}), restart=frozenset({"my-ups"}))) == [
        "stop_driver my-ups",
        "start_driver my-ups",
    ]


def test_killed_after_writing_ups_conf_a_restart_starts_the_driver_and_reloads_upsd() -> None:
    # The crash: ups.conf already holds the new section, nothing else happened.
    before, after = desired(ups("1-1", "A")), desired(ups("1-1", "A"), ups("1-2", "B"))
    act = running(before, {"my-ups": "usbhid-ups"})
    files = dict(act.files)
    files["ups.conf"] = FileState("ups.conf", after.files["ups.conf"], True, True)
    plan = make_plan(after, dataclasses.replace(act, files=files))
    assert kinds(plan) == ["start_driver my-ups-2", "reload_upsd", "write upsmon.conf", "reload_upsmon"]
    assert plan.steps[1].reason == "upsd does not serve exactly the sections of ups.conf"


def test_a_driver_started_for_an_older_section_is_restarted() -> None:
    before, after = desired(ups("1-1", "A", devnum=2)), desired(ups("1-1", "A", devnum=7))
    act = running(before, {"my-ups": "usbhid-ups"})
    files = dict(act.files)
    files["ups.conf"] = FileState("ups.conf", after.files["ups.conf"], True, True)  # written, then killed
    served = dataclasses.replace(act, files=files)
    plan = make_plan(after, served)
    assert kinds(plan) == ["stop_driver my-ups", "start_driver my-ups", "reload_upsd"]
    assert plan.steps[0].reason.startswith("section changed")


def test_upsmon_that_never_loaded_its_file_is_reloaded() -> None:
    d = desired(ups())
    act = running(d, {"my-ups": "usbhid-ups"})
    stale = dataclasses.replace(act, upsmon=Daemon(UPSMON, (("upsmon.conf", "0" * 32),)))
    assert kinds(make_plan(d, stale)) == ["reload_upsmon"]


def test_an_adopted_process_with_unknown_config_is_reloaded_not_left_alone() -> None:
    d = desired(ups())
    act = running(d, {"my-ups": "usbhid-ups"})
    unknown = dataclasses.replace(
        act, upsd=Daemon(UPSD, (("upsd.conf", of_files(dict(d.files), ("upsd.conf",))[0][1]),))
    )
    assert kinds(make_plan(d, unknown)) == ["reload_upsd"]


def test_placeholder_gets_no_driver_and_no_monitor() -> None:
    d = desired()
    assert "[my-ups]" in d.files["ups.conf"] and "MONITOR" not in d.files["upsmon.conf"]
    assert "MINSUPPLIES 0\n" in d.files["upsmon.conf"]
    assert make_plan(d, running(d)).in_sync


def test_a_ups_held_after_vanishing_on_battery_keeps_section_and_monitor_but_loses_its_driver() -> None:
    a = ups()
    before, after = desired(a), desired(held=(a,))
    # The same section, marked as served without a driver; upsmon.conf unchanged: still
    # watched, MINSUPPLIES 1, so upsmon's DEADTIME rule can act.
    assert after.files["upsmon.conf"] == before.files["upsmon.conf"]
    assert "# nut-reconcile: no driver (vanished while on battery" in after.files["ups.conf"]
    plan = make_plan(after, running(before, {"my-ups": "usbhid-ups"}))
    assert kinds(plan) == ["stop_driver my-ups", "write ups.conf", "reload_upsd"]
    assert needs(plan)[0] == [] and "stays watched" in plan.steps[0].reason


def test_a_stale_copy_of_our_file_that_cannot_be_written_keeps_its_placeholder_driverless() -> None:
    # ups.conf is read-only (or the disk full) and still the placeholder version: its
    # placeholder must not get a driver started.
    before, after = desired(), desired(ups())
    act = running(before)
    files = dict(act.files)
    files["ups.conf"] = dataclasses.replace(files["ups.conf"], writable=False)
    plan = make_plan(after, dataclasses.replace(act, files=files))
    assert not [s for s in plan.steps if isinstance(s, StartDriver)]


def test_unmanaged_and_read_only_files_are_skipped_but_the_rest_converges() -> None:
    before, after = desired(), desired(ups())
    act = running(before)
    files = dict(act.files)
    files["upsd.users"] = FileState("upsd.users", "[me]\n  password = x\n", managed=False, writable=True)
    files["upsmon.conf"] = dataclasses.replace(files["upsmon.conf"], writable=False)
    act = dataclasses.replace(
        act,
        files=files,
        upsd=Daemon(UPSD, of_files({**before.files, "upsd.users": files["upsd.users"].content}, UPSD_FILES)),
    )
    plan = make_plan(after, act)
    assert {s.name for s in plan.skipped} == {"upsd.users", "upsmon.conf"}
    assert kinds(plan) == ["write ups.conf", "start_driver my-ups", "reload_upsd"]


def test_user_owned_ups_conf_drives_which_drivers_run() -> None:
    d = desired()
    act = running(d)
    files = dict(act.files)
    files["ups.conf"] = FileState("ups.conf", "[mine]\n  driver = dummy-ups\n  port = x.dev\n", False, True)
    plan = make_plan(d, dataclasses.replace(act, files=files))
    starts = [s for s in plan.steps if isinstance(s, StartDriver)]
    assert [(s.ups, s.driver, s.reason) for s in starts] == [("mine", "dummy-ups", "not running")]


def test_upsd_conf_change_restarts_upsd_and_disabled_upsmon_is_stopped() -> None:
    d = desired(ups(), upsmon=False)
    act = running(desired(ups()), {"my-ups": "usbhid-ups"})
    files = dict(act.files)
    old = f"{files['upsd.conf'].content}# old\n"
    files["upsd.conf"] = dataclasses.replace(files["upsd.conf"], content=old)
    act = dataclasses.replace(act, files=files, upsd=Daemon(UPSD, of_files({**d.files, "upsd.conf": old}, UPSD_FILES)))
    plan = make_plan(d, act)
    assert kinds(plan)[-4:] == ["write upsd.conf", "stop_upsd", "start_upsd", "stop_upsmon"]


def test_fsd_defers_an_upsd_restart_so_the_flag_is_never_cleared() -> None:
    d = desired(ups())
    act = running(d, {"my-ups": "usbhid-ups"})
    act = dataclasses.replace(
        act, upsd=Daemon(UPSD, (("upsd.conf", "0" * 32),)), served={"my-ups": Served("ok", "FSD OB LB")}
    )
    plan = make_plan(d, act)
    assert "stop_upsd" not in kinds(plan)
    assert any("FSD" in w for w in plan.warnings)


def test_a_stranger_is_in_the_way_never_replaced() -> None:
    d = desired(ups())
    act = running(d, {}, upsd=False, upsmon=False)
    act = dataclasses.replace(
        act,
        strangers=(
            Stranger("upsd", "upsd", 4242, "/run/nut/upsd.pid"),
            Stranger("driver:my-ups", "usbhid-ups", 4343, "/run/nut/usbhid-ups-my-ups.pid"),
        ),
    )
    plan = make_plan(d, act)
    assert kinds(plan) == ["start_upsmon"]
    assert len(plan.blocked) == 2 and all("never signalled" in b for b in plan.blocked)


def test_drop_removes_a_step_and_what_needs_it_and_renumbers() -> None:
    plan = make_plan(desired(), running(desired(ups()), {"my-ups": "usbhid-ups"}))
    # without the upsmon reload, nothing that needs it (directly or not) may run
    assert kinds(drop(plan, [1])) == ["write upsmon.conf"]
    cold = make_plan(desired(ups()), running(desired(ups()), {}, upsd=False, upsmon=False))
    assert kinds(drop(cold, [0])) == ["start_upsd", "start_upsmon"]
    assert needs(drop(cold, [0])) == [[], [0]]
