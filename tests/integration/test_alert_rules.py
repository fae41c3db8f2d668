"""docs/prometheus/alerts.yml: valid, and right (promtool's rule unit tests), with a check
that those unit tests catch the inverted low-battery rule nut_exporter's examples have."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from testbed import REPO

RULES = REPO / "docs" / "prometheus"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary is not None, "promtool is not installed (./dev.sh setup installs prometheus)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_the_alert_rules_are_valid_and_fire_when_they_should() -> None:
    checked = promtool("check", "rules", "alerts.yml", cwd=RULES)
    assert checked.returncode == 0 and "SUCCESS: 9 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts.test.yml", cwd=RULES)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_rule_tests_catch_an_inverted_low_battery_rule(tmp_path: Path) -> None:
    rules = (RULES / "alerts.yml").read_text()
    inverted = rules.replace(
        'expr: network_ups_tools_ups_status{flag="LB"} == 1', 'expr: network_ups_tools_ups_status{flag="LB"} == 0'
    )
    assert inverted != rules
    (tmp_path / "alerts.yml").write_text(inverted)
    shutil.copy(RULES / "alerts.test.yml", tmp_path)
    tested = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert tested.returncode != 0 and "UpsLowBattery" in tested.stdout + tested.stderr
