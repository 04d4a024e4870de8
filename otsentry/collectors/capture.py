"""Streaming pcap / pcapng reader: a capture file becomes ``Chunk``s of raw records, memory flat at any file size.

Why chunks: the collector must run at >= 1M packets/s in pure Python + numpy. Where each record starts is found
mostly with numpy for pcap (``pcapwalk``) and with a Python loop for pcapng; timestamps, lengths and link types are
then read for all records of a chunk at once with numpy gathers, and ``packets.decode_packets`` decodes the chunk the same way.

Damage policy (what users of real captures expect from Wireshark): a file that is not a capture, or whose header
is corrupt, raises ``CaptureError`` with a one-line message; a truncated last record or a corrupt record in the
middle only stops reading, with a warning in ``reader.stats``, keeping every packet before it.
"""

from __future__ import annotations

import gzip
import logging
import struct
import zlib
from dataclasses import dataclass, field
from os import PathLike
from typing import BinaryIO, Iterator

from otsentry.collectors.chunks import MAX_BLOCK, MAX_CAPLEN, Chunk, chunk_from_packets, ticks_to_ns, view_as
from otsentry.collectors.pcap_format import PCAP_MAGICS, PcapRecords
from otsentry.collectors.pcapng_format import BOM, PCAPNG_MAGIC, PcapngBlocks, Section
from otsentry.collectors.types import CaptureError

__all__ = ["CaptureReader", "CaptureStats", "Chunk", "MAX_BLOCK", "MAX_CAPLEN", "chunk_from_packets", "open_capture",
    "ticks_to_ns", "view_as"]

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(slots=True)
class CaptureStats:
    """What reading found; ``warnings`` are one-line, user-facing."""

    format: str = ""
    records: int = 0
    chunks: int = 0
    truncated_tail: bool = False
    stopped_early: bool = False
    warnings: list[str] = field(default_factory=list)


