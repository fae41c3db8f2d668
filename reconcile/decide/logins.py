"""Who a login in upsd's LIST CLIENT is: the one place that says where our own upsmon's
login comes from, and how an address is spelled for comparing. `health` (is each expected
secondary logged in?) and the power-cycle gate (has a secondary there at FSD logged out?,
decide/forced.py) both read logins by address: they must agree on which one is ours.
"""

from __future__ import annotations

from reconcile.model import NutConfig
from reconcile.userconfig import canonical_ip


def address(text: str) -> str:
    """One spelling of an address, to compare (upsd lists an IPv4 client of an IPv6 LISTEN
    as ::ffff:a.b.c.d): canonical_ip's; text that is no address, as given (stripped)."""
    return canonical_ip(text) or text.strip()


def own_address(config: NutConfig) -> str:
    """Where upsd sees our upsmon's login come from: the host its MONITOR lines dial
    (`monitor_host`, "host:port" or "[v6]:port"; a wildcard LISTEN already made loopback)."""
    return address(config.monitor_host.rsplit(":", 1)[0])
