"""This network namespace's default gateways, from the kernel's routing tables
(/proc/net/route, /proc/net/ipv6_route). Why decide/health.py wants them: in a container
on a bridge network, a client on the container's own host (the Pi's upsmon dialling the
published port on 127.0.0.1) reaches upsd through Docker's proxy, from the bridge's
gateway address; LIST CLIENT then lists that address for it.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

ROUTE = Path("/proc/net/route")
ROUTE6 = Path("/proc/net/ipv6_route")
RTF_GATEWAY = 0x2  # <linux/route.h>: the route goes through a gateway


def _read(path: Path) -> list[list[str]]:
    try:
        return [line.split() for line in path.read_text(encoding="ascii", errors="replace").splitlines()]
    except OSError:
        return []  # no such table (no IPv6, no /proc): no gateway from it


def gateways(route: Path = ROUTE, route6: Path = ROUTE6) -> tuple[str, ...]:
    """The default routes' gateway addresses, IPv4 first, each once."""
    found: list[str] = []
    # /proc/net/route: Iface Destination Gateway Flags ...; each address is the kernel's
    # 32-bit word in network order printed as a number: its bytes in this CPU's order.
    for words in _read(route)[1:]:
        try:
            if len(words) >= 4 and words[1] == "00000000" and int(words[3], 16) & RTF_GATEWAY:
                found.append(str(ipaddress.IPv4Address(int(words[2], 16).to_bytes(4, sys.byteorder))))
        except ValueError:
            continue
    # /proc/net/ipv6_route: dest dest_len src src_len next_hop metric refcnt use flags iface.
    for words in _read(route6):
        try:
            if len(words) >= 9 and int(words[0], 16) == 0 and words[1] == "00" and int(words[8], 16) & RTF_GATEWAY:
                found.append(str(ipaddress.IPv6Address(bytes.fromhex(words[4]))))
        except ValueError:
            continue
    return tuple(dict.fromkeys(found))
