"""The status command's Prometheus file_sd list, read by a real Prometheus with the scrape
config docs/fleet.md gives: each Pi with metrics_port is a target, its series carry the
`host` label, and the inventory groups select targets in relabelling; a Pi whose metrics
are published on its loopback only is no target. Loopback only (a target on another
address is one that relabelling drops: never scraped)."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.inventory import Inventory

from fleet import status
from testbed import REPO, await_true
from tests.helpers import need


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Metrics(http.server.BaseHTTPRequestHandler):
    """A Pi's /metrics, as far as Prometheus needs one."""

    def do_GET(self) -> None:
        body = b"# TYPE ups_test gauge\nups_test 1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def pis_metrics() -> Iterator[tuple[int, int]]:
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield servers[0].server_address[1], servers[1].server_address[1]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def docs_scrape_config(targets: Path) -> str:
    """The scrape config of docs/fleet.md, on this test's targets file."""
    text = (REPO / "docs" / "fleet.md").read_text()
    block: str = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "file_sd_configs" in b)
    assert "/etc/prometheus/targets/ups-nut-smart.json" in block
    config = block.replace("/etc/prometheus/targets/ups-nut-smart.json", str(targets))
    # Why so short: the test waits on Prometheus's first discovery and scrape.
    return "global: {scrape_interval: 1s, evaluation_interval: 1s}\n" + config.replace(
        "      - files:", "      - refresh_interval: 1s\n        files:"
    )


def api(port: int, path: str, **query: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())["data"]


def test_prometheus_scrapes_the_file_sd_list_with_the_docs_scrape_config(
    tmp_path: Path, pis_metrics: tuple[int, int]
) -> None:
    need(None if shutil.which("prometheus") else "no prometheus (apt-get install prometheus)")
    canary_port, other_port = pis_metrics
    inventory = Inventory(  # type: ignore[no-untyped-call]  # pyinfra's constructor has no hints
        (
            [
                ("pi1", {"metrics_port": canary_port, "metrics_listen": "0.0.0.0", "ssh_hostname": "127.0.0.1"}),
                ("pi2", {"metrics_port": other_port, "metrics_listen": "192.0.2.10"}),  # TEST-NET-1: dropped
                "pi3",  # no metrics_port: not a target
                ("pi4", {"metrics_port": other_port}),  # on the Pi's loopback only: not a target
            ],
            {},
        ),
        canary=(["pi1"], {}),
        pis=(["pi1", "pi2", "pi3", "pi4"], {}),
    )
    targets = tmp_path / "targets" / "ups-nut-smart.json"
    written, problems, notes = status.write_file_sd(inventory, targets)
    assert written and problems == [] and [note.split(":")[0] for note in notes] == ["host pi4"]
    assert [group["labels"]["host"] for group in json.loads(targets.read_text())] == ["pi1", "pi2"]
    (tmp_path / "prometheus.yml").write_text(docs_scrape_config(targets))
    port, log = free_port(), tmp_path / "prometheus.log"
    with log.open("wb") as errors:  # the child keeps its own copy of the descriptor
        prometheus = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    try:

        def scraped() -> bool:
            try:
                found = api(port, "query", query='up{job="ups-nut-smart"} == 1')
            except OSError:
                return False  # not listening yet
            return [r["metric"].get("host") for r in found["result"]] == ["pi1"]

        assert await_true(scraped, 60), log.read_text()[-3000:]
        seen = api(port, "targets")
        assert [t["labels"]["host"] for t in seen["activeTargets"]] == ["pi1"]
        assert "__meta_fleet_groups" not in seen["activeTargets"][0]["labels"]  # never on a series
        assert [t["discoveredLabels"]["__address__"] for t in seen["droppedTargets"]] == [f"192.0.2.10:{other_port}"]
    finally:
        prometheus.terminate()
        prometheus.wait(30)
