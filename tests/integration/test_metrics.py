"""/metrics of `nut-reconcile run` against real NUT (dummy-ups, upsd), scraped by a real
Prometheus on loopback, queried through its HTTP API, and linted by promtool."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from reconcile.outputs import metrics
from testbed import REPO, await_true
from testbed.nut import Sandbox, free_port, nut_processes

pytestmark = pytest.mark.nut

AWAIT = 30.0  # a ceiling for correctness, not a speed target


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


class Prometheus:
    def __init__(self, root: Path, *targets: str) -> None:
        self.port = free_port()
        config = root / "prometheus.yml"
        job = {"job_name": "ups-nut-smart", "static_configs": [{"targets": list(targets)}]}
        # JSON is YAML: the config written as JSON needs no YAML library.
        every = {"scrape_interval": "1s", "scrape_timeout": "1s"}
        config.write_text(json.dumps({"global": every, "scrape_configs": [job]}))
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
    config = sandbox.root / "config.toml"
    config.write_text(config.read_text().replace("[upsd]\n", "[upsd]\nmaxage = 5\n"))  # for the stale heal
    port = free_port()
    sandbox.start_run(env={"METRICS_LISTEN": f"127.0.0.1:{port}", "STALE_RESTART_AFTER": "3"})
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

    # A stale heal: a frozen driver, restarted by the agent; counted once, with its seconds.
    assert prom.value('ups_nut_smart_stale_heals_total{ups="my-ups"}') == 0.0  # there from the start
    drivers = [pid for pid, comm in nut_processes(sandbox.conf) if comm == "dummy-ups"]
    assert len(drivers) == 1, drivers
    os.kill(drivers[0], signal.SIGSTOP)
    assert await_true(lambda: prom.value('ups_nut_smart_ups_stale{ups="my-ups"}') == 1.0, AWAIT)
    assert await_true(lambda: prom.value('ups_nut_smart_stale_heals_total{ups="my-ups"}') == 1.0, AWAIT)
    assert (prom.value('ups_nut_smart_stale_seconds_total{ups="my-ups"}') or 0.0) >= 3.0
    assert prom.value('ups_nut_smart_driver_restarts_total{ups="my-ups",reason="restart"}') == 1.0, prom.query(
        "ups_nut_smart_driver_restarts_total"
    )
    assert await_true(lambda: prom.value('ups_nut_smart_ups_stale{ups="my-ups"}') == 0.0, AWAIT)

    # Unplugged: the UPS shows as not present and stale, and the agent's own series stay.
    sandbox.bus.unplug("1-1")
    assert sandbox.await_upsc("Error: Driver not connected", timeout=AWAIT), sandbox.run_output()
    assert await_true(lambda: prom.value('ups_nut_smart_usb_present{ups="my-ups"}') == 0.0, AWAIT)
    assert await_true(lambda: prom.value('ups_nut_smart_ups_stale{ups="my-ups"}') == 1.0, AWAIT)
    assert prom.value('ups_nut_smart_hotplug_events_total{kind="unplugged"}') == 1.0
    assert await_true(lambda: prom.value('network_ups_tools_battery_charge{ups="my-ups"}') is None, AWAIT)


class CountingRelay:
    """A TCP relay in front of the sandbox's upsd that counts the connections made through
    it: each read of upsd by the metrics is one connection (metrics.read_upsd)."""

    def __init__(self, port: int) -> None:
        self.upstream = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.connections += 1  # before any byte reaches upsd: counted by the time it answers
            upstream = socket.create_connection(self.upstream, timeout=5)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


def test_scrapes_within_a_second_cost_one_read_of_the_real_upsd(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.bus.plug("1-1")
    sandbox.start_run()
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    relay = CountingRelay(sandbox.port)
    # The clock the collector reads, held still between the first two scrapes: "within a
    # second" without depending on how fast this machine scrapes.
    now = [1000.0]
    registry = CollectorRegistry()
    registry.register(metrics.UpsdCollector("127.0.0.1", relay.port, clock=lambda: now[0]))
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        series = 'network_ups_tools_battery_charge{ups="my-ups"} 91.0'
        first = get(f"http://127.0.0.1:{port}/metrics")
        now[0] += metrics.READ_EVERY - 0.001
        second = get(f"http://127.0.0.1:{port}/metrics")
        assert series in first and series in second, first
        assert relay.connections == 1
        now[0] += 0.001  # a second after the first read: the next scrape reads again
        assert series in get(f"http://127.0.0.1:{port}/metrics")
        assert relay.connections == 2
    finally:
        server.shutdown()
        server.server_close()
        relay.close()


def test_a_metrics_address_that_cannot_be_bound_is_logged_and_nut_is_still_served(sandbox: Sandbox) -> None:
    sandbox.dummy_rule(sandbox.data_file())
    sandbox.bus.plug("1-1")
    sandbox.start_run(env={"METRICS_LISTEN": "192.0.2.1:9199"})  # TEST-NET-1: not an address of this machine
    assert sandbox.await_log("event=metrics.failed", timeout=AWAIT), sandbox.run_output()
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()


def test_a_bad_metrics_address_is_refused_at_start(sandbox: Sandbox) -> None:
    result = sandbox.cli("apply", env={"METRICS_LISTEN": "0.0.0.0:http"})
    assert result.returncode == 2 and "METRICS_LISTEN" in result.stderr, result.stderr


# What DRuggeri's nut_exporter serves with its default variables: no `ups` label.
NUT_EXPORTER_TEXT = "".join(
    [
        "network_ups_tools_battery_charge 88\n",
        "network_ups_tools_battery_voltage 13.5\n",
        "network_ups_tools_input_voltage 231\n",
        "network_ups_tools_ups_load 17\n",
        *(f'network_ups_tools_ups_status{{flag="{f}"}} {int(f == "OL")}\n' for f in ("OL", "OB", "LB", "RB")),
        'network_ups_tools_device_info{model="Back-UPS",mfr="APC",serial="X1",type="ups",description="",'
        'contact="",location="",part="",macaddr=""} 1\n',
    ]
)
DASHBOARD = REPO / "docs" / "grafana" / "ups-nut-smart.json"
ONLY_OURS_OR_NOT_DEFAULT = {"Runtime left"}  # battery.runtime is not among nut_exporter's default variables


class Exposition(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = NUT_EXPORTER_TEXT.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def panels() -> list[tuple[str, str, bool]]:
    """(title, PromQL, in the UPS row) of every panel of the dashboard."""
    out, ups_row = [], False
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        if panel["type"] == "row":
            ups_row = panel["title"].startswith("UPS")
            continue
        out += [(panel["title"], target["expr"], ups_row) for target in panel["targets"]]
    return out


def scoped(expr: str, instance: str) -> str:
    """A panel's query as Grafana sends it, for one host and every UPS."""
    for variable, value in (("$instance", instance), ("$ups", ".*"), ("$job", ".*"), ("$__rate_interval", "30s")):
        expr = expr.replace(variable, value)
    return expr


