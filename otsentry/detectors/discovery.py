"""Discovery chatter: multicast, broadcast and link-local traffic every ordinary host sends.

IGMP and MLD reports, IPv6 neighbour discovery, mDNS, LLMNR, SSDP, WS-Discovery, NetBIOS name service and DHCP go
to group or broadcast addresses. A group address is not a host, so it is never a "new talker", and a host
announcing itself to a group is not opening a "new service". What still alerts: a new *unicast* host, whatever it
sends (a stranger's mDNS is how it shows up), except the unspecified and link-local addresses hosts use before they
have one (DHCP's 0.0.0.0, an IPv6 fe80:: address), which only ever appear as discovery sources.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from otsentry.records import FeatureWindow

__all__ = ["DISCOVERY_PORTS", "is_discovery", "is_group", "is_provisional"]

# UDP ports of the discovery protocols (a broadcast to x.x.x.255 on one of them is discovery: the sensor does not
# know the netmask, so a subnet broadcast is recognised by its port).
DISCOVERY_PORTS = frozenset({67, 68, 137, 138, 546, 547, 1900, 3702, 5353, 5355})


@lru_cache(maxsize=65536)
def is_group(ip: str) -> bool:
    """Multicast or broadcast (255.255.255.255): an address no single host owns."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.is_multicast or (addr.version == 4 and addr == ipaddress.IPv4Address("255.255.255.255"))


@lru_cache(maxsize=65536)
def is_provisional(ip: str) -> bool:
    """Unspecified or link-local: what a host uses before (or beside) its real address."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.is_unspecified or addr.is_link_local


def _subnet_broadcast(ip: str) -> bool:
    return ip.count(".") == 3 and ip.endswith(".255")


def is_discovery(w: FeatureWindow) -> bool:
    """A flow window of discovery chatter: to a group address, or a subnet broadcast on a discovery port."""
    if w.kind != "flow":
        return False
    if is_group(w.server_ip):
        return True
    return w.transport == "udp" and w.port in DISCOVERY_PORTS and _subnet_broadcast(w.server_ip)
