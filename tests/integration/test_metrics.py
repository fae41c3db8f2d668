"""/metrics of `nut-reconcile run` against real NUT (dummy-ups, upsd), scraped by a real
Prometheus on loopback, queried through its HTTP API, and linted by promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import await_true
from testbed.nut import Sandbox, free_port

pytestmark = pytest.mark.nut

AWAIT = 30.0  # a ceiling for correctness, not a speed target


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


class Prometheus:
    def __init__(self, root: Path, target: str) -> None:
        self.port = free_port()
        config = root / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            f"scrape_configs: [{{job_name: ups, static_configs: [{{targets: ['{target}']}}]}}]\n"
        )
        binary = shutil.which("prometheus")
        assert binary is not None, "prometheus is not installed (./dev.sh setup installs it)"
        self.log = open(root / "prometheus.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def query(self, promql: str) -> list[dict[str, object]]:
        """The instant vector `promql` gives now ([] while Prometheus is not up yet)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            return list(json.loads(get(url))["data"]["result"])
        except OSError:
            return []

    def value(self, promql: str) -> float | None:
        found = self.query(promql)
        return float(found[0]["value"][1]) if len(found) == 1 else None  # type: ignore[index]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[list[Prometheus]]:
    started: list[Prometheus] = []
    yield started
    for p in started:
        p.stop()


def test_metrics_serve_the_ups_under_nut_exporters_names_and_the_agents_own(
    sandbox: Sandbox, prometheus_for: list[Prometheus]
) -> None:
    data = sandbox.data_file(**{"ups.status": "OB DISCHRG", "battery.runtime": "1200"})
    sandbox.dummy_rule(data)
    port = free_port()
    sandbox.start_run(env={"METRICS_LISTEN": f"127.0.0.1:{port}"})
    assert sandbox.await_log("event=metrics.serving", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_upsc("Error: Driver not connected", timeout=AWAIT), sandbox.run_output()
    sandbox.bus.plug("1-1")  # a plug the running agent sees (the first pass reports none)
    assert sandbox.await_upsc("OB DISCHRG", timeout=AWAIT), sandbox.run_output()

    text = get(f"http://127.0.0.1:{port}/metrics")
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    prom = Prometheus(sandbox.root, f"127.0.0.1:{port}")
    prometheus_for.append(prom)
    assert await_true(lambda: prom.value('network_ups_tools_battery_charge{ups="my-ups"}') == 91.0, AWAIT), (
        prom.log.name
    )
    assert prom.value('network_ups_tools_battery_runtime{ups="my-ups"}') == 1200.0
    assert prom.value('network_ups_tools_ups_status{ups="my-ups",flag="OB"}') == 1.0
    assert prom.value('network_ups_tools_ups_status{ups="my-ups",flag="OL"}') == 0.0  # present, forced to 0
    info = prom.query('network_ups_tools_device_info{ups="my-ups"}')
    # device.mfr, which dummy-ups takes from ups.mfr
    assert len(info) == 1 and info[0]["metric"]["mfr"] == "APC"  # type: ignore[index]
    assert prom.value('ups_nut_smart_usb_present{ups="my-ups"}') == 1.0
    assert prom.value('ups_nut_smart_hotplug_events_total{kind="plugged"}') == 1.0
    assert prom.value('ups_nut_smart_ups_stale{ups="my-ups"}') == 0.0
    assert prom.value("ups_nut_smart_upsd_up") == 1.0
    assert (prom.value("ups_nut_smart_tick_seconds_count") or 0) >= 1
    assert (prom.value("time() - ups_nut_smart_last_success_timestamp_seconds") or 1e9) < 60
    build = prom.query("ups_nut_smart_build_info")
    assert len(build) == 1 and str(build[0]["metric"]["nut_version"]).startswith("2.")  # type: ignore[index]

    # Unplugged: the UPS shows as not present and stale, and the agent's own series stay.
    sandbox.bus.unplug("1-1")
    assert sandbox.await_upsc("Error: Driver not connected", timeout=AWAIT), sandbox.run_output()
    assert await_true(lambda: prom.value('ups_nut_smart_usb_present{ups="my-ups"}') == 0.0, AWAIT)
    assert await_true(lambda: prom.value('ups_nut_smart_ups_stale{ups="my-ups"}') == 1.0, AWAIT)
    assert prom.value('ups_nut_smart_hotplug_events_total{kind="unplugged"}') == 1.0
    assert await_true(lambda: prom.value('network_ups_tools_battery_charge{ups="my-ups"}') is None, AWAIT)


def test_a_metrics_address_that_cannot_be_bound_is_logged_and_nut_is_still_served(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.bus.plug("1-1")
    sandbox.start_run(env={"METRICS_LISTEN": "192.0.2.1:9199"})  # TEST-NET-1: not an address of this machine
    assert sandbox.await_log("event=metrics.failed", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()


def test_a_bad_metrics_address_is_refused_at_start(sandbox: Sandbox) -> None:
    result = sandbox.cli("apply", env={"METRICS_LISTEN": "0.0.0.0:http"})
    assert result.returncode == 2 and "METRICS_LISTEN" in result.stderr, result.stderr
