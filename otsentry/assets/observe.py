"""What the inventory needs beyond transactions and flows, read from packets: MAC addresses and device identity.

Both are vectorised over a chunk (``decode_packets`` columns): source MAC per source IP on Ethernet-like links, and
FC 43/14 responses that fit in one TCP segment (what devices send: an identification answer is a few dozen bytes).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import numpy as np

from otsentry.collectors.chunks import Chunk
from otsentry.collectors.device_id import FC_ENCAPSULATED, MEI_READ_DEVICE_ID, device_identification
from otsentry.collectors.mbap import HEADER, LENGTH, LENGTH_BASE
from otsentry.collectors.packets import Packets, addr_to_str

__all__ = ["LinkObservations", "observe_chunk"]

ETHERNET = 1
_MAC_AT = 6  # source MAC: bytes 6-11 of an Ethernet header


class LinkObservations:
    """MACs seen per source IP (counted) and the last identity each server gave, over a whole capture."""

    def __init__(self) -> None:
        self.macs: Counter[tuple[str, int]] = Counter()
        self.identity: dict[str, tuple[tuple[str, str], ...]] = {}

    def mac_of(self, ip: str) -> str:
        """The MAC most often seen as the source of ``ip`` ("" when none: not Ethernet, or it never sent)."""
        best = max(((n, mac) for (addr, mac), n in self.macs.items() if addr == ip), default=None)
        return _mac_text(best[1]) if best else ""

    def ips_by_mac(self) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        for ip, mac in self.macs:
            out.setdefault(mac, set()).add(ip)
        return out


def _mac_text(value: int) -> str:
    return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -8, -8))


def observe_chunk(chunk: Chunk, p: Packets, server_ports: Iterable[int], into: LinkObservations) -> None:
    """Add one chunk's MACs and identification answers to ``into``."""
    if not len(p):
        return
    u8 = np.frombuffer(chunk.buf, dtype=np.uint8)
    eth = (chunk.linktype == ETHERNET) & (p.ipver != 0) & (chunk.caplen >= 14)
    rows = np.flatnonzero(eth)
    if len(rows):
        base = chunk.offset[rows] + _MAC_AT
        mac = np.zeros(len(rows), dtype=np.uint64)
        for k in range(6):
            mac = (mac << np.uint64(8)) | u8[base + k].astype(np.uint64)
        keys = np.stack([p.src_hi[rows].astype(np.uint64), p.src_lo[rows].astype(np.uint64), mac], axis=1)
        uniq, counts = np.unique(keys, axis=0, return_counts=True)
        for (hi, lo, m), n in zip(uniq.tolist(), counts.tolist()):
            if m >> 40 & 1:  # group bit: never a source MAC of a real host
                continue
            into.macs[(addr_to_str(hi, lo), int(m))] += int(n)
    pdu_at = HEADER
    ports = np.fromiter(server_ports, dtype=np.int64)
    cand = (p.proto == 6) & np.isin(p.sport, ports) & (p.payload_len >= pdu_at + 7)
    idx = np.flatnonzero(cand)
    if len(idx):
        off = p.payload_off[idx].astype(np.int64)
        hit = (u8[off + pdu_at] == FC_ENCAPSULATED) & (u8[off + pdu_at + 1] == MEI_READ_DEVICE_ID)
        for i in idx[hit].tolist():
            start, size = int(p.payload_off[i]), int(p.payload_len[i])
            adu_end = min(size, LENGTH_BASE + (int(u8[start + LENGTH]) << 8 | int(u8[start + LENGTH + 1])))
            pdu = bytes(u8[start + pdu_at:start + adu_end])
            objects = device_identification(pdu)
            if objects:
                ip = addr_to_str(int(p.src_hi[i]), int(p.src_lo[i]))
                merged = dict(into.identity.get(ip, ()))
                merged.update(objects)
                into.identity[ip] = tuple(merged.items())
