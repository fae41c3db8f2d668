from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.decide.secrets import choose_secrets
from reconcile.observe.usb_sysfs import scan
from reconcile.settings import SettingsError, load
from reconcile.simulate import Simulator, state_at
from reconcile.store import StoreError, read_password_file
from reconcile.userconfig import parse


def test_the_demo_cycle_plugs_changes_readings_and_unplugs() -> None:
    statuses = [dict(state_at(t, 100).values).get("ups.status") for t in (0, 39, 41, 69, 71, 84, 86, 99, 100)]
    assert statuses == ["OL CHRG", "OL CHRG", "OB DISCHRG", "OB DISCHRG", "OL", "OL", None, None, "OL CHRG"]
    charges = [int(dict(state_at(t, 100).values)["battery.charge"]) for t in (0, 39, 41, 69)]
    assert charges[0] < charges[1] and charges[2] > charges[3]


def test_simulator_writes_a_bus_and_a_data_file(tmp_path: Path) -> None:
    sim = Simulator(tmp_path, 100)
    sim.step(0)
    (dev,) = scan(tmp_path / "sys")
    assert dev.vidpid == "051d:0002" and sim.rule().matches(dev)
    assert "ups.status: OL CHRG" in (tmp_path / "ups.dev").read_text()
    sim.step(90)
    assert scan(tmp_path / "sys") == []


def test_the_simulated_ups_takes_the_pinned_name_of_a_users_rule_that_matches_it(tmp_path: Path) -> None:
    """The fleet drills a pinned-name Pi (host_ups) on the demo: a rule for the simulated
    device pins its name as it would a real UPS's; a rule for another device does not."""
    sim = Simulator(tmp_path, 100)
    rules = parse(
        {
            "device": [
                {"match": {"vendorid": "0764"}, "name": "other-ups"},
                {"match": {"vendorid": "051d", "productid": "0002"}, "name": "cabin-ups", "powers_host": False},
            ]
        }
    ).rules
    pinned = sim.rule(rules)
    assert (pinned.name, pinned.powers_host, pinned.driver) == ("cabin-ups", False, "dummy-ups")
    assert (sim.rule(rules[:1]).name, sim.rule().name) == (None, None)


def test_simulate_moves_the_bus_under_the_agent_dir() -> None:
    s = load({"SIMULATE": "1", "NUT_STATEPATH": "/x/state", "RECONCILE_STATE": "/x/agent"})
    assert str(s.usb_sysfs_root) == "/x/agent/simulate/sys"


def test_password_precedence_toml_then_file_then_kept_then_generated() -> None:
    user = parse({"users": {"admin": {"password": "from-the-toml-1"}}})
    counter = iter(range(100))

    def generate() -> str:
        return f"generated-{next(counter)}"

    first, keep = choose_secrets(user, {"admin": "from-a-file-1", "monuser": "from-a-file-1"}, {}, generate)
    assert (first.admin, first.monuser, first.upsmon) == ("from-the-toml-1", "from-a-file-1", "generated-0")
    assert keep == {"upsmon": "generated-0"}  # only what was generated is kept
    again, keep_again = choose_secrets(parse({}), {}, keep, generate)
    assert again.upsmon == "generated-0" and again.monuser == "generated-1" and again.admin is None
    assert keep_again == {"upsmon": "generated-0", "monuser": "generated-1"}


def test_bad_password_file_is_named_and_never_echoed(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("bad pass#word\n")
    with pytest.raises(StoreError) as err:
        read_password_file("monuser", pw)
    assert str(pw) in str(err.value) and "bad pass" not in str(err.value)
    pw.write_text("has=an-equals-sign\n")
    with pytest.raises(StoreError) as err:
        read_password_file("monuser", pw)
    assert "equals" not in str(err.value) and "0-9" in str(err.value)


def test_missing_password_file_variable_is_an_error() -> None:
    with pytest.raises(SettingsError, match="NUT_MONUSER_PASSWORD_FILE"):
        load({"NUT_MONUSER_PASSWORD_FILE": "/no/such/secret"})


def test_the_lock_keeps_a_second_process_out(tmp_path: Path) -> None:
    import subprocess
    import sys

    from reconcile.store import locked

    probe = f"from reconcile.store import locked\nwith locked(__import__('pathlib').Path({str(tmp_path)!r}), 0.3): pass"
    with locked(tmp_path):
        held = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=False)
    assert held.returncode != 0 and "held it for 0.3s" in held.stderr
    free = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=False)
    assert free.returncode == 0, free.stderr


def test_a_drill_pins_the_simulated_ups_and_auto_gives_the_cycle_back(tmp_path: Path) -> None:
    from reconcile.simulate import Simulator, state_at

    sim = Simulator(tmp_path, 120.0)
    assert dict(sim.step(110.0).values).get("ups.status") is None  # unplugged at 85-100 % of the cycle
    sim.set_drill("low-battery")
    values = dict(sim.step(110.0).values)
    assert values["ups.status"] == "OB LB" and values["battery.charge"] == "4"
    assert "ups.status: OB LB" in (tmp_path / "ups.dev").read_text()
    sim.set_drill("on-line")
    assert dict(sim.step(110.0).values)["ups.status"] == "OL CHRG"
    sim.set_drill("auto")
    assert sim.step(10.0) == state_at(10.0, 120.0)
    (tmp_path / "drill").write_text("anything else\n")  # not a drill: the cycle goes on
    assert sim.step(10.0) == state_at(10.0, 120.0)


def test_runs_lock_stays_open_between_passes_and_follows_a_replaced_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    from reconcile.store import Lock

    probe = f"from reconcile.store import locked\nwith locked(__import__('pathlib').Path({str(tmp_path)!r}), 0.3): pass"
    lock = Lock(tmp_path)
    try:
        with lock.held():
            first = lock.fd
            held = subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=False
            )
            assert held.returncode != 0 and "held it for 0.3s" in held.stderr
        assert subprocess.run([sys.executable, "-c", probe], timeout=30, check=False).returncode == 0  # released
        with lock.held():
            assert lock.fd == first  # the same open file: no reopen per pass
        (tmp_path / "lock").unlink()  # a wiped volume: `apply` would lock a new file
        with lock.held():
            assert (tmp_path / "lock").exists()
            held = subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=False
            )
            assert held.returncode != 0  # the new file is the one held
    finally:
        lock.close()
