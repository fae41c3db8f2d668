"""The example inventory, the top-level file `inventory`, as docs/fleet.md's commands take
it word for word (`pyinfra inventory deploy.py`, `python -m fleet.status inventory`): read
by pyinfra's own reader with group_data/ beside it, and both commands run from the repo's
root. No Pi: each of its hosts is sent to a closed port on 127.0.0.1 (tests/fleet/
test_example_inventory.py runs the same commands against real Pis)."""

from __future__ import annotations

import runpy
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.config import Config
from pyinfra.api.inventory import Inventory
from pyinfra.api.state import State
from pyinfra.context import ctx_config, ctx_state

# Why pyinfra_cli: its make_inventory is what `pyinfra INVENTORY ...` reads a file with.
from pyinfra_cli.inventory import make_inventory  # type: ignore[import-untyped]

from fleet import status
from testbed import REPO
from testbed.pis import EXAMPLE_PIS, Fleet, Pi


def read_inventory(name: str, cwd: Path) -> Inventory:
    """An inventory file read as pyinfra's CLI reads it (its group_data runs in context)."""
    run = State(check_for_changes=False)
    run.cwd = str(cwd)
    with ctx_state.use(run), ctx_config.use(Config()):  # type: ignore[no-untyped-call]
        return make_inventory(name, cwd=str(cwd))  # type: ignore[no-any-return]


def group_data(name: str, folder: Path = REPO / "group_data") -> dict[str, Any]:
    """What a group_data file sets, run as Python (as pyinfra runs it)."""
    return {k: v for k, v in runpy.run_path(str(folder / f"{name}.py")).items() if not k.startswith("_")}


def test_the_example_inventory_is_a_file_pyinfra_reads_with_group_data_beside_it() -> None:
    assert (REPO / "inventory").is_file()
    inventory = read_inventory("inventory", REPO)
    assert tuple(h.name for h in inventory) == EXAMPLE_PIS
    assert [h.name for h in inventory.get_group("canary")] == ["pi-rack.lan"]
    assert {h.name for h in inventory.get_group("pis")} == set(EXAMPLE_PIS)
    wanted = {**group_data("all"), **group_data("pis")}
    assert wanted  # group_data/ sets something, or this proves nothing
    for host in inventory:
        assert host.data.get("ssh_user") == "pi" and host.data.get("_sudo") is True
        for key, value in wanted.items():
            assert host.data.get(key) == value, (host.name, key)  # only group_data sets these


def test_a_second_site_is_another_inventory_file_with_a_group_of_its_own(tmp_path: Path) -> None:
    """docs/fleet.md: `pyinfra site-b.py deploy.py`; group_data/ where pyinfra runs serves
    it too, and group_data/site-b.py beside the file is data for its hosts alone."""
    (tmp_path / "site-b.py").write_text('pis = [("pi-barn.lan", {"ssh_user": "pi", "_sudo": True})]\n')
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "site-b.py").write_text('tz = "Europe/Vienna"\n')
    inventory = read_inventory(str(tmp_path / "site-b.py"), REPO)
    [host] = list(inventory)
    assert host.name == "pi-barn.lan" and set(host.groups) >= {"pis", "site-b"}
    assert host.data.get("tz") == "Europe/Vienna"
    assert host.data.get("image") == group_data("all")["image"]


@pytest.fixture
def unreachable(tmp_path: Path) -> Iterator[Fleet]:
    """The example's hosts, each sent by ~/.ssh/config to a loopback port that refuses."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: a connect is refused at once
        port = closed.getsockname()[1]
        pis = {name: Pi(name, port, "pi", container="") for name in EXAMPLE_PIS}
        yield Fleet(tmp_path, tmp_path / "no-key", pis)


def test_pyinfra_inventory_deploy_dry_loads_the_example_and_tries_each_pi(unreachable: Fleet) -> None:
    result = unreachable.controller("pyinfra", "inventory", "deploy.py", "--dry", timeout=120)
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "IsADirectoryError" not in out, out
    assert "--> Loading inventory..." in out and "--> Connecting to hosts..." in out, out
    for name in EXAMPLE_PIS:
        assert f"[{name}]" in out and "Could not connect" in out.split(f"[{name}]", 1)[1].split("\n", 1)[0], out
    assert result.returncode == 1, out  # "No hosts remaining!": none could be reached


def test_python_m_fleet_status_inventory_reads_the_example(unreachable: Fleet) -> None:
    result = unreachable.controller("python", "-m", "fleet.status", "inventory", timeout=120)
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    rows = [line for line in result.stdout.splitlines() if line.split(" ", 1)[0] in EXAMPLE_PIS]
    assert sorted(r.split()[0] for r in rows) == sorted(EXAMPLE_PIS), out
    assert all("not reachable over SSH" in r for r in rows), out
    assert result.returncode == 1, out


def test_the_status_command_refuses_a_directory_for_an_inventory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status.main([str(tmp_path)]) == 2
    assert f"{tmp_path} is a directory, not an inventory file" in capsys.readouterr().err
