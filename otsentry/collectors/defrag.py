"""IPv4 and IPv6 fragment reassembly: what the PLC's IP layer rebuilds, before TCP and Modbus see it.

Why: a write sent as 8-byte fragments reaches the PLC whole; a sensor that does not reassemble sees no TCP header,
no Modbus, only an odd "flow" to port 0 (fragroute's oldest trick). Policy, written once here:

* fragments of one datagram (same source, destination, protocol and identification) are collected in any order;
  the datagram is complete when the last fragment (more-fragments clear) and every byte before it are in, and it
  is delivered as of the frame of its last fragment, as Wireshark does ("reassembled in frame N");
* overlapping fragments: the bytes seen first win; overlapping bytes that *differ* are counted and noted as an
  evasion attempt (targets resolve overlaps differently, so the sensor cannot know which copy the PLC kept);
* a fragment other than the last carrying fewer than ``tiny_bytes`` is noted too: no real MTU cuts that small;
* pending datagrams expire after ``timeout_s`` of capture time (Linux: 30 s); memory is bounded per source
  host and in total, the oldest datagrams dropped first; a datagram past 65,535 bytes is dropped. Every such
  loss is counted.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, field

from otsentry.collectors.overlap import first_bytes_win

__all__ = ["DefragLimits", "DefragStats", "Defragmenter", "FRAGMENT_OVERLAP_CONFLICT", "Fragment", "IPV6_FRAG",
    "MAX_DATAGRAM", "TINY_FRAGMENT", "parse_fragment"]

IPV6_FRAG = 44
_IPV6_EXT = (0, 43, 60, 135, 139, 140, 253, 254)
MAX_DATAGRAM = 65535
TINY_FRAGMENT = "tiny_fragment"
FRAGMENT_OVERLAP_CONFLICT = "fragment_overlap_conflict"


@dataclass(frozen=True, slots=True)
class DefragLimits:
    timeout_s: float = 30.0
    max_bytes_per_host: int = 1 << 20
    max_bytes_total: int = 32 << 20
    tiny_bytes: int = 64

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.max_bytes_per_host <= 0 or self.max_bytes_total <= 0 or self.tiny_bytes < 0:
            raise ValueError("fragment reassembly limits must be positive")


@dataclass
class DefragStats:
    fragments: int = 0  # fragments seen
    reassembled: int = 0  # datagrams completed
    expired: int = 0  # datagrams dropped incomplete after the timeout (or at the end of the capture)
    dropped: int = 0  # datagrams dropped by the memory bounds or for exceeding 65,535 bytes
    overlaps: int = 0  # fragments overlapping earlier ones with the same bytes
    overlap_conflicts: int = 0  # ... with different bytes
    tiny: int = 0  # non-last fragments under the tiny threshold

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Fragment:
    """One fragment as the IP layer sees it; ``head`` is the part every fragment repeats (IPv4 header; IPv6
    fixed header plus the extension headers before the fragment header), ``nh_at`` where in ``head`` the
    next-header byte to patch is (IPv6), ``proto`` the protocol of the reassembled payload."""

    version: int
    key: tuple
    offset: int
    more: bool
    proto: int
    head: bytes
    nh_at: int
    payload: bytes


@dataclass
class _Pending:
    first_ns: int
    source: bytes
    head: bytes | None = None  # from the offset-0 fragment
    nh_at: int = 0
    proto: int = 0
    total: int | None = None  # payload length, known once the last fragment is in
    pieces: list[tuple[int, bytes]] = field(default_factory=list)  # (offset, bytes), disjoint
    size: int = 0


def parse_fragment(data: bytes, l3: int) -> Fragment | None:
    """The fragment at network offset ``l3`` of a captured frame, or None if it is not a (usable) fragment."""
    if len(data) < l3 + 20:
        return None
    version = data[l3] >> 4
    if version == 4:
        ihl = (data[l3] & 15) * 4
        tot, ident, frag = struct.unpack_from(">HHH", data, l3 + 2)
        if frag & 0x3FFF == 0 or ihl < 20 or tot < ihl:
            return None
        head = data[l3 : l3 + ihl]
        payload = data[l3 + ihl : l3 + tot]
        if len(head) < ihl or len(payload) < tot - ihl:
            return None
        key = (4, data[l3 + 12 : l3 + 20], ident, data[l3 + 9])
        return Fragment(4, key, (frag & 0x1FFF) * 8, bool(frag & 0x2000), data[l3 + 9], head, 0, payload)
    if version != 6 or len(data) < l3 + 40:
        return None
    (plen,) = struct.unpack_from(">H", data, l3 + 4)
    end = l3 + 40 + plen
    nh, pos, nh_at = data[l3 + 6], l3 + 40, 6
    for _ in range(16):
        if nh == IPV6_FRAG:
            if pos + 8 > min(end, len(data)):
                return None
            (off_m, ident) = struct.unpack_from(">HI", data, pos + 2)
            if off_m & 0xFFF9 == 0:
                return None  # an atomic fragment is a whole packet (RFC 6946)
            payload = data[pos + 8 : end]
            if len(payload) < end - pos - 8:
                return None
            key = (6, data[l3 + 8 : l3 + 40], ident, 0)
            return Fragment(6, key, (off_m >> 3) * 8, bool(off_m & 1), data[pos], data[l3:pos], nh_at, payload)
        if nh not in _IPV6_EXT or pos + 2 > len(data):
            return None
        nh, nh_at, pos = data[pos], pos - l3, pos + (data[pos + 1] + 1) * 8
    return None


class Defragmenter:
    """Pending datagrams of one capture; feed fragments in capture order."""

    def __init__(self, limits: DefragLimits | None = None) -> None:
        self.limits = limits or DefragLimits()
        self.stats = DefragStats()
        self._pending: dict[tuple, _Pending] = {}
        self._per_host: dict[bytes, int] = {}
        self._total = 0
        self.notes: list[tuple[str, int]] = []  # (kind, bytes) of the last add()

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._total

    def add(self, frag: Fragment, ts_ns: int) -> bytes | None:
        """Add one fragment; returns the whole datagram (IP header included) when this fragment completes it."""
        self.notes = []
        self.stats.fragments += 1
        end = frag.offset + len(frag.payload)
        over = len(frag.head) if frag.version == 4 else len(frag.head) - 40  # what the length field also counts
        if end + over > MAX_DATAGRAM:  # the "ping of death": no valid datagram is this long
            self._drop(frag.key)
            self.stats.dropped += 1
            return None
        if frag.more and len(frag.payload) < self.limits.tiny_bytes:
            self.stats.tiny += 1
            self.notes.append((TINY_FRAGMENT, len(frag.payload)))
        pend = self._pending.get(frag.key)
        if pend is None:
            source = frag.key[1][: len(frag.key[1]) // 2]
            pend = self._pending[frag.key] = _Pending(ts_ns, source)
        if frag.offset == 0 and pend.head is None:
            pend.head, pend.nh_at, pend.proto = frag.head, frag.nh_at, frag.proto
        if not frag.more and pend.total is None:
            pend.total = end
        added = self._insert(pend, frag.offset, frag.payload)
        self._account(pend, added)
        if pend.total is not None and pend.head is not None and self._complete(pend):
            return self._finish(frag.key, pend)
        self._bound(pend.source)
        return None

    def expire(self, now_ns: int) -> int:
        """Drop datagrams older than the timeout; returns how many."""
        limit = self.limits.timeout_s * 1e9
        old = [k for k, p in self._pending.items() if now_ns - p.first_ns > limit]
        for k in old:
            self._drop(k)
        self.stats.expired += len(old)
        return len(old)

    def close(self) -> None:
        """End of the capture: whatever is pending never completed."""
        self.stats.expired += len(self._pending)
        for k in list(self._pending):
            self._drop(k)

    # -- internals -----------------------------------------------------------------------------------------
    def _insert(self, pend: _Pending, offset: int, data: bytes) -> int:
        """First bytes win: store only the parts of ``data`` no earlier fragment covered; returns bytes added."""
        parts, overlaps = first_bytes_win(offset, data, pend.pieces)
        if any(not same for same, _ in overlaps):
            self.stats.overlap_conflicts += 1
            self.notes.append((FRAGMENT_OVERLAP_CONFLICT, len(data)))
        elif overlaps:
            self.stats.overlaps += 1
        pend.pieces.extend(p for p in parts if p[1])
        return sum(len(p[1]) for p in parts)

    @staticmethod
    def _complete(pend: _Pending) -> bool:
        covered = 0
        for start, data in sorted(pend.pieces):
            if start > covered:
                return False
            covered = max(covered, start + len(data))
        return covered >= (pend.total or 0)

    def _finish(self, key: tuple, pend: _Pending) -> bytes | None:
        total = pend.total or 0
        payload = bytearray(total)
        for start, data in pend.pieces:
            if start < total:
                payload[start : start + len(data)] = data[: total - start]
        head = bytearray(pend.head or b"")
        self._drop(key)
        if len(head) + total > MAX_DATAGRAM + (40 if key[0] == 6 else 0):
            self.stats.dropped += 1
            return None
        if key[0] == 4:
            struct.pack_into(">H", head, 2, len(head) + total)
            struct.pack_into(">H", head, 6, 0)  # no longer a fragment
            struct.pack_into(">H", head, 10, 0)  # checksum: the datagram never leaves the collector, nothing checks it
        else:
            struct.pack_into(">H", head, 4, len(head) - 40 + total)
            head[pend.nh_at] = pend.proto
        self.stats.reassembled += 1
        return bytes(head) + bytes(payload)

    def _account(self, pend: _Pending, added: int) -> None:
        pend.size += added
        self._per_host[pend.source] = self._per_host.get(pend.source, 0) + added
        self._total += added

    def _bound(self, source: bytes) -> None:
        """Oldest datagrams go first when one host, or all of them, hold too much."""
        lim = self.limits
        while self._per_host.get(source, 0) > lim.max_bytes_per_host:
            key = min((k for k, p in self._pending.items() if p.source == source),
                      key=lambda k: self._pending[k].first_ns)
            self._drop(key)
            self.stats.dropped += 1
        while self._total > lim.max_bytes_total and self._pending:
            key = min(self._pending, key=lambda k: self._pending[k].first_ns)
            self._drop(key)
            self.stats.dropped += 1

    def _drop(self, key: tuple) -> None:
        pend = self._pending.pop(key, None)
        if pend is None:
            return
        left = self._per_host.get(pend.source, 0) - pend.size
        if left > 0:
            self._per_host[pend.source] = left
        else:
            self._per_host.pop(pend.source, None)
        self._total -= pend.size

