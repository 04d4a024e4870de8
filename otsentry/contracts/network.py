"""Wire vocabulary shared by the decoders, the feature windows and the simulator: TCP flag bits and the names of
IP transports as records spell them."""

from __future__ import annotations

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

# IP protocol number -> the ``transport`` of FlowEvents and flow windows; other numbers are spelled as digits.
IP_TRANSPORTS = {6: "tcp", 17: "udp", 1: "icmp", 2: "igmp", 58: "icmp6"}


def transport_name(proto: int) -> str:
    """The record spelling of IP protocol ``proto`` ("tcp", "udp", ... or its number)."""
    return IP_TRANSPORTS.get(proto, str(proto))


__all__ = ["ACK", "FIN", "IP_TRANSPORTS", "PSH", "RST", "SYN", "URG", "transport_name"]
