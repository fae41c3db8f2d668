"""MQTT with Home Assistant discovery (MQTT_URL). Being written: see issue 15."""

from __future__ import annotations

from collections.abc import Callable

from reconcile import events
from reconcile.settings import Mqtt


class Output:
    def consume(self, event: events.Event) -> None:
        pass

    def stop(self) -> None:
        pass


def start(
    config: Mqtt, host_name: str, upsd: tuple[str, int], admin_login: Callable[[], tuple[str, str] | None]
) -> Output:
    raise NotImplementedError("MQTT is not built yet")
