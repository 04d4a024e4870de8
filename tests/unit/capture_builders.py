"""Tiny pcap / pcapng / frame builders for tests, written with struct so the reader is checked against the formats'
specifications rather than against itself."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import ip_address

# -- files -------------------------------------------------------------------------------------------------------


def pcap_file(
    records: list[tuple],
    *,
    endian: str = "<",
    nano: bool = False,
    linktype: int = 1,
    snaplen: int = 65535,
) -> bytes:
    """Classic pcap; each record is (ts_ns, data) or (ts_ns, data, wirelen)."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for rec in records:
        ts_ns, data = rec[0], rec[1]
        wirelen = rec[2] if len(rec) > 2 else len(data)
        sec, frac = divmod(ts_ns, 10**9)
        out.append(struct.pack(endian + "IIII", sec, frac if nano else frac // 1000, len(data), wirelen) + data)
    return b"".join(out)


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def block(btype: int, body: bytes, endian: str = "<") -> bytes:
    """A pcapng block: type, total length, body (padded), total length again."""
    body = _pad4(body)
    blen = 12 + len(body)
    return struct.pack(endian + "II", btype, blen) + body + struct.pack(endian + "I", blen)


def option(code: int, value: bytes, endian: str = "<") -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + _pad4(value)


@dataclass
class Iface:
    linktype: int = 1
    tsresol: int | None = None  # if_tsresol byte (None: option absent, i.e. microseconds)
    tsoffset: int | None = None  # if_tsoffset seconds
    snaplen: int = 0


@dataclass
class Section:
    endian: str = "<"
    interfaces: list[Iface] = field(default_factory=lambda: [Iface()])
    blocks: list[bytes] = field(default_factory=list)  # built with the helpers below, in this section's endian


def shb(endian: str = "<", options: bytes = b"") -> bytes:
    return block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1) + options, endian)


def idb(iface: Iface, endian: str = "<") -> bytes:
    opts = b""
    if iface.tsresol is not None:
        opts += option(9, bytes([iface.tsresol]), endian)
    if iface.tsoffset is not None:
        opts += option(14, struct.pack(endian + "q", iface.tsoffset), endian)
    if opts:
        opts += option(0, b"", endian)
    return block(1, struct.pack(endian + "HHI", iface.linktype, 0, iface.snaplen) + opts, endian)


def epb(ifid: int, ticks: int, data: bytes, endian: str = "<", wirelen: int | None = None, opts: bytes = b"") -> bytes:
    head = struct.pack(endian + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wirelen or len(data))
    return block(6, head + _pad4(data) + opts, endian)


def pb(ifid: int, ticks: int, data: bytes, endian: str = "<") -> bytes:
    head = struct.pack(endian + "HHIIII", ifid, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
    return block(2, head + data, endian)


def spb(data: bytes, endian: str = "<", wirelen: int | None = None) -> bytes:
    return block(3, struct.pack(endian + "I", wirelen or len(data)) + data, endian)


def nrb(endian: str = "<") -> bytes:
    record = struct.pack(endian + "HH", 1, 14) + bytes([10, 0, 0, 1]) + b"plc-1.local\0"
    return block(4, _pad4(record) + struct.pack(endian + "HH", 0, 0), endian)


def isb(endian: str = "<") -> bytes:
    return block(5, struct.pack(endian + "III", 0, 0, 0), endian)


def custom(endian: str = "<") -> bytes:
    return block(0x00000BAD, struct.pack(endian + "I", 32473) + b"opaque", endian)


def pcapng_file(sections: list[Section]) -> bytes:
    out = []
    for s in sections:
        out.append(shb(s.endian))
        out.extend(idb(i, s.endian) for i in s.interfaces)
        out.extend(s.blocks)
    return b"".join(out)


# -- frames ------------------------------------------------------------------------------------------------------
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def ether(payload: bytes, ethertype: int = 0x0800, vlans: tuple[tuple[int, int], ...] = ()) -> bytes:
    """Ethernet II; ``vlans`` is a sequence of (tpid, vid), outermost first."""
    tags = b"".join(struct.pack(">HH", tpid, vid) for tpid, vid in vlans)
    return MAC_A + MAC_B + tags + struct.pack(">H", ethertype) + payload


def sll(payload: bytes, proto: int = 0x0800) -> bytes:
    return struct.pack(">HHH8sH", 0, 1, 6, MAC_A + b"\0\0", proto) + payload


def sll2(payload: bytes, proto: int = 0x0800) -> bytes:
    return struct.pack(">HHIHBB8s", proto, 0, 2, 1, 0, 6, MAC_A + b"\0\0") + payload


def null_loop(payload: bytes, af: int = 2, endian: str = "<") -> bytes:
    return struct.pack(endian + "I", af) + payload


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    options: bytes = b"",
    frag: int = 0x4000,
    total_length: int | None = None,
) -> bytes:
    ihl = 5 + len(_pad4(options)) // 4
    tot = ihl * 4 + len(payload) if total_length is None else total_length
    head = struct.pack(
        ">BBHHHBBH4s4s", 0x40 | ihl, 0, tot, 1, frag, 64, proto, 0, ip_address(src).packed, ip_address(dst).packed
    )
    return head + _pad4(options) + payload


def ipv6(src: str, dst: str, nh: int, payload: bytes, *, payload_length: int | None = None) -> bytes:
    plen = len(payload) if payload_length is None else payload_length
    head = struct.pack(">IHBB16s16s", 0x60000000, plen, nh, 64, ip_address(src).packed, ip_address(dst).packed)
    return head + payload


def ipv6_opts(nh: int, body: bytes = b"") -> bytes:
    """Hop-by-hop / routing / destination-options header (generic layout, padded to 8 bytes)."""
    raw = bytes([nh, 0]) + body
    raw += bytes(-len(raw) % 8)
    return bytes([nh, len(raw) // 8 - 1]) + raw[2:]


def ipv6_frag(nh: int, offset: int = 0, more: bool = False, ident: int = 7) -> bytes:
    return struct.pack(">BBHI", nh, 0, (offset << 3) | int(more), ident)


def tcp(
    sport: int,
    dport: int,
    payload: bytes = b"",
    *,
    seq: int = 1000,
    ack: int = 2000,
    flags: int = 0x18,
    options: bytes = b"",
) -> bytes:
    options = _pad4(options)
    doff = (20 + len(options)) // 4
    return struct.pack(">HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 8192, 0, 0) + options + payload


def udp(sport: int, dport: int, payload: bytes = b"", *, length: int | None = None) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload) if length is None else length, 0) + payload


def modbus_read(tid: int = 1) -> bytes:
    """A small Modbus/TCP read-holding-registers request, as realistic TCP payload."""
    return struct.pack(">HHHBBHH", tid, 0, 6, 1, 3, 0, 10)
