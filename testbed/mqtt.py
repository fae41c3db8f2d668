"""A real MQTT broker (Debian's mosquitto) and a subscriber (paho), for the MQTT tests and
the outputs benchmark."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from testbed import await_true
from testbed.nut import free_port

ANONYMOUS = "allow_anonymous true\n"


class Broker:
    """mosquitto on a loopback port, with the least config: anonymous (or `access`: the
    config lines of logins and an ACL), no persistence."""

    def __init__(self, root: Path, port: int | None = None, bind: str = "127.0.0.1", access: str = ANONYMOUS) -> None:
        self.port = port or free_port()
        conf = root / f"mosquitto-{self.port}.conf"
        conf.write_text(f"listener {self.port} {bind}\n{access}persistence false\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        assert os.path.exists(binary), "mosquitto is not installed (./dev.sh setup installs it)"
        self.log = open(root / f"mosquitto-{self.port}.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([binary, "-c", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)
        assert await_true(self._listening, 10), Path(self.log.name).read_text()

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


def new_client() -> mqtt.Client:
    client_id = f"test-{uuid.uuid4().hex[:8]}"
    if hasattr(mqtt, "CallbackAPIVersion"):
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    kwargs: dict[str, Any] = {"client_id": client_id}
    return mqtt.Client(**kwargs)


class Subscriber:
    """A client subscribed to everything: the last payload of each topic, whether it came
    retained, and how many came (thread-safe: paho delivers on its own thread)."""

    def __init__(self, port: int, login: tuple[str, str] | None = None) -> None:
        self.lock = threading.Lock()
        self.last: dict[str, tuple[bytes, bool]] = {}
        self.counts: dict[str, int] = {}
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), topic) of each message
        self.subscribed = threading.Event()
        self.client = new_client()
        self.client.on_connect = lambda client, *_: client.subscribe("#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        if login is not None:
            self.client.username_pw_set(*login)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the test's subscriber did not subscribe"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.lock:
            self.last[message.topic] = (bytes(message.payload), bool(message.retain))
            self.counts[message.topic] = self.counts.get(message.topic, 0) + 1
            self.arrivals.append((time.monotonic(), message.topic))

    def arrived_after(self, topic: str, since: float) -> float | None:
        """When the first message on `topic` arrived at or after `since` (time.monotonic())."""
        with self.lock:
            return next((t for t, on in self.arrivals if t >= since and on == topic), None)

    def payload(self, topic: str) -> str | None:
        with self.lock:
            found = self.last.get(topic)
        return None if found is None else found[0].decode()

    def retained(self, topic: str) -> bool | None:
        with self.lock:
            found = self.last.get(topic)
        return None if found is None else found[1]

    def count(self, topic: str) -> int:
        with self.lock:
            return self.counts.get(topic, 0)

    def json(self, topic: str) -> Any:
        text = self.payload(topic)
        return json.loads(text) if text else None

    def await_payload(self, topic: str, expected: str, timeout: float = 30.0) -> bool:
        return await_true(lambda: self.payload(topic) == expected, timeout)

    def await_json(self, topic: str, check: Callable[[Any], bool], timeout: float = 30.0) -> Any:
        ok = await_true(lambda: (found := self.json(topic)) is not None and check(found), timeout)
        return self.json(topic) if ok else None

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=10)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
