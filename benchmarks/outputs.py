"""The outputs' cost (issue 15): the agent's RSS at rest with every output on, side by side
with none; the CPU one Prometheus scrape costs; and the time from an event to its
notification and to its MQTT message.

RSS and scrape CPU: the default image at rest, one simulated UPS, the way `resources` runs
it; the receiver (a webhook) and the broker (mosquitto) on the host, reached through the
container's gateway. The outputs' modules are only imported when used, so each one is
used once (a scrape, a notification, the broker's connection) before the figure is read.

Latency: the agent on the host against real NUT (as the hotplug benchmark runs it), every
output on; the moment of an event is when its log line appears (the log is polled every
5 ms), the moment of its message when the webhook or an MQTT subscriber receives it.
"""

from __future__ import annotations

import os
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.hotplug import measure, sandbox, summary
from benchmarks.markdown import ok, table
from testbed.docker import SIM_ENV, SIM_MOUNT, container_sim, docker, run_container
from testbed.mqtt import Broker, Subscriber
from testbed.nut import Sandbox, free_port, upsc
from testbed.webhook import Receiver

TARGET_RSS_MB = 30.0
TARGET_LATENCY_S = 1.0
SCRAPES = 500
HOST = "bench"
# (dummy-ups status, the agent's ups.power line begins, the notification's title, upsmon's notice)
POWER = (
    ("OB DISCHRG", "on battery", "on battery", "ONBATT"),
    ("OL", "no longer on battery", "back on mains", "ONLINE"),
)


def _rss_mb(name: str) -> float:
    status = docker("exec", name, "cat", "/proc/1/status").stdout
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def _cpu(pid: int) -> float:
    """Seconds of CPU of `pid`, every thread counted, the ended ones too (/proc/<pid>/stat's
    utime + stime: prometheus_client answers each scrape on a thread of its own)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def resources(image: str, rest: float = 20.0) -> dict[str, float]:
    """The agent's RSS with no output and with every output on (same image, same UPS), and
    the agent's and upsd's CPU per scrape (SCRAPES scrapes, less the same time at rest)."""
    out: dict[str, float] = {}
    receiver = Receiver(bind="0.0.0.0")
    with tempfile.TemporaryDirectory(prefix="bench-outputs-") as tmp:
        broker = Broker(Path(tmp), bind="0.0.0.0")
        try:
            for label, outputs in (("none", False), ("all", True)):
                root = Path(tmp) / label
                root.mkdir()
                bus = container_sim(root)
                bus.plug("1-1")
                port, metrics_port, name = free_port(), free_port(), f"ups-nut-smart-bench-outputs-{label}"
                env = [*SIM_ENV, "-e", "SCAN_INTERVAL=2"]
                if outputs:
                    gateway = "host.docker.internal"
                    env += ["-e", "METRICS_LISTEN=0.0.0.0:9199", "-e", f"HOST_NAME={HOST}", "-e", "NOTIFY_DEBOUNCE=0"]
                    env += ["-e", f"NOTIFY_URLS=json://{gateway}:{receiver.port}/hook"]
                    env += ["-e", f"MQTT_URL=mqtt://{gateway}:{broker.port}"]
                    env += ["--add-host", f"{gateway}:host-gateway", "-p", f"127.0.0.1:{metrics_port}:9199"]
                docker("rm", "-f", name, check=False)
                run_container(image, name, port, "-v", f"{root}:{SIM_MOUNT}", *env)
                try:
                    measure(lambda: upsc(port, "my-ups", "battery.charge")[1] == "77", 90)  # noqa: B023
                    if outputs:
                        # Each output used once, so that what it loads is in the figure.
                        seen = len(receiver.messages)
                        bus.unplug("1-1")
                        measure(lambda: len(receiver.messages) > seen, 60)  # noqa: B023
                        bus.plug("1-1")
                        measure(lambda: upsc(port, "my-ups", "battery.charge")[1] == "77", 90)  # noqa: B023
                        measure(lambda: "network_ups_tools_battery_charge" in _scrape(metrics_port), 30)  # noqa: B023
                        measure(lambda: "mqtt.connected" in docker("logs", name).stdout, 30)  # noqa: B023
                    time.sleep(rest)  # at rest before the figure is read: this is the measurement
                    out[f"rss_{label}_mb"] = _rss_mb(name)
                    if outputs:
                        out.update(_scrape_cpu(name, metrics_port))
                finally:
                    docker("rm", "-f", name, check=False, timeout=60)
        finally:
            broker.stop()
            receiver.stop()
    return out


def _scrape_cpu(name: str, metrics_port: int) -> dict[str, float]:
    agent = int(docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip())
    upsd = int(docker("exec", name, "cat", "/var/run/nut/upsd.pid").stdout.strip() or 0)
    upsd_host = _host_pid(agent, upsd)

    def cpu() -> tuple[float, float]:
        return _cpu(agent), _cpu(upsd_host) if upsd_host else 0.0

    began, start = time.monotonic(), cpu()
    for _ in range(SCRAPES):
        _scrape(metrics_port)
    took = time.monotonic() - began
    busy = cpu()
    time.sleep(took)  # the same time at rest, to take the ticks' own CPU out: part of the measurement
    rest = cpu()
    agent_cpu = (busy[0] - start[0]) - (rest[0] - busy[0])
    upsd_cpu = (busy[1] - start[1]) - (rest[1] - busy[1])
    return {
        "scrape_agent_ms": max(0.0, agent_cpu) / SCRAPES * 1000,
        "scrape_upsd_ms": max(0.0, upsd_cpu) / SCRAPES * 1000,
        "scrape_wall_ms": took / SCRAPES * 1000,
    }


def _host_pid(agent_host_pid: int, container_pid: int) -> int | None:
    """upsd's PID on the host, from its PID in the container (NSpid in /proc/<pid>/status)."""
    children = Path(f"/proc/{agent_host_pid}/task/{agent_host_pid}/children").read_text().split()
    for pid in map(int, children):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
        if nspid and int(nspid[-1]) == container_pid:
            return pid
    return None


