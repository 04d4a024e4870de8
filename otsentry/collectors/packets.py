"""Link / network / transport decoding of a whole ``Chunk`` at once, as numpy columns.

Why columns: at >= 1M packets/s there is no budget for a Python object per packet. Layer offsets are computed with
numpy gathers for the common layouts (Ethernet with 0-2 VLAN tags, Linux SLL/SLL2, raw IP; IPv4 with or without
options; IPv6 without extension headers). The rare rest (IPv6 extension headers, deeper VLAN stacks, BSD
loopback) goes through ``decode_packet_py``, a per-packet pure-Python decoder with the same semantics, which is
also the reference the vectorised path is tested against.

Payload columns describe the bytes after the deepest header parsed: the TCP/UDP payload when ``l4_ok``, otherwise
the IP payload when ``ipver`` is set, otherwise nothing (``payload_len`` 0 at the start of the packet).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import NamedTuple

import numpy as np

from otsentry.collectors.chunks import Chunk, view_as

__all__ = ["ALL", "COLUMNS", "ETHERLIKE", "ETH_IPV4", "ETH_IPV6", "IPV6_AH", "IPV6_EXT", "IPV6_FRAG", "LOOPBACK",
    "MAX_VLAN_TAGS", "NOT_IP", "PacketFields", "Packets", "RAW_IP", "V4_MAPPED", "VLAN_TPIDS", "addr_from_str",
    "addr_to_str", "decode_packet_py", "decode_packets", "network_offset"]

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)  # 802.1Q, 802.1ad (QinQ), and the pre-standard QinQ tag
MAX_VLAN_TAGS = 8
IPV6_EXT = (0, 43, 60, 135, 139, 140, 253, 254)  # hop-by-hop, routing, dest-options, mobility, HIP, shim6, tests
IPV6_AH, IPV6_FRAG = 51, 44
V4_MAPPED = 0xFFFF << 32  # ::ffff:a.b.c.d lives in the low 64 bits
ETHERLIKE = {1: (14, 12), 113: (16, 14), 276: (20, 0)}  # linktype -> (header length, ethertype offset)
RAW_IP = (101, 12, 14)  # LINKTYPE_RAW and the DLT_RAW values some writers put in files
LOOPBACK = (0, 108)  # BSD null (host byte order) and OpenBSD loop (network byte order)
_BSD_AF_INET6 = (24, 28, 30)
_REACH = 128  # the vectorised path reads at most this far into a packet; closer to the buffer's end -> Python path
_BE16, _BE32 = struct.Struct(">H").unpack_from, struct.Struct(">I").unpack_from


class PacketFields(NamedTuple):
    """One packet decoded by ``decode_packet_py``; ``payload_off`` is relative to the packet start."""

    ipver: int = 0
    src_hi: int = 0
    src_lo: int = 0
    dst_hi: int = 0
    dst_lo: int = 0
    proto: int = 0
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0
    seq: int = 0
    ack: int = 0
    payload_off: int = 0
    payload_len: int = 0
    payload_wire_len: int = 0
    l4_ok: bool = False


NOT_IP = PacketFields()

COLUMNS: dict[str, type] = {
    "ipver": np.uint8,
    "src_hi": np.uint64,
    "src_lo": np.uint64,
    "dst_hi": np.uint64,
    "dst_lo": np.uint64,
    "proto": np.uint8,
    "sport": np.uint16,
    "dport": np.uint16,
    "tcp_flags": np.uint8,
    "seq": np.uint32,
    "ack": np.uint32,
    "payload_off": np.int64,
    "payload_len": np.int32,
    "payload_wire_len": np.int32,
    "l4_ok": np.bool_,
}


@dataclass(frozen=True, slots=True, eq=False)
class Packets:
    """Decoded packets of one chunk: equal-length numpy columns (offsets index ``Chunk.buf``)."""

    frame: np.ndarray
    ts_ns: np.ndarray
    ipver: np.ndarray
    src_hi: np.ndarray
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    proto: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    tcp_flags: np.ndarray
    seq: np.ndarray
    ack: np.ndarray
    payload_off: np.ndarray
    payload_len: np.ndarray
    payload_wire_len: np.ndarray
    wirelen: np.ndarray
    l4_ok: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)


@lru_cache(maxsize=1 << 16)
def addr_to_str(hi: int, lo: int) -> str:
    """128-bit key -> text: IPv4-mapped addresses as a dotted quad, the rest as compressed IPv6."""
    hi, lo = int(hi), int(lo)
    if hi == 0 and lo >> 32 == 0xFFFF:
        return str(IPv4Address(lo & 0xFFFFFFFF))
    return IPv6Address((hi << 64) | lo).compressed


def addr_from_str(text: str) -> tuple[int, int]:
    """Text -> the (hi, lo) key used in the columns (IPv4 becomes ::ffff:a.b.c.d)."""
    addr = ip_address(text)
    value = V4_MAPPED | int(addr) if addr.version == 4 else int(addr)
    return value >> 64, value & 0xFFFFFFFFFFFFFFFF


# -- reference decoder, one packet in pure Python ----------------------------------------------------------------
def _link_py(data: bytes, linktype: int) -> tuple[int, int]:
    """(ethertype or 0, offset of the network header)."""
    cap = len(data)
    if linktype in ETHERLIKE:
        hlen, etpos = ETHERLIKE[linktype]
        if cap < hlen:
            return 0, 0
        et, l3 = _BE16(data, etpos)[0], hlen
    elif linktype in RAW_IP or linktype == 228 or linktype == 229:
        if cap < 1:
            return 0, 0
        version = {228: 4, 229: 6}.get(linktype, data[0] >> 4)
        return {4: ETH_IPV4, 6: ETH_IPV6}.get(version, 0), 0
    elif linktype in LOOPBACK:
        if cap < 4:
            return 0, 0
        le, be = int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big")
        af = le if linktype == 0 and (le == 2 or le in _BSD_AF_INET6) else be
        return (ETH_IPV4 if af == 2 else ETH_IPV6 if af in _BSD_AF_INET6 else 0), 4
    else:
        return 0, 0
    for _ in range(MAX_VLAN_TAGS):
        if et not in VLAN_TPIDS:
            return et, l3
        if cap < l3 + 4:
            return 0, 0
        et, l3 = _BE16(data, l3 + 2)[0], l3 + 4
    return (0, 0) if et in VLAN_TPIDS else (et, l3)


def _l4_py(
    data: bytes, ip: tuple[int, int, int, int, int], proto: int, l4: int, ip_end: int, may: bool
) -> PacketFields:
    """Transport header at ``l4``; the IP datagram ends at ``ip_end`` on the wire (maybe past the capture)."""
    cap_end = min(ip_end, len(data))
    if may and proto == 6 and cap_end >= l4 + 20:
        sport, dport, seq, ack = struct.unpack_from(">HHII", data, l4)
        doff, flags = (data[l4 + 12] >> 4) * 4, data[l4 + 13]
        if doff >= 20 and l4 + doff <= cap_end:
            pay = l4 + doff
            return PacketFields(*ip, proto, sport, dport, flags, seq, ack, pay, cap_end - pay, ip_end - pay, True)
        return PacketFields(*ip, proto, sport, dport, flags, seq, ack, l4, cap_end - l4, ip_end - l4, False)
    if may and proto == 17 and cap_end >= l4 + 8:
        sport, dport, ulen = struct.unpack_from(">HHH", data, l4)
        wire = ulen - 8 if 8 <= ulen <= ip_end - l4 else ip_end - l4 - 8
        pay = l4 + 8
        return PacketFields(*ip, proto, sport, dport, 0, 0, 0, pay, min(pay + wire, cap_end) - pay, wire, True)
    return PacketFields(*ip, proto, 0, 0, 0, 0, 0, l4, max(cap_end - l4, 0), max(ip_end - l4, 0), False)


def _ipv4_py(data: bytes, l3: int, frame_end: int) -> PacketFields:
    cap = len(data)
    if cap < l3 + 20 or data[l3] >> 4 != 4 or data[l3] & 15 < 5:
        return NOT_IP
    ihl = (data[l3] & 15) * 4
    tot, frag = _BE16(data, l3 + 2)[0], _BE16(data, l3 + 6)[0]
    tot = tot or cap - l3  # 0 = segmentation offload on the capturing host: trust the capture
    ip = (4, 0, V4_MAPPED | _BE32(data, l3 + 12)[0], 0, V4_MAPPED | _BE32(data, l3 + 16)[0])
    return _l4_py(data, ip, data[l3 + 9], l3 + ihl, min(l3 + tot, frame_end), frag & 0x3FFF == 0)


def _ipv6_py(data: bytes, l3: int, frame_end: int) -> PacketFields:
    cap = len(data)
    if cap < l3 + 40 or data[l3] >> 4 != 6:
        return NOT_IP
    plen = _BE16(data, l3 + 4)[0] or cap - l3 - 40  # 0 = jumbogram or offload: trust the capture
    ip = (6, *struct.unpack_from(">QQQQ", data, l3 + 8))
    nh, pos, ip_end, may = data[l3 + 6], l3 + 40, min(l3 + 40 + plen, frame_end), True
    cap_end = min(ip_end, cap)
    for _ in range(16):
        if nh in IPV6_EXT or nh == IPV6_AH:
            if pos + 2 > cap_end:
                may = False
                break
            size = (data[pos + 1] + 2) * 4 if nh == IPV6_AH else (data[pos + 1] + 1) * 8
            nh, pos = data[pos], pos + size
        elif nh == IPV6_FRAG:
            if pos + 8 > cap_end:
                may = False
                break
            # offset or more-fragments set: a real fragment. An atomic fragment is a whole packet (RFC 6946).
            may = may and _BE16(data, pos + 2)[0] & 0xFFF9 == 0
            nh, pos = data[pos], pos + 8
        else:
            break
    else:
        may = False
    return _l4_py(data, ip, nh, pos, ip_end, may and pos <= ip_end)


def network_offset(data: bytes, linktype: int) -> int | None:
    """Where the IPv4/IPv6 header of a captured frame starts (None: not IP)."""
    et, l3 = _link_py(data, linktype)
    return l3 if et in (ETH_IPV4, ETH_IPV6) else None


def decode_packet_py(data: bytes, linktype: int, wirelen: int | None = None) -> PacketFields:
    """Decode one packet in pure Python: the slow path for rare layouts, and the reference for tests.

    ``wirelen`` (default: the captured length) bounds the IP datagram as Wireshark does: an IP length that claims
    more than the frame carried on the wire is a lie of the sender, not a cut made by the capture.
    """
    et, l3 = _link_py(data, linktype)
    frame_end = max(len(data), wirelen or 0)
    if et == ETH_IPV4:
        return _ipv4_py(data, l3, frame_end)
    if et == ETH_IPV6:
        return _ipv6_py(data, l3, frame_end)
    return NOT_IP


# -- vectorised decoder ------------------------------------------------------------------------------------------
# Row selections are index arrays or prefix slices (free views, plain copies): rows near the buffer's end go to the
# Python path, so a chunk where every packet has the same layout stays on slices and pays only for byte gathers.
ALL = slice(None)


def _narrow(rows: slice | np.ndarray, mask: np.ndarray) -> slice | np.ndarray:
    """The rows where ``mask`` (aligned with ``rows``) holds; a prefix of a prefix stays a slice."""
    if mask.all():
        return rows
    k = int(mask.argmin())
    if not mask[k:].any():
        return slice(0, k) if isinstance(rows, slice) else rows[:k]
    keep = np.flatnonzero(mask)
    return keep if isinstance(rows, slice) else rows[keep]


def _compose(outer: slice | np.ndarray, inner: slice | np.ndarray) -> slice | np.ndarray:
    """Global rows of ``inner``, a selection among ``outer`` (slices here always start at row 0)."""
    if isinstance(outer, slice):
        return outer if isinstance(inner, slice) and inner.stop is None else inner
    return outer[inner]


def _size(rows: slice | np.ndarray, n: int) -> int:
    return len(range(*rows.indices(n))) if isinstance(rows, slice) else len(rows)


def _link_np(u8: np.ndarray, b16: np.ndarray, off: np.ndarray, cap: np.ndarray, lt: np.ndarray):
    """Per-record ethertype (0: not IP), network-header offset, and the rows left to the Python decoder.

    Records that start within ``_REACH`` bytes of the buffer's end also go to the Python decoder, so that
    fixed-offset gathers never leave the buffer (padding it would copy the whole chunk).
    """
    n = len(off)
    et = np.zeros(n, np.int64)
    l3 = np.zeros(n, np.int64)
    slow = off > len(u8) - _REACH
    codes = lt[:1] if n and lt.min() == lt.max() else np.unique(lt)
    for code in codes.tolist():
        rows = _narrow(ALL, ~slow) if len(codes) == 1 else np.flatnonzero((lt == code) & ~slow)
        if code in ETHERLIKE:
            hlen, etpos = ETHERLIKE[code]
            rows = _narrow(rows, cap[rows] >= hlen)
            et[rows], l3[rows] = b16[off[rows] + etpos], hlen
        elif code in RAW_IP:
            rows = _narrow(rows, cap[rows] >= 1)
            version = u8[off[rows]] >> 4
            et[rows] = np.where(version == 4, ETH_IPV4, np.where(version == 6, ETH_IPV6, 0))
        elif code == 228 or code == 229:
            et[_narrow(rows, cap[rows] >= 1)] = ETH_IPV4 if code == 228 else ETH_IPV6
        elif code in LOOPBACK:
            slow[rows] = True
    for _ in range(2):  # up to two VLAN tags here; deeper stacks go to the Python decoder
        rows = np.flatnonzero((et == VLAN_TPIDS[0]) | (et == VLAN_TPIDS[1]) | (et == VLAN_TPIDS[2]))
        if not len(rows):
            break
        short = cap[rows] < l3[rows] + 4
        et[rows[short]] = 0
        rows = rows[~short]
        et[rows] = b16[off[rows] + l3[rows] + 2]
        l3[rows] += 4
    else:
        slow |= np.isin(et, VLAN_TPIDS)
    return et, l3, slow


class _Views(NamedTuple):
    """The chunk buffer as bytes and as big-endian integers starting at every byte offset."""

    u8: np.ndarray
    b16: np.ndarray
    b32: np.ndarray
    b64: np.ndarray


def _ipv4_np(v: _Views, off, cap, l3, et, out):
    """IPv4 rows whose header is captured and sane; wide gathers read several fields at once."""
    r4 = _narrow(ALL, et == ETH_IPV4)
    r4 = _narrow(r4, cap[r4] >= l3[r4] + 20)
    base = off[r4] + l3[r4]
    w0 = v.b32[base].astype(np.int64)  # version, IHL, TOS, total length
    keep = ((w0 >> 28) == 4) & (((w0 >> 24) & 15) >= 5)
    if not keep.all():
        r4, base, w0 = _narrow(r4, keep), base[keep], w0[keep]
    w6 = v.b32[base + 6].astype(np.int64)  # flags + fragment offset, TTL, protocol
    addrs = v.b64[base + 12].astype(np.uint64)  # source, destination
    out["ipver"][r4] = 4
    out["src_lo"][r4] = (addrs >> np.uint64(32)) | np.uint64(V4_MAPPED)
    out["dst_lo"][r4] = (addrs & np.uint64(0xFFFFFFFF)) | np.uint64(V4_MAPPED)
    tot = w0 & 0xFFFF
    tot = np.where(tot == 0, cap[r4] - l3[r4], tot)  # 0 = segmentation offload on the capturing host
    l4 = l3[r4] + ((w0 >> 24) & 15) * 4
    return r4, ((w6 & 0xFF).astype(np.uint8), l4, l3[r4] + tot, ((w6 >> 16) & 0x3FFF) == 0)


def _ipv6_np(v: _Views, off, cap, l3, et, out, slow):
    """IPv6 rows without extension headers (rows with them are handed to the Python decoder)."""
    r6 = np.flatnonzero(et == ETH_IPV6)
    if not len(r6):  # the usual case: skip a dozen calls on empty arrays
        return r6, (np.empty(0, np.uint8), r6, r6, np.empty(0, np.bool_))
    r6 = r6[cap[r6] >= l3[r6] + 40]
    r6 = r6[(v.u8[off[r6] + l3[r6]] >> 4) == 6]
    nh = v.u8[off[r6] + l3[r6] + 6]
    ext = np.isin(nh, IPV6_EXT + (IPV6_AH, IPV6_FRAG))
    slow[r6[ext]] = True
    r6, nh = r6[~ext], nh[~ext]
    base = off[r6] + l3[r6]
    out["ipver"][r6] = 6
    for name, at in (("src_hi", 8), ("src_lo", 16), ("dst_hi", 24), ("dst_lo", 32)):
        out[name][r6] = v.b64[base + at]
    plen = v.b16[base + 4].astype(np.int64)
    plen = np.where(plen == 0, cap[r6] - l3[r6] - 40, plen)  # jumbogram or offload: trust the capture
    return r6, (nh, l3[r6] + 40, l3[r6] + 40 + plen, np.ones(len(r6), np.bool_))


def _transport_np(v: _Views, off, cap, wirelen, rows, datagrams, out) -> None:
    """TCP/UDP headers and payload columns of IP ``rows``: (protocol, header start, end on the wire, unfragmented)."""
    proto, l4, ip_end, may = datagrams
    out["proto"][rows] = proto
    ip_end = np.minimum(ip_end, np.maximum(wirelen[rows], cap[rows]))  # see decode_packet_py
    cap_end = np.minimum(ip_end, cap[rows])
    pay_off, pay_len, pay_wire = l4.copy(), np.maximum(cap_end - l4, 0), np.maximum(ip_end - l4, 0)
    off_rows = off[rows]

    t = _narrow(ALL, may & (proto == 6) & (cap_end >= l4 + 20))
    t_rows = _compose(rows, t)
    tb = off_rows[t] + l4[t]
    h0 = v.b64[tb].astype(np.int64)  # ports, sequence number (signed is fine: only shifted and masked)
    h1 = v.b64[tb + 8].astype(np.int64)  # acknowledgment number, data offset + flags, window
    out["sport"][t_rows] = (h0 >> 48) & 0xFFFF
    out["dport"][t_rows] = (h0 >> 32) & 0xFFFF
    out["seq"][t_rows] = h0 & 0xFFFFFFFF
    out["ack"][t_rows] = (h1 >> 32) & 0xFFFFFFFF
    out["tcp_flags"][t_rows] = (h1 >> 16) & 0xFF
    doff = ((h1 >> 28) & 15) * 4
    good = (doff >= 20) & (l4[t] + doff <= cap_end[t])
    t, doff = _narrow(t, good), doff[good]
    pay_off[t] = l4[t] + doff
    pay_len[t] = cap_end[t] - pay_off[t]
    pay_wire[t] = ip_end[t] - pay_off[t]
    out["l4_ok"][_compose(rows, t)] = True

    u = np.flatnonzero(may & (proto == 17) & (cap_end >= l4 + 8))
    u_rows = _compose(rows, u)
    ub = off_rows[u] + l4[u]
    ports = v.b32[ub]
    out["sport"][u_rows] = ports >> 16
    out["dport"][u_rows] = ports & 0xFFFF
    ulen = v.b16[ub + 4].astype(np.int64)
    room = ip_end[u] - l4[u]
    wire = np.where((ulen >= 8) & (ulen <= room), ulen - 8, room - 8)
    pay_off[u] = l4[u] + 8
    pay_len[u] = np.minimum(pay_off[u] + wire, cap_end[u]) - pay_off[u]
    pay_wire[u] = wire
    out["l4_ok"][u_rows] = True

    out["payload_off"][rows] = off_rows + pay_off
    out["payload_len"][rows] = pay_len
    out["payload_wire_len"][rows] = pay_wire


def decode_packets(chunk: Chunk) -> Packets:
    """Decode every record of ``chunk`` into columns; garbled or short packets get ipver 0 / l4_ok False."""
    n, buf = len(chunk), chunk.buf
    big = len(buf) >= 8
    v = _Views(np.frombuffer(buf, np.uint8), *(view_as(buf, t) if big else np.zeros(0, t) for t in (">u2", ">u4", ">u8")))
    off, cap = chunk.offset.astype(np.int64, copy=False), chunk.caplen.astype(np.int64, copy=False)
    out = {name: np.zeros(n, dtype) for name, dtype in COLUMNS.items()}
    out["payload_off"][:] = off
    et, l3, slow = _link_np(v.u8, v.b16, off, cap, chunk.linktype)
    r4, v4 = _ipv4_np(v, off, cap, l3, et, out)
    r6, v6 = _ipv6_np(v, off, cap, l3, et, out, slow)
    if not len(r6):
        _transport_np(v, off, cap, chunk.wirelen, r4, v4, out)
    elif not _size(r4, n):
        _transport_np(v, off, cap, chunk.wirelen, r6, v6, out)
    else:
        rows = np.concatenate([np.arange(n)[r4], r6])
        _transport_np(v, off, cap, chunk.wirelen, rows, tuple(np.concatenate(p) for p in zip(v4, v6)), out)

    for i in np.flatnonzero(slow).tolist():  # the rare layouts, one packet at a time
        fields = decode_packet_py(chunk.data(i), int(chunk.linktype[i]), int(chunk.wirelen[i]))
        for name, value in zip(PacketFields._fields, fields):
            out[name][i] = value
        out["payload_off"][i] += off[i]
    return Packets(
        frame=np.arange(chunk.first_frame, chunk.first_frame + n, dtype=np.int64),
        ts_ns=chunk.ts_ns,
        wirelen=chunk.wirelen,
        **out,
    )
