"""Evasion transforms of a capture's attack packets: what fragroute does to an IDS, to prove otsentry is not blind.

Each transform rewrites the chosen frames (the attack's, from a scenario's labels) so that a receiving TCP/IP stack
rebuilds the same bytes while a naive sensor does not (Ptacek & Newsham, 1998):

* ``ip_frag8`` / ``ip_frag8_reversed``: the IPv4 datagram as 8-byte fragments, in order / last first;
* ``tcp_reversed``: the TCP payload as three segments delivered last first;
* ``tcp_1byte``: one byte per segment;
* ``tcp_duplicate``: three segments, the middle one sent twice;
* ``tcp_overlap``: two segments overlapping by four bytes, with the same bytes;
* ``tcp_overlap_conflict``: the payload, then four of its bytes sent again with *different* content, then the rest:
  a target keeping the later copy reads other bytes than one keeping the first (otsentry keeps the first and must
  raise ``policy.evasion``).

scapy does the packet surgery (``fragment()`` and field rewrites with checksums recomputed: what it is best at);
the rest of the capture is copied record by record with the project's own reader and writer. Pieces of one frame
get timestamps one microsecond apart, so windows do not change. Frames that carry no TCP payload over IPv4 are
copied unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from otsentry.collectors.capture import open_capture
from otsentry.collectors.packets import network_offset
from otsentry.synth.pcapwriter import PcapWriter

__all__ = ["TRANSFORMS", "CONSISTENT", "evade", "transform_frame"]

TRANSFORMS = ("ip_frag8", "ip_frag8_reversed", "tcp_reversed", "tcp_1byte", "tcp_duplicate", "tcp_overlap",
              "tcp_overlap_conflict")
CONSISTENT = TRANSFORMS[:-1]  # a receiver rebuilds exactly the original bytes from these
FIN = 0x01


def _segment(ip, start: int, data: bytes, last: bool) -> bytes:
    """A copy of the IPv4/TCP packet ``ip`` carrying ``data`` at payload offset ``start``."""
    from scapy.layers.inet import TCP
    from scapy.packet import Raw

    p = ip.copy()
    tcp = p[TCP]
    tcp.seq = (tcp.seq + start) % (1 << 32)
    if not last:
        tcp.flags = int(tcp.flags) & ~FIN  # a FIN belongs after the last byte only
    tcp.remove_payload()
    tcp.add_payload(Raw(data))
    del p.len, p.chksum, tcp.chksum
    return bytes(p)


def _pieces(how: str, payload: bytes) -> list[tuple[int, bytes, bool]]:
    """(offset, bytes, carries the last byte) of each segment, in sending order."""
    n = len(payload)
    if how == "tcp_1byte":
        return [(i, payload[i : i + 1], i == n - 1) for i in range(n)]
    a, b = max(1, n // 3), max(2, 2 * n // 3)
    if how == "tcp_reversed":
        return [(b, payload[b:], True), (a, payload[a:b], False), (0, payload[:a], False)]
    if how == "tcp_duplicate":
        return [(0, payload[:a], False), (a, payload[a:b], False), (a, payload[a:b], False), (b, payload[b:], True)]
    m = n // 2
    if how == "tcp_overlap":
        return [(0, payload[: m + 4], False), (m, payload[m:], True)]
    if how == "tcp_overlap_conflict":
        forged = bytes(x ^ 0x5A for x in payload[m : m + 4])
        return [(0, payload[: m + 4], False), (m, forged, False), (m + 4, payload[m + 4 :], True)]
    raise ValueError(f"unknown TCP transform {how!r}")


def transform_frame(data: bytes, linktype: int, how: str) -> list[bytes]:
    """The frames that replace ``data`` under ``how``; ``[data]`` when the transform does not apply."""
    from scapy.layers.inet import IP, TCP, fragment

    if how not in TRANSFORMS:
        raise ValueError(f"unknown transform {how!r}; choose one of {', '.join(TRANSFORMS)}")
    l3 = network_offset(data, linktype)
    if l3 is None or data[l3] >> 4 != 4:
        return [data]
    total = int.from_bytes(data[l3 + 2 : l3 + 4], "big")  # Ethernet padding after the datagram is not payload
    link, ip = data[:l3], IP(data[l3 : l3 + total] if 20 <= total <= len(data) - l3 else data[l3:])
    if TCP not in ip or ip.frag or ip.flags.MF:
        return [data]
    payload = bytes(ip[TCP].payload)
    if how.startswith("ip_frag"):
        if len(bytes(ip)) <= 28:
            return [data]
        frags = [link + bytes(f) for f in fragment(ip, fragsize=8)]
        return frags[::-1] if how.endswith("reversed") else frags
    if len(payload) < (2 if how != "tcp_overlap_conflict" else 9):
        return [data]
    return [link + _segment(ip, start, piece, last) for start, piece, last in _pieces(how, payload)]


def evade(src: Path, dst: Path, frames: Iterable[int], how: str,
          progress: Callable[[int], None] | None = None) -> dict[int, list[int]]:
    """Copy ``src`` to ``dst`` with ``frames`` (1-based) transformed; returns old frame -> its new frame numbers
    (so that a scenario's labels can follow the packets)."""
    wanted = frozenset(frames)
    mapping: dict[int, list[int]] = {}
    written = 0
    with open_capture(src) as reader, PcapWriter(dst, linktype=1) as writer:
        for chunk in reader.chunks():
            for i in range(len(chunk)):
                frame = chunk.first_frame + i
                data, ts, lt = chunk.data(i), int(chunk.ts_ns[i]), int(chunk.linktype[i])
                if lt != 1:
                    raise ValueError(f"{src}: frame {frame} has link type {lt}; only Ethernet captures are supported")
                out = transform_frame(data, lt, how) if frame in wanted else [data]
                mapping[frame] = list(range(written + 1, written + 1 + len(out)))
                for k, piece in enumerate(out):
                    writer.write(ts + k * 1000, piece)
                written += len(out)
            if progress is not None:
                progress(len(chunk))
    return mapping