# --- latency --------------------------------------------------------------------------


def _log_seen(box: Sandbox, fragment: str, count: int, timeout: float = 60.0) -> float:
    """When the `count`-th line with `fragment` appeared in the agent's log (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if box.run_output().count(fragment) >= count:
            return time.monotonic()
        time.sleep(0.005)  # polling the log is how the event's moment is seen: the measurement
    raise TimeoutError(f"{fragment!r} x{count} not seen in the log")


def _arrival(find: Callable[[], float | None], timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found is not None:
            return found
        time.sleep(0.005)  # awaiting the message (its own arrival time is what counts)
    raise TimeoutError("no message arrived")


def latency(cycles: int) -> dict[str, list[float]]:
    """Seconds from an event to its notification (notify: plug, upsmon's ONBATT and ONLINE,
    unplug) and to its MQTT message (mqtt: the agent's ups.power on battery and back, unplug).
    mqtt_plug apart: a plug's MQTT message is the state with data, which waits for the
    driver's start (NUT's own second), not for the output."""
    notify: list[float] = []
    mqtt: list[float] = []
    mqtt_plug: list[float] = []  # plug -> the state with data: the driver's start is in it
    with sandbox() as box:
        receiver = Receiver()
        broker = Broker(box.root)
        sub = Subscriber(broker.port)
        try:
            data = box.data_file()
            box.dummy_rule(data)
            box.write_config("\n[upsmon]\npollfreq = 1\ndeadtime = 3\n")
            env = {
                "NOTIFY_URLS": receiver.url,
                "NOTIFY_DEBOUNCE": "0",
                "NOTIFY_EVENTS": "all",
                "MQTT_URL": f"mqtt://127.0.0.1:{broker.port}",
                "METRICS_LISTEN": f"127.0.0.1:{free_port()}",
                "HOST_NAME": HOST,
            }
            box.start_run(env=env)
            _log_seen(box, "event=mqtt.connected", 1)
            _log_seen(box, "event=start.upsmon", 1)
            base = f"ups-nut-smart/{HOST}/my-ups"

            def after(fragment: str, act: Callable[[], object]) -> tuple[float, float]:
                """Do `act`; (when it was done, when the next log line with `fragment` appeared)."""
                before = box.run_output().count(fragment)
                done = time.monotonic()
                act()
                return done, _log_seen(box, fragment, before + 1)

            def past(arrived: float, event: float) -> float:
                # A message may arrive before its log line is seen (the log is polled): 0 then.
                return max(0.0, arrived - event)

            for _ in range(cycles):
                done, event = after("event=ups.plugged", lambda: box.bus.plug("1-1"))
                notify.append(past(_arrival(lambda: receiver.arrived_after("plugged in", done)), event))  # noqa: B023
                mqtt_plug.append(past(_arrival(lambda: sub.arrived_after(f"{base}/state", done)), event))  # noqa: B023
                box.await_upsc("OL", timeout=60)
                for status, logged, notice, kind in POWER:
                    told_before = box.run_output().count(f"event=upsmon.notice type={kind}")
                    done, event = after(
                        f'event=ups.power ups=my-ups status="{logged}',
                        lambda: box.data_file(**{"ups.status": status}),  # noqa: B023
                    )
                    mqtt.append(past(_arrival(lambda: sub.arrived_after(f"{base}/state", done)), event))  # noqa: B023
                    told = _log_seen(box, f"event=upsmon.notice type={kind}", told_before + 1)
                    notify.append(past(_arrival(lambda: receiver.arrived_after(notice, done)), told))  # noqa: B023
                done, event = after("event=ups.unplugged", lambda: box.bus.unplug("1-1"))
                notify.append(past(_arrival(lambda: receiver.arrived_after("unplugged", done)), event))  # noqa: B023
                mqtt.append(past(_arrival(lambda: sub.arrived_after(f"{base}/available", done)), event))  # noqa: B023
                box.await_upsc("Error: Driver not connected", timeout=60)
        finally:
            sub.stop()
            broker.stop()
            receiver.stop()
    return {"notify": notify, "mqtt": mqtt, "mqtt_plug": mqtt_plug}


def run(image: str, cycles: int) -> dict[str, Any]:
    return {"resources": resources(image), "latency": latency(cycles)}


def render(r: dict[str, Any]) -> str:
    """docs/benchmarks.md's section on the outputs."""
    o = r.get("outputs")
    if not o:
        return ""
    res, lat = o["resources"], o["latency"]
    rows = [["", "n", "median", "p95", "max", f"target ≤ {TARGET_LATENCY_S:g} s"]]
    for key, label in (
        ("notify", "event → notification (webhook)"),
        ("mqtt", "event → MQTT message (power, unplug)"),
        ("mqtt_plug", "plug → MQTT state with data (the driver's start in it)"),
    ):
        if key not in lat:
            continue
        s = summary(lat[key])
        target = ok(s["p95"] <= TARGET_LATENCY_S) if key != "mqtt_plug" else "(no target: NUT's own start)"
        rows.append(
            [label, str(s["n"]), f"{s['median']:.2f} s", f"{s['p95']:.2f} s", f"{s['max']:.2f} s", target]
        )  # fmt: skip
    return f"""## Outputs: notifications, MQTT, /metrics

The default image at rest, one simulated UPS: the agent's RSS with no output
{res["rss_none_mb"]:.1f} MiB, with every output on (METRICS_LISTEN, NOTIFY_URLS, MQTT_URL, each
used once) {res["rss_all_mb"]:.1f} MiB (target ≤ {TARGET_RSS_MB:g}: {ok(res["rss_all_mb"] <= TARGET_RSS_MB)}).
Apprise is not in that figure: it loads in a child process only while a message is sent.
What the outputs add is their libraries: prometheus_client (its exposition brings http.server,
wsgiref and urllib) and paho-mqtt (ssl), imported only when their setting is on.

One Prometheus scrape of `/metrics` ({SCRAPES} in a row, less the same time at rest): the agent
{res["scrape_agent_ms"]:.2f} ms of CPU, upsd {res["scrape_upsd_ms"]:.2f} ms, {res["scrape_wall_ms"]:.1f} ms
from request to answer.

From an event to its message, the agent on the host against real NUT, every output on
(plug, on battery, back on line, unplug; on battery and back on line are upsmon's
notices for the notification, the agent's `ups.power` for MQTT):

{table(rows)}

"""