def test_every_dashboard_panel_returns_data_from_the_agent_and_its_ups_row_from_nut_exporters_series(
    sandbox: Sandbox, prometheus_for: list[Prometheus]
) -> None:
    sandbox.dummy_rule(sandbox.data_file(**{"battery.runtime": "1500", "ups.load": "23", "input.voltage": "230.5"}))
    port = free_port()
    sandbox.start_run(env={"METRICS_LISTEN": f"127.0.0.1:{port}"})
    assert sandbox.await_upsc("Error: Driver not connected", timeout=AWAIT), sandbox.run_output()
    sandbox.bus.plug("1-1")
    assert sandbox.await_upsc("OL", timeout=AWAIT), sandbox.run_output()
    # A driver restart, so that the restarts panel has a series (a counter exists from its first one).
    assert sandbox.await_log("event=start.driver ups=my-ups", timeout=AWAIT), sandbox.run_output()
    driver = [pid for pid, comm in nut_processes(sandbox.conf) if comm == "dummy-ups"]
    os.kill(driver[0], signal.SIGKILL)
    assert sandbox.await_log('why="not running"', timeout=AWAIT), sandbox.run_output()

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Exposition)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        theirs = f"127.0.0.1:{other.server_address[1]}"
        ours = f"127.0.0.1:{port}"
        prom = Prometheus(sandbox.root, ours, theirs)
        prometheus_for.append(prom)
        assert await_true(lambda: prom.value(f'up{{instance="{theirs}"}}') == 1.0, AWAIT), prom.log.name
        for title, expr, ups_row in panels():
            query = scoped(expr, ours)
            assert await_true(lambda q=query: bool(prom.query(q)), AWAIT), f"{title}: {query} returns nothing"  # type: ignore[misc]
            if ups_row and title not in ONLY_OURS_OR_NOT_DEFAULT:
                query = scoped(expr, theirs)
                assert prom.query(query), f"{title} on nut_exporter's series: {query} returns nothing"
    finally:
        other.shutdown()
