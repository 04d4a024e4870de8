"""A chunk of capture records and the numpy helpers that read their fields: shared by the file readers (pcap,
pcapng) and by live capture, so one decoder serves files and wires."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["MAX_BLOCK", "MAX_CAPLEN", "Chunk", "chunk_from_packets", "record_pairs", "ticks_to_ns", "view_as"]

MAX_CAPLEN = 262144  # Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD: a longer record means a corrupt length field
MAX_BLOCK = 16 << 20  # largest pcapng block accepted (name resolution or custom blocks can be large)


@dataclass(frozen=True, slots=True, eq=False)
class Chunk:
    """Records of one read: ``buf`` holds the raw bytes, the arrays say where each packet is and what it is."""

    buf: bytes
    offset: np.ndarray  # int64: where each packet's data starts in buf
    caplen: np.ndarray  # int64: captured bytes
    wirelen: np.ndarray  # int64: length on the wire
    ts_ns: np.ndarray  # int64: epoch nanoseconds
    linktype: np.ndarray  # int32: LINKTYPE_* of each record
    first_frame: int  # 1-based frame number of record 0, as Wireshark counts

    def __len__(self) -> int:
        return len(self.offset)

    def head(self, n: int) -> "Chunk":
        """The first ``n`` records."""
        return Chunk(self.buf, self.offset[:n], self.caplen[:n], self.wirelen[:n], self.ts_ns[:n], self.linktype[:n],
                     self.first_frame)

    def data(self, i: int) -> bytes:
        """Captured bytes of record ``i`` (a copy: for the rare per-packet path, not the hot loop)."""
        start = int(self.offset[i])
        return self.buf[start : start + int(self.caplen[i])]


def view_as(buf: bytes, dtype: str) -> np.ndarray:
    """Every byte offset of ``buf`` as the start of one ``dtype`` value, so one fancy index reads a field."""
    dt = np.dtype(dtype)
    return np.ndarray((len(buf) - dt.itemsize + 1,), dtype=dt, buffer=buf, strides=(1,))


def record_pairs(buf: bytes, at: np.ndarray, endian: str) -> tuple[np.ndarray, np.ndarray]:
    """Two consecutive 32-bit unsigned fields at each offset, with one 64-bit gather, as int64 in file order."""
    x = view_as(buf, endian + "i8")[at].astype(np.int64, copy=False)
    high, low = (x >> 32) & 0xFFFFFFFF, x & 0xFFFFFFFF
    return (low, high) if endian == "<" else (high, low)


def ticks_to_ns(ticks: np.ndarray, tsresol: int, tsoffset: int = 0) -> np.ndarray:
    """pcapng timestamp units (if_tsresol: 10^-n, or 2^-n when the high bit is set) to epoch ns, wrapping on junk."""
    ticks = ticks.astype(np.uint64, copy=False)
    n = tsresol & 0x7F
    if tsresol & 0x80:
        if n > 34:  # keep frac * 1e9 inside 64 bits: drop precision below 2^-34 s
            ticks, n = ticks >> np.uint64(n - 34), 34
        sec = ticks >> np.uint64(n)
        frac = ticks & np.uint64((1 << n) - 1)
        ns = sec * np.uint64(10**9) + ((frac * np.uint64(10**9)) >> np.uint64(n))
    elif n <= 9:
        ns = ticks * np.uint64(10 ** (9 - n))
    elif n - 9 <= 19:
        ns = ticks // np.uint64(10 ** (n - 9))
    else:
        ns = np.zeros_like(ticks)
    out = ns.view(np.int64)
    return out + np.int64(tsoffset * 10**9) if tsoffset else out


def chunk_from_packets(records: Sequence[tuple[int, int, bytes]], first_frame: int) -> Chunk:
    """Pack live-capture records ``(ts_ns, linktype, data)`` into a Chunk, so one decoder serves files and wires.

    A record may carry a fourth item, its length on the wire, when the capture was cut by a snap length.
    """
    n = len(records)
    datas = [r[2] for r in records]
    lens = np.fromiter(map(len, datas), dtype=np.int64, count=n)
    offset = np.zeros(n, dtype=np.int64)
    if n > 1:
        np.cumsum(lens[:-1], out=offset[1:])
    wirelen = lens.copy()
    for i, r in enumerate(records):
        if len(r) > 3:
            wirelen[i] = max(int(r[3]), int(lens[i]))  # type: ignore[misc]
    return Chunk(
        buf=b"".join(datas),
        offset=offset,
        caplen=lens,
        wirelen=wirelen,
        ts_ns=np.fromiter((r[0] for r in records), dtype=np.int64, count=n),
        linktype=np.fromiter((r[1] for r in records), dtype=np.int32, count=n),
        first_frame=first_frame,
    )