def met(r: dict[str, Any]) -> tuple[bool, bool]:
    """(RSS target met, latency target met)."""
    res, lat = r["outputs"]["resources"], r["outputs"]["latency"]
    worst = max(summary(lat["notify"])["p95"], summary(lat["mqtt"])["p95"])
    return res["rss_all_mb"] <= TARGET_RSS_MB, worst <= TARGET_LATENCY_S


def headline_rows(r: dict[str, Any]) -> list[list[str]]:
    o = r.get("outputs")
    if not o:
        return []
    res, lat = o["resources"], o["latency"]
    p95n, p95m = summary(lat["notify"])["p95"], summary(lat["mqtt"])["p95"]
    return [
        [
            "agent RSS, every output on",
            f"{res['rss_all_mb']:.0f} MiB (none: {res['rss_none_mb']:.0f})",
            f"≤ {TARGET_RSS_MB:g} MiB: {ok(res['rss_all_mb'] <= TARGET_RSS_MB)}",
            "three more containers",
        ],
        [
            "event → notification / MQTT (p95)",
            f"{p95n:.2f} s / {p95m:.2f} s",
            f"≤ {TARGET_LATENCY_S:g} s: {ok(max(p95n, p95m) <= TARGET_LATENCY_S)}",
            "-",
        ],
    ]
