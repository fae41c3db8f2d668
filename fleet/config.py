"""One host's data, validated (fleet/data.py makes it; fleet/render.py and the steps read it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HostConfig:
    """One host's data, validated."""

    host: str
    ups_name: str
    scan_interval: str  # as the env file says it (the agent's own parser accepted it)
    settle_time: str
    tz: str
    debug: bool
    simulate: bool
    nut_port: int
    nut_listen: str
    image: str
    image_source: str
    install_docker: bool
    project_dir: str
    monuser_password: str | None = field(repr=False)
    admin_password: str | None = field(repr=False)
    devices: tuple[dict[str, Any], ...]
    nut_source: str = "tarball"

    @property
    def secrets(self) -> dict[str, str]:
        """Docker secrets file name -> content (only the passwords given)."""
        out = {}
        if self.monuser_password is not None:
            out["nut_monuser_password"] = self.monuser_password
        if self.admin_password is not None:
            out["nut_admin_password"] = self.admin_password
        return out

    @property
    def env(self) -> dict[str, str]:
        """The container's environment (no secret ever: those are files)."""
        return {
            "UPS_NAME": self.ups_name,
            "SCAN_INTERVAL": self.scan_interval,
            "SETTLE_TIME": self.settle_time,
            "TZ": self.tz,
            "DEBUG": "1" if self.debug else "0",
            "SIMULATE": "1" if self.simulate else "0",
        }
