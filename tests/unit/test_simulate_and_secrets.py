from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile.observe.usb_sysfs import scan
from reconcile.settings import SettingsError, load
from reconcile.simulate import Simulator, state_at
from reconcile.store import StoreError, load_secrets
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


def test_simulate_moves_the_bus_under_the_state_dir() -> None:
    s = load({"SIMULATE": "1", "NUT_STATEPATH": "/x/state"})
    assert str(s.usb_sysfs_root) == "/x/state/reconcile/simulate/sys"


def test_password_precedence_toml_then_file_then_kept_then_generated(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-the-file-1\n")
    state = tmp_path / "state"
    user = parse({"users": {"admin": {"password": "from-the-toml-1"}}})
    first = load_secrets(state, user, create=True, files=(("admin", pw), ("monuser", pw)))
    assert (first.admin, first.monuser) == ("from-the-toml-1", "from-the-file-1")
    kept = json.loads((state / "secrets.json").read_text())
    assert set(kept) == {"upsmon"} and oct((state / "secrets.json").stat().st_mode & 0o777) == "0o600"
    again = load_secrets(state, parse({}), create=True)
    assert again.upsmon == first.upsmon and len(again.admin) == 32  # generated once, then kept


def test_bad_password_file_is_named_and_never_echoed(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("bad pass#word\n")
    with pytest.raises(StoreError) as err:
        load_secrets(tmp_path / "state", parse({}), create=True, files=(("monuser", pw),))
    assert str(pw) in str(err.value) and "bad pass" not in str(err.value)
    assert not (tmp_path / "state").exists()


def test_missing_password_file_variable_is_an_error() -> None:
    with pytest.raises(SettingsError, match="NUT_MONUSER_PASSWORD_FILE"):
        load({"NUT_MONUSER_PASSWORD_FILE": "/no/such/secret"})