class CaptureReader(PcapRecords, PcapngBlocks):
    """Reads a pcap or pcapng file ``chunk_bytes`` at a time; iterate ``chunks()`` once."""

    def __init__(self, path: str | PathLike[str], chunk_bytes: int = 8 << 20) -> None:
        if chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be positive")
        self.name = str(path)
        self.chunk_bytes = int(chunk_bytes)
        self.stats = CaptureStats()
        self._buf = b""
        self._base = 0  # file offset of self._buf[0]
        self._next_frame = 1
        self._last_ts = 0
        self._want = 0  # bytes to read before the next walk (0: walk what is buffered)
        self._done = False
        try:
            self._f: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise CaptureError(f"{self.name}: cannot open ({exc.strerror or exc})") from None
        self._raw = self._f
        try:
            self._open_header()
        except BaseException:
            self.close()
            raise

    def _open_header(self) -> None:
        head = self._read_at_least(64)
        self._seekable = head[:2] != _GZIP_MAGIC and self._f.seekable()
        if head[:2] == _GZIP_MAGIC:
            self._f.seek(0)
            self._f = gzip.GzipFile(fileobj=self._f, mode="rb")  # type: ignore[assignment]
            head = self._read_at_least(64)
        name = self.name
        if not head:
            raise CaptureError(f"{name}: empty file, not a capture")
        if len(head) < 4:
            raise CaptureError(f"{name}: too short to be a capture ({len(head)} bytes)")
        magic = head[:4]
        if magic in PCAP_MAGICS:
            endian, self._frac_ns = PCAP_MAGICS[magic]
            if len(head) < 24:
                raise CaptureError(f"{name}: truncated pcap header ({len(head)} of 24 bytes)")
            vmaj, vmin, _zone, _sigfigs, self._snaplen, network = struct.unpack_from(endian + "HHiIII", head, 4)
            if vmaj != 2:
                raise CaptureError(f"{name}: corrupt pcap header (version {vmaj}.{vmin})")
            self._endian = endian
            self._linktype = network & 0x03FFFFFF  # upper bits carry FCS information
            self._cap_at = struct.Struct(endian + "I").unpack_from
            self.stats.format = "pcap"
            self._buf, self._base = head[24:], 24
        elif magic == PCAPNG_MAGIC:
            if len(head) < 28:
                raise CaptureError(f"{name}: truncated pcapng section header ({len(head)} bytes)")
            problem = self._shb_problem(head, 0)
            if problem:
                raise CaptureError(f"{name}: corrupt pcapng section header ({problem})")
            self._section = Section(BOM[head[8:12]])
            self.stats.format = "pcapng"
            self._buf = head
        elif magic == b"\xa1\xb2\xcd\x34" or magic == b"\x34\xcd\xb2\xa1":
            raise CaptureError(f"{name}: modified (Kuznetsov) pcap is not supported; convert it with editcap")
        else:
            raise CaptureError(f"{name}: not a pcap or pcapng file (magic 0x{int.from_bytes(magic, 'big'):08x})")

    # -- I/O ---------------------------------------------------------------------------------------------------
    def _read(self, n: int) -> bytes:
        try:
            return self._f.read(n)
        except (OSError, EOFError, zlib.error) as exc:  # a damaged gzip stream or a disk error: stop, keep what we have
            if not self.stats.format:
                raise CaptureError(f"{self.name}: cannot read ({exc})") from None
            self._warn(f"read error after byte {self._base + len(self._buf)} ({exc}); stopped reading")
            self.stats.stopped_early = True
            return b""

    def _refill(self, want: int) -> bytes:
        """Append up to ``want`` new bytes to the carried-over partial record; b"" at the end of the file.

        A plain file is re-read from the carry's start instead, so the chunk buffer is one fresh read, not a copy.
        """
        carry = len(self._buf)
        if self._seekable:
            try:
                self._f.seek(self._base)
            except OSError:
                self._seekable = False
            else:
                data = self._read(carry + want)
                if len(data) <= carry:
                    return b""
                self._buf = data
                return data
        data = self._read(want)
        if data:
            self._buf = self._buf + data if carry else data
        return data

    def _read_at_least(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            data = self._read(max(n - got, self.chunk_bytes))
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def _warn(self, msg: str) -> None:
        self.stats.warnings.append(f"{self.name}: {msg}")
        log.warning("%s: %s", self.name, msg)

    def close(self) -> None:
        self._f.close()
        self._raw.close()  # a GzipFile leaves the file it wraps open

    def __enter__(self) -> "CaptureReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Chunk]:
        return self.chunks()

    # -- main loop ---------------------------------------------------------------------------------------------
    def chunks(self) -> Iterator[Chunk]:
        """Yield chunks until the end of the file (or the first corrupt record); single pass."""
        while not self._done:
            if self._want:
                data = self._refill(self._want)
                if not data:
                    self._done = True
                    if self._buf:
                        self.stats.truncated_tail = True
                        self._warn(
                            f"last record truncated ({len(self._buf)} bytes at byte {self._base} ignored) "
                            f"after {self.stats.records} records"
                        )
                    break
            walk = self._walk_pcap if self.stats.format == "pcap" else self._walk_pcapng
            chunk, used, want, stop = walk(self._buf)
            if chunk is not None and len(chunk):
                self.stats.records += len(chunk)
                self.stats.chunks += 1
                self._next_frame += len(chunk)
                self._last_ts = int(chunk.ts_ns[-1])
                yield chunk
            if stop:
                self._warn(f"{stop}; stopped reading after {self.stats.records} records")
                self.stats.stopped_early = True
                self._done = True
                break
            self._buf = self._buf[used:]
            self._base += used
            self._want = want

    def _stop_msg(self, what: str, pos: int) -> str:
        return f"corrupt record at byte {self._base + pos} ({what})"

def open_capture(path: str | PathLike[str], chunk_bytes: int = 8 << 20) -> CaptureReader:
    """Open a pcap or pcapng file (optionally gzip-compressed); raises ``CaptureError`` if it is not one."""
    return CaptureReader(path, chunk_bytes)


