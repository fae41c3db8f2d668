"""docs/fleet.md's commands word for word, from the repo's root, with the example inventory
(the top-level file `inventory`) as it stands: `pyinfra inventory deploy.py --dry --diff`
and `python -m fleet.status inventory`, against three fresh docker-in-docker Pis named as
the example names them (pi-rack.lan, pi-shop.lan, pi-cabin.lan; SSH as pi with sudo). The
controller's ~/.ssh/config takes each name to its Pi's port on 127.0.0.1, as a Pi owner's
ssh config or DNS takes it to a Pi (testbed/pis.py Fleet.ssh_home): the inventory is not
rewritten for the test."""

from __future__ import annotations

import re

import pytest

from testbed.pis import EXAMPLE_PIS, Fleet, Pi

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

PROJECT = "/opt/ups-nut-smart"
FILES = ("compose.yaml", ".env", "config.toml")


def planned(out: str) -> dict[tuple[str, str], str]:
    """pyinfra's --diff, per host and file: `[host] Will create PATH` and the diff lines
    indented under it, up to the next host line."""
    found: dict[tuple[str, str], str] = {}
    for match in re.finditer(r"^ +\[(\S+)\] +Will (?:create|modify) (\S+)\n((?: {6}.*\n)*)", out, re.MULTILINE):
        found[(match[1], match[2])] = match[3]
    return found


def snapshot(pi: Pi) -> str:
    """What a deploy would change on a Pi: its project dir, NUT's host files, Docker's
    containers, images and volumes, and the host's NUT client package."""
    return pi.sh(
        f"ls -A {PROJECT} 2>&1; ls -A /etc/nut 2>&1; docker ps -aq; docker images -q; docker volume ls -q; "
        "dpkg-query -W -f='${Status}' nut-client 2>&1; echo"
    )


def test_pyinfra_inventory_deploy_dry_diff_shows_each_pi_its_files_and_changes_nothing(example_fleet: Fleet) -> None:
    pis = example_fleet.pis
    before = {name: snapshot(pi) for name, pi in pis.items()}
    assert all(f"{PROJECT}" in state and "No such file" in state for state in before.values()), before  # fresh

    result = example_fleet.controller("pyinfra", "inventory", "deploy.py", "--dry", "--diff")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    plan = planned(out)
    for name in EXAMPLE_PIS:
        assert re.search(rf"\[{re.escape(name)}\] +Connected", out), out
        for file in FILES:
            assert (name, f"{PROJECT}/.next/{file}") in plan, (name, file, out)  # staged: live with the recreate
        assert re.search(rf"Image ups-nut-smart:latest.*{re.escape(name)}", out), out
    # Each Pi's own data from the example, in its diff: pi-shop.lan's tz, pi-cabin.lan's device rule.
    env = {name: plan[(name, f"{PROJECT}/.next/.env")] for name in EXAMPLE_PIS}
    assert "+ TZ=Europe/Berlin" in env["pi-shop.lan"]
    assert "+ TZ=UTC" in env["pi-rack.lan"] and "+ TZ=UTC" in env["pi-cabin.lan"]
    toml = {name: plan[(name, f"{PROJECT}/.next/config.toml")] for name in EXAMPLE_PIS}
    assert '+ name = "cabin-ups"' in toml["pi-cabin.lan"] and 'vendorid = "0764"' in toml["pi-cabin.lan"]
    assert "[[device]]" not in toml["pi-rack.lan"] and "[[device]]" not in toml["pi-shop.lan"]
    assert all('+     image: "ups-nut-smart:latest"' in plan[(n, f"{PROJECT}/.next/compose.yaml")] for n in EXAMPLE_PIS)

    assert {name: snapshot(pi) for name, pi in pis.items()} == before  # --dry: nothing changed on any Pi


def test_python_m_fleet_status_inventory_reads_each_pi_over_ssh(example_fleet: Fleet) -> None:
    """Nothing deployed yet: each Pi is reached (not "not reachable over SSH") and says so."""
    result = example_fleet.controller("python", "-m", "fleet.status", "inventory", timeout=300)
    out = result.stdout + result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.split(" ", 1)[0] in EXAMPLE_PIS}
    assert sorted(rows) == sorted(EXAMPLE_PIS), out
    assert all("could not be read: no container" in row for row in rows.values()), out
    assert result.returncode == 1, out
