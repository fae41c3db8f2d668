"""Starting the outputs the settings switch on: /metrics (METRICS_LISTEN), MQTT (MQTT_URL)
and notifications (NOTIFY_URLS).

Each output's module is imported only when its setting is on. Why: prometheus_client and
paho-mqtt cost memory, paid only when used (the agent's RSS at rest is a target). An
output that cannot be loaded or started is logged (`<output>.failed`) and the agent goes
on: no output is ever a reason to stop serving NUT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from reconcile import events, logfmt
from reconcile.settings import Settings
from reconcile.userconfig import UserConfig


class Output(Protocol):
    """A started output: an events consumer (quick: it only hands work to its own thread
    or process) that can be stopped at the agent's stop."""

    def consume(self, event: events.Event) -> None: ...

    def stop(self) -> None: ...


AdminLogin = Callable[[], "tuple[str, str] | None"]


def start(settings: Settings, user: UserConfig, upsd: tuple[str, int], admin_login: AdminLogin) -> list[Output]:
    """Start what the settings switch on, each subscribed to the event stream."""
    started: list[Output] = []
    if settings.notify is not None:
        schemes = settings.notify.schemes
        _guarded("notify", schemes, lambda: _notify(settings, user, upsd), started)
    if settings.metrics_listen is not None:
        listen = settings.metrics_listen
        _guarded("metrics", f"{listen[0]}:{listen[1]}", lambda: _metrics(listen, upsd), started)
    if settings.mqtt is not None:
        mqtt_config = settings.mqtt
        _guarded("mqtt", mqtt_config.where, lambda: _mqtt(settings, upsd, admin_login), started)
    for output in started:
        events.subscribe(output.consume)
    return started


def _guarded(name: str, where: str, starter: Callable[[], Output | None], started: list[Output]) -> None:
    try:
        output = starter()
    except Exception as exc:  # noqa: BLE001 - an output must never stop the agent
        logfmt.error(f"{name}.failed", at=where, error=f"{type(exc).__name__}: {exc}")
        return
    if output is not None:
        started.append(output)


def _metrics(listen: tuple[str, int], upsd: tuple[str, int]) -> Output | None:
    from reconcile.outputs import metrics

    return metrics.serve(listen, upsd)


def _notify(settings: Settings, user: UserConfig, upsd: tuple[str, int]) -> Output:
    from reconcile.outputs import notify
    from reconcile.outputs.notices import Policy

    assert settings.notify is not None
    policy = Policy(deadtime=user.deadtime, off_delay=user.ups_off_delay)
    return notify.start(settings.notify, settings.host_name, upsd, policy, settings.run_user, settings.confpath)


def _mqtt(settings: Settings, upsd: tuple[str, int], admin_login: AdminLogin) -> Output:
    from reconcile.outputs import mqtt

    assert settings.mqtt is not None
    return mqtt.start(settings.mqtt, settings.host_name, upsd, admin_login)
