"""Frame builders: Ethernet II (+802.1Q), Linux SLL, raw IP; IPv4/IPv6; TCP/UDP with correct checksums.

Two layers: plain functions (``ethernet``, ``ipv4``, ``tcp``...) for crafting single odd packets in tests, and
``Direction``, which precomputes everything constant for one direction of a conversation so that the generator
can build a million frames in seconds.

Checksums use the fact that the ones'-complement sum of 16-bit words equals the big-endian integer modulo
0xFFFF (2**16 == 1 mod 0xFFFF), which turns a per-word loop into one ``int.from_bytes``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Direction", "ETH_IPV4", "ETH_IPV6", "ETH_VLAN", "LINKTYPES", "LINK_ETHERNET", "LINK_RAW", "LINK_SLL",
    "Link", "PROTO_TCP", "PROTO_UDP", "SLL_BROADCAST", "SLL_HOST", "SLL_MULTICAST", "SLL_OTHERHOST", "SLL_OUTGOING",
    "checksum", "ethernet", "ip_bytes", "ipv4", "ipv6", "linux_sll", "mac_bytes", "tcp", "udp"]

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100
PROTO_TCP = 6
PROTO_UDP = 17


LINK_ETHERNET = "ethernet"
LINK_SLL = "sll"
LINK_RAW = "raw"
LINKTYPES = {LINK_ETHERNET: 1, LINK_RAW: 101, LINK_SLL: 113}

# SLL packet types: to us, broadcast, multicast, to someone else (what a sniffer sees), sent by us.
SLL_HOST, SLL_BROADCAST, SLL_MULTICAST, SLL_OTHERHOST, SLL_OUTGOING = 0, 1, 2, 3, 4


def ip_bytes(ip: str | bytes) -> bytes:
    """4 or 16 address bytes from text (or bytes, returned unchanged)."""
    return ip if isinstance(ip, bytes) else ipaddress.ip_address(ip).packed


def mac_bytes(mac: str | bytes) -> bytes:
    """6 bytes from ``aa:bb:cc:dd:ee:ff`` (or bytes, returned unchanged)."""
    if isinstance(mac, bytes):
        return mac
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"bad MAC address {mac!r}")
    return raw


def _fold(total: int) -> int:
    """Ones'-complement checksum field from a sum congruent (mod 0xFFFF) to the words' sum of non-zero data."""
    r = total % 0xFFFF
    return 0xFFFF - r if r else 0


def checksum(data: bytes, initial: int = 0) -> int:
    """Internet checksum (RFC 1071) of ``data``; ``initial`` is a partial sum of preceding, even-aligned words."""
    if len(data) & 1:
        data += b"\0"
    total = initial + int.from_bytes(data, "big")
    return _fold(total) if total else 0xFFFF


def _pseudo_sum(src: bytes, dst: bytes, proto: int) -> int:
    """Pseudo-header words (addresses + protocol) whose sum is congruent to the real one; length is added later."""
    return int.from_bytes(src, "big") + int.from_bytes(dst, "big") + proto


def ethernet(dst: str | bytes, src: str | bytes, ethertype: int, payload: bytes, vlans: Sequence[int] = ()) -> bytes:
    """Ethernet II frame; ``vlans`` are 802.1Q tag control values (outer first), each adds a 0x8100 tag."""
    head = mac_bytes(dst) + mac_bytes(src)
    for tci in vlans:
        head += struct.pack("!HH", ETH_VLAN, tci)
    return head + struct.pack("!H", ethertype) + payload


def linux_sll(ethertype: int, payload: bytes, src: str | bytes = b"\0" * 6, packet_type: int = SLL_HOST) -> bytes:
    """Linux cooked capture (v1) header, what ``tcpdump -i any`` writes."""
    return struct.pack("!HHH", packet_type, 1, 6) + mac_bytes(src) + b"\0\0" + struct.pack("!H", ethertype) + payload


def ipv4(
    src: str | bytes,
    dst: str | bytes,
    proto: int,
    payload: bytes,
    ident: int = 0,
    ttl: int = 64,
    tos: int = 0,
    dont_fragment: bool = True,
) -> bytes:
    """IPv4 packet (no options) with total length and header checksum filled in."""
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, tos, 20 + len(payload), ident & 0xFFFF, 0x4000 if dont_fragment else 0,
        ttl, proto, 0, ip_bytes(src), ip_bytes(dst),
    )
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def ipv6(
    src: str | bytes,
    dst: str | bytes,
    next_header: int,
    payload: bytes,
    hop_limit: int = 64,
    flow_label: int = 0,
    traffic_class: int = 0,
) -> bytes:
    """IPv6 packet without extension headers."""
    first = (6 << 28) | (traffic_class << 20) | (flow_label & 0xFFFFF)
    return struct.pack("!IHBB", first, len(payload), next_header, hop_limit) + ip_bytes(src) + ip_bytes(dst) + payload


def tcp(
    src_ip: str | bytes,
    dst_ip: str | bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    window: int = 64240,
    options: bytes = b"",
    urgent: int = 0,
) -> bytes:
    """TCP segment (header + payload) with the checksum over the IPv4 or IPv6 pseudo-header."""
    if len(options) % 4:
        options += b"\0" * (4 - len(options) % 4)
    offset = (20 + len(options)) // 4
    header = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, offset << 4, flags, window, 0, urgent
    ) + options
    seg = header + payload
    pseudo = _pseudo_sum(ip_bytes(src_ip), ip_bytes(dst_ip), PROTO_TCP) + len(seg)
    return seg[:16] + struct.pack("!H", checksum(seg, pseudo)) + seg[18:]


def udp(src_ip: str | bytes, dst_ip: str | bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """UDP datagram with its checksum (0xFFFF stands for a computed zero, which would mean "no checksum")."""
    length = 8 + len(payload)
    dgram = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = checksum(dgram, _pseudo_sum(ip_bytes(src_ip), ip_bytes(dst_ip), PROTO_UDP) + length) or 0xFFFF
    return dgram[:6] + struct.pack("!H", csum) + dgram[8:]


@dataclass(frozen=True, slots=True)
class Link:
    """How IP packets travel between two hosts on the capture: link kind, MACs and 802.1Q tags."""

    src_mac: str = "02:00:00:00:00:01"
    dst_mac: str = "02:00:00:00:00:02"
    kind: str = LINK_ETHERNET
    vlans: tuple[int, ...] = ()

    @property
    def linktype(self) -> int:
        return LINKTYPES[self.kind]

    def reverse(self) -> "Link":
        return Link(self.dst_mac, self.src_mac, self.kind, self.vlans)

    def prefix(self, ethertype: int) -> bytes:
        """The constant bytes put before every IP packet of this ethertype."""
        if self.kind == LINK_ETHERNET:
            return ethernet(self.dst_mac, self.src_mac, ethertype, b"", self.vlans)
        if self.kind == LINK_SLL:
            return linux_sll(ethertype, b"", self.src_mac)
        if self.kind == LINK_RAW:
            return b""
        raise ValueError(f"unknown link kind {self.kind!r} (expected one of {', '.join(LINKTYPES)})")


_TCP_HDR = struct.Struct("!HHIIBBHHH")
_IP4_HDR = struct.Struct("!BBHHHBBH4s4s")
_IP6_HDR = struct.Struct("!IHBB")


class Direction:
    """One direction of a TCP or UDP conversation with every constant header part precomputed (the fast path)."""

    __slots__ = ("src", "dst", "sport", "dport", "ttl", "_v6", "_prefix", "_ip_const", "_pseudo_tcp",
                 "_pseudo_udp", "_udp_ports")

    def __init__(self, src_ip: str, dst_ip: str, sport: int, dport: int, link: Link, ttl: int = 64) -> None:
        self.src, self.dst = ip_bytes(src_ip), ip_bytes(dst_ip)
        if len(self.src) != len(self.dst):
            raise ValueError(f"address family mismatch: {src_ip} -> {dst_ip}")
        self.sport, self.dport, self.ttl = sport, dport, ttl
        self._v6 = len(self.src) == 16
        self._prefix = link.prefix(ETH_IPV6 if self._v6 else ETH_IPV4)
        # IPv4 header words that never change: version/ihl/tos, flags (DF), ttl/proto, addresses.
        self._ip_const = 0x4500 + 0x4000 + (ttl << 8) + int.from_bytes(self.src + self.dst, "big")
        self._pseudo_tcp = _pseudo_sum(self.src, self.dst, PROTO_TCP) + (sport << 16) + dport
        self._pseudo_udp = _pseudo_sum(self.src, self.dst, PROTO_UDP)
        self._udp_ports = struct.pack("!HH", sport, dport)

    def _ip(self, proto: int, length: int, ident: int) -> bytes:
        if self._v6:
            return _IP6_HDR.pack(0x60000000, length, proto, self.ttl) + self.src + self.dst
        total = 20 + length
        ident &= 0xFFFF
        csum = _fold(self._ip_const + proto + total + ident)
        return _IP4_HDR.pack(0x45, 0, total, ident, 0x4000, self.ttl, proto, csum, self.src, self.dst)

    def tcp(self, seq: int, ack: int, flags: int, payload: bytes = b"", window: int = 64240, ident: int = 0,
            options: bytes = b"") -> bytes:
        """A full frame (link + IP + TCP + payload) for one segment; ``options`` must be a multiple of 4 bytes."""
        hlen = 20 + len(options)
        seg_len = hlen + len(payload)
        seq &= 0xFFFFFFFF
        ack &= 0xFFFFFFFF
        word6 = ((hlen // 4) << 12) | flags
        total = self._pseudo_tcp + seg_len + seq + ack + word6 + window
        if options:
            total += int.from_bytes(options, "big")
        if payload:
            total += int.from_bytes(payload + b"\0" if len(payload) & 1 else payload, "big")
        header = _TCP_HDR.pack(self.sport, self.dport, seq, ack, hlen << 2, flags, window, _fold(total), 0)
        return self._prefix + self._ip(PROTO_TCP, seg_len, ident) + header + options + payload

    def udp(self, payload: bytes, ident: int = 0) -> bytes:
        """A full frame for one UDP datagram."""
        length = 8 + len(payload)
        total = self._pseudo_udp + length + int.from_bytes(self._udp_ports, "big") + length
        total += int.from_bytes(payload + b"\0" if len(payload) & 1 else payload, "big")
        csum = _fold(total) or 0xFFFF
        return (self._prefix + self._ip(PROTO_UDP, length, ident) + self._udp_ports
                + struct.pack("!HH", length, csum) + payload)
