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
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from otsentry.collectors.pcapwalk import walk_records
from otsentry.collectors.types import CaptureError

__all__ = ["CaptureReader", "CaptureStats", "Chunk", "MAX_BLOCK", "MAX_CAPLEN", "chunk_from_packets", "open_capture",
    "ticks_to_ns", "view_as"]

log = logging.getLogger(__name__)

MAX_CAPLEN = 262144  # Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD: a longer record means a corrupt length field
MAX_BLOCK = 16 << 20  # largest pcapng block accepted (name resolution or custom blocks can be large)
_PCAP_MAGICS = {  # first four bytes -> (struct byte order, timestamp fraction in ns)
    b"\xd4\xc3\xb2\xa1": ("<", 1000),
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_SHB = 0x0A0D0D0A
_BOM = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_GZIP_MAGIC = b"\x1f\x8b"


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


@dataclass(slots=True)
class CaptureStats:
    """What reading found; ``warnings`` are one-line, user-facing."""

    format: str = ""
    records: int = 0
    chunks: int = 0
    truncated_tail: bool = False
    stopped_early: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Iface:
    linktype: int
    snaplen: int
    tsresol: int = 6
    tsoffset: int = 0


class _Section:
    """One pcapng section: its byte order and the interfaces its IDBs declared so far."""

    def __init__(self, endian: str) -> None:
        self.endian = endian
        self.ifaces: list[_Iface] = []
        self.hdr = struct.Struct(endian + "II").unpack_from
        self.u16 = struct.Struct(endian + "H").unpack_from
        self.u32 = struct.Struct(endian + "I").unpack_from
        self.opt = struct.Struct(endian + "HH").unpack_from
        self.i64 = struct.Struct(endian + "q").unpack_from


def view_as(buf: bytes, dtype: str) -> np.ndarray:
    """Every byte offset of ``buf`` as the start of one ``dtype`` value, so one fancy index reads a field."""
    dt = np.dtype(dtype)
    return np.ndarray((len(buf) - dt.itemsize + 1,), dtype=dt, buffer=buf, strides=(1,))


def _pairs(buf: bytes, at: np.ndarray, endian: str) -> tuple[np.ndarray, np.ndarray]:
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


class CaptureReader:
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
        if magic in _PCAP_MAGICS:
            endian, self._frac_ns = _PCAP_MAGICS[magic]
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
        elif magic == _PCAPNG_MAGIC:
            if len(head) < 28:
                raise CaptureError(f"{name}: truncated pcapng section header ({len(head)} bytes)")
            problem = self._shb_problem(head, 0)
            if problem:
                raise CaptureError(f"{name}: corrupt pcapng section header ({problem})")
            self._section = _Section(_BOM[head[8:12]])
            self.stats.format = "pcapng"
            self._buf = head
        elif magic == b"\xa1\xb2\xcd\x34" or magic == b"\x34\xcd\xb2\xa1":
            raise CaptureError(f"{name}: modified (Kuznetsov) pcap is not supported; convert it with editcap")
        else:
            raise CaptureError(f"{name}: not a pcap or pcapng file (magic 0x{int.from_bytes(magic, 'big'):08x})")

    @staticmethod
    def _shb_problem(buf: bytes, pos: int) -> str | None:
        bom = buf[pos + 8 : pos + 12]
        if bom not in _BOM:
            return f"byte-order magic 0x{int.from_bytes(bom, 'big'):08x}"
        (blen,) = struct.unpack_from(_BOM[bom] + "I", buf, pos + 4)
        (vmaj,) = struct.unpack_from(_BOM[bom] + "H", buf, pos + 12)
        if blen < 28 or blen & 3 or blen > MAX_BLOCK:
            return f"block length {blen}"
        if vmaj != 1:
            return f"unsupported version {vmaj}"
        return None

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

    # -- classic pcap ------------------------------------------------------------------------------------------
    def _walk_pcap(self, buf: bytes) -> tuple[Chunk | None, int, int, str | None]:
        """Find complete records; returns (chunk, bytes used, bytes to read next, stop message)."""
        unpack = self._cap_at
        end = len(buf)
        at, pos = walk_records(buf, 8, self._endian)  # pos walks the caplen field of each record header
        need = n_last = 0
        if pos > end + 8:  # the last record is incomplete (or its length is junk)
            pos, at = int(at[-1]), at[:-1]
            (n_last,) = unpack(buf, pos)
            need = pos + 8 + n_last - end
        used = pos - 8
        stop = self._stop_msg(f"caplen {n_last} > {MAX_CAPLEN}", used) if n_last > MAX_CAPLEN else None
        if not len(at):
            return None, used, max(self.chunk_bytes, need), stop
        sec, frac = _pairs(buf, at - 8, self._endian)
        caplen, wirelen = _pairs(buf, at, self._endian)
        bad = caplen > MAX_CAPLEN
        if bad.any():
            k = int(bad.argmax())
            stop = self._stop_msg(f"caplen {int(caplen[k])} > {MAX_CAPLEN}", int(at[k]) - 8)
            at, caplen, wirelen, sec, frac = at[:k], caplen[:k], wirelen[:k], sec[:k], frac[:k]
        ts = sec * 1_000_000_000 + frac * self._frac_ns
        chunk = Chunk(
            buf=buf,
            offset=at + 8,
            caplen=caplen,
            wirelen=wirelen,
            ts_ns=ts,
            linktype=np.full(len(at), self._linktype, dtype=np.int32),
            first_frame=self._next_frame,
        )
        return chunk, used, max(self.chunk_bytes, need), stop

    # -- pcapng ------------------------------------------------------------------------------------------------
    def _walk_pcapng(self, buf: bytes) -> tuple[Chunk | None, int, int, str | None]:
        """Walk blocks; EPBs take the short path, everything else is parsed here (rare)."""
        sec = self._section
        unpack = sec.hdr
        out: list[int] = []
        app = out.append
        special: dict[int, tuple[int, int, int, int, int]] = {}  # index -> (ifid, ticks or -1, caplen, wirelen, data)
        pos, end = 0, len(buf)
        last = end - 12
        need, stop, want_now = 0, None, False
        while pos <= last:
            btype, blen = unpack(buf, pos)
            if btype == 6 and blen >= 32:  # the hot path: checked with numpy afterwards
                app(pos)
                pos += blen
                continue
            if btype == _SHB:
                if out:  # the records so far belong to the old section: emit them, then come back
                    want_now = True
                    break
                if pos + 28 > end:
                    need = pos + 28 - end
                    break
                problem = self._shb_problem(buf, pos)
                if problem:
                    stop = self._stop_msg(f"section header: {problem}", pos)
                    break
                sec = self._section = _Section(_BOM[buf[pos + 8 : pos + 12]])
                unpack = sec.hdr
                (blen,) = sec.u32(buf, pos + 4)
            if blen < 12 or blen & 3 or blen > MAX_BLOCK or (btype == 6 and blen < 32):
                stop = self._stop_msg(f"block type 0x{btype:x} length {blen}", pos)
                break
            if pos + blen > end:
                need = pos + blen - end
                break
            if sec.u32(buf, pos + blen - 4)[0] != blen:
                stop = self._stop_msg(f"block type 0x{btype:x} length {blen} disagrees with its trailer", pos)
                break
            if btype == 1:
                stop = self._parse_idb(buf, pos, blen)
            elif btype == 3 or btype == 2:
                rec = self._parse_spb(buf, pos, blen) if btype == 3 else self._parse_pb(buf, pos, blen)
                if isinstance(rec, str):
                    stop = rec
                else:
                    special[len(out)] = rec
                    app(pos)
            if stop:
                break
            pos += blen
        if pos > end:  # the last EPB is incomplete (or its length is junk)
            pos = out.pop()
            (blen,) = sec.u32(buf, pos + 4)
            need = pos + blen - end
            if blen > MAX_BLOCK:
                stop = self._stop_msg(f"block length {blen}", pos)
        chunk, bad = self._pcapng_chunk(buf, out, special, sec) if out else (None, None)
        return chunk, pos, 0 if want_now else max(self.chunk_bytes, need), bad or stop

    def _parse_idb(self, buf: bytes, pos: int, blen: int) -> str | None:
        sec = self._section
        if blen < 20:
            return self._stop_msg(f"interface description block length {blen}", pos)
        iface = _Iface(sec.u16(buf, pos + 8)[0], sec.u32(buf, pos + 12)[0])
        o, oend = pos + 16, pos + blen - 4
        while o + 4 <= oend:
            code, olen = sec.opt(buf, o)
            if code == 0 or o + 4 + olen > oend:
                break
            if code == 9 and olen >= 1:
                iface.tsresol = buf[o + 4]
            elif code == 14 and olen >= 8:
                (off,) = sec.i64(buf, o + 4)
                if abs(off) < 1 << 33:
                    iface.tsoffset = off
                else:
                    self._warn(f"interface {len(sec.ifaces)}: if_tsoffset {off} ignored")
            o += 4 + ((olen + 3) & ~3)
        sec.ifaces.append(iface)
        return None

    def _parse_spb(self, buf: bytes, pos: int, blen: int) -> tuple[int, int, int, int, int] | str:
        sec = self._section
        if blen < 16 or not sec.ifaces:
            return self._stop_msg(f"simple packet block length {blen} / {len(sec.ifaces)} interfaces", pos)
        (wire,) = sec.u32(buf, pos + 8)
        cap = min(wire, blen - 16, sec.ifaces[0].snaplen or MAX_CAPLEN)
        return 0, -1, cap, wire, pos + 12

    def _parse_pb(self, buf: bytes, pos: int, blen: int) -> tuple[int, int, int, int, int] | str:
        sec = self._section
        ifid = sec.u16(buf, pos + 8)[0]
        hi, lo, cap, wire = struct.unpack_from(sec.endian + "IIII", buf, pos + 12) if blen >= 32 else (0, 0, 0, 0)
        if blen < 32 or cap > MAX_CAPLEN or 32 + ((cap + 3) & ~3) > blen or ifid >= len(sec.ifaces):
            return self._stop_msg(f"packet block length {blen} caplen {cap} interface {ifid}", pos)
        return ifid, (hi << 32) | lo, cap, wire, pos + 28

    def _pcapng_chunk(
        self, buf: bytes, out: list[int], special: dict[int, tuple[int, int, int, int, int]], sec: _Section
    ) -> tuple[Chunk | None, str | None]:
        """Read EPB fields with numpy, check them, convert timestamps per interface, then fill in SPB/PB rows."""
        at = np.fromiter(out, np.int64, len(out))
        n = len(at)
        rows = np.arange(n) if not special else np.setdiff1d(np.arange(n), np.fromiter(special, np.int64))
        p = at[rows]
        blen, ifid = _pairs(buf, p + 4, sec.endian)
        hi, lo = _pairs(buf, p + 12, sec.endian)
        cap, wire = _pairs(buf, p + 20, sec.endian)
        bad = (
            (blen & 3 != 0)
            | (view_as(buf, sec.endian + "u4")[p + blen - 4] != blen)
            | (cap > MAX_CAPLEN)
            | (((cap + 3) & ~3) + 32 > blen)
            | (ifid >= len(sec.ifaces))
        )
        stop = None
        if bad.any():
            k = int(bad.argmax())
            stop = self._stop_msg(
                f"enhanced packet block length {int(blen[k])} caplen {int(cap[k])} interface {int(ifid[k])}",
                int(p[k]),
            )
            n = int(rows[k])
        offset = at + 28
        caplen = np.zeros(len(at), np.int64)
        wirelen = np.zeros(len(at), np.int64)
        ts = np.zeros(len(at), np.int64)
        linktype = np.zeros(len(at), np.int32)
        caplen[rows], wirelen[rows] = cap, wire
        ticks = (hi.astype(np.uint64) << np.uint64(32)) | lo.astype(np.uint64)
        for j in np.unique(ifid) if len(ifid) and ifid.min() != ifid.max() else ifid[:1]:
            if j < len(sec.ifaces):  # rows of a missing interface were cut off above
                iface, m = sec.ifaces[int(j)], ifid == j
                ts[rows[m]] = ticks_to_ns(ticks[m], iface.tsresol, iface.tsoffset)
                linktype[rows[m]] = iface.linktype
        for i in sorted(special):
            if i >= n:
                break
            j, t, c, w, d = special[i]
            iface = sec.ifaces[j]
            offset[i], caplen[i], wirelen[i], linktype[i] = d, c, w, iface.linktype
            ts[i] = (ts[i - 1] if i else self._last_ts) if t < 0 else int(
                ticks_to_ns(np.array([t], np.uint64), iface.tsresol, iface.tsoffset)[0]
            )
        if n == 0:
            return None, stop
        chunk = Chunk(buf, offset[:n], caplen[:n], wirelen[:n], ts[:n], linktype[:n], self._next_frame)
        return chunk, stop


def open_capture(path: str | PathLike[str], chunk_bytes: int = 8 << 20) -> CaptureReader:
    """Open a pcap or pcapng file (optionally gzip-compressed); raises ``CaptureError`` if it is not one."""
    return CaptureReader(path, chunk_bytes)


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
