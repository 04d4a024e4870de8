"""Streaming classic-pcap writer.

The generator produces millions of frames, so records are packed into one reusable buffer and flushed in large
blocks instead of one ``write`` call per packet; nothing but the buffer is held in memory.
"""

from __future__ import annotations

import os
import struct
from types import TracebackType
from typing import BinaryIO, Iterable

__all__ = ["LINKTYPE_ETHERNET", "LINKTYPE_LINUX_SLL", "LINKTYPE_RAW", "MAGIC_NS", "MAGIC_US", "PcapWriter"]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # raw IPv4/IPv6, no link header
LINKTYPE_LINUX_SLL = 113

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D

_FLUSH_AT = 1 << 20  # bytes buffered before a write to the file


class PcapWriter:
    """Write a classic (libpcap) capture file, packet by packet or in bulk.

    ``fileobj_or_path`` is a path (the file is created and owned) or a binary file object (left open on close).
    Timestamps are integer nanoseconds since the epoch, so no precision is lost to floats; microsecond files
    truncate them. Frames longer than ``snaplen`` are cut, with their original length kept as ``wirelen``.
    """

    def __init__(
        self,
        fileobj_or_path: str | os.PathLike[str] | BinaryIO,
        linktype: int = LINKTYPE_ETHERNET,
        nanosecond: bool = False,
        big_endian: bool = False,
        snaplen: int = 262144,
    ) -> None:
        if isinstance(fileobj_or_path, (str, os.PathLike)):
            self._file: BinaryIO = open(fileobj_or_path, "wb")
            self._owned = True
        else:
            self._file = fileobj_or_path
            self._owned = False
        self.linktype = linktype
        self.nanosecond = nanosecond
        self.snaplen = snaplen
        self.packets = 0
        self._order = ">" if big_endian else "<"
        self._record = struct.Struct(self._order + "IIII")
        self._divisor = 1 if nanosecond else 1000
        self._frac = 1_000_000_000 if nanosecond else 1_000_000
        self._buf = bytearray()
        self._closed = False
        magic = MAGIC_NS if nanosecond else MAGIC_US
        self._buf += struct.pack(self._order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)

    def write(self, ts_ns: int, frame: bytes, wirelen: int | None = None) -> None:
        """Append one packet record."""
        if ts_ns < 0:
            raise ValueError(f"timestamp {ts_ns} ns is before the epoch")
        caplen = len(frame)
        wirelen = caplen if wirelen is None else max(wirelen, caplen)
        if caplen > self.snaplen:
            frame = frame[: self.snaplen]
            caplen = self.snaplen
        sec, frac = divmod(ts_ns // self._divisor, self._frac)
        buf = self._buf
        buf += self._record.pack(sec, frac, caplen, wirelen)
        buf += frame
        self.packets += 1
        if len(buf) >= _FLUSH_AT:
            self.flush()

    def write_many(self, packets: Iterable[tuple[int, bytes]]) -> int:
        """Append many ``(ts_ns, frame)`` records; the fast path (no per-packet method call or checks but one).

        Returns how many were written.
        """
        pack = self._record.pack
        div, fracs, snap = self._divisor, self._frac, self.snaplen
        buf = self._buf
        n = 0
        for ts_ns, frame in packets:
            caplen = wirelen = len(frame)
            if caplen > snap:
                frame = frame[:snap]
                caplen = snap
            sec, frac = divmod(ts_ns // div, fracs)
            buf += pack(sec, frac, caplen, wirelen)
            buf += frame
            n += 1
            if len(buf) >= _FLUSH_AT:
                self._file.write(buf)
                buf.clear()
        self.packets += n
        return n

    def flush(self) -> None:
        """Write the buffered records to the file."""
        if self._buf:
            self._file.write(self._buf)
            self._buf.clear()
        self._file.flush()

    def close(self) -> None:
        """Flush, and close the file if this writer opened it."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._owned:
            self._file.close()

    def __enter__(self) -> "PcapWriter":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
