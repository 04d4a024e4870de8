"""pcapng blocks: sections, interfaces (link type, snap length, timestamp resolution) and packet blocks."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from otsentry.collectors.chunks import MAX_BLOCK, MAX_CAPLEN, Chunk, record_pairs, ticks_to_ns, view_as

__all__ = ["BOM", "PCAPNG_MAGIC", "SHB", "PcapngBlocks", "Section"]

PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
SHB = 0x0A0D0D0A
BOM = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}


@dataclass(slots=True)
class Iface:
    linktype: int
    snaplen: int
    tsresol: int = 6
    tsoffset: int = 0


class Section:
    """One pcapng section: its byte order and the interfaces its IDBs declared so far."""

    def __init__(self, endian: str) -> None:
        self.endian = endian
        self.ifaces: list[Iface] = []
        self.hdr = struct.Struct(endian + "II").unpack_from
        self.u16 = struct.Struct(endian + "H").unpack_from
        self.u32 = struct.Struct(endian + "I").unpack_from
        self.opt = struct.Struct(endian + "HH").unpack_from
        self.i64 = struct.Struct(endian + "q").unpack_from


class PcapngBlocks:
    """The pcapng half of ``CaptureReader`` (its state: the current section, frame count)."""

    @staticmethod
    def _shb_problem(buf: bytes, pos: int) -> str | None:
        bom = buf[pos + 8 : pos + 12]
        if bom not in BOM:
            return f"byte-order magic 0x{int.from_bytes(bom, 'big'):08x}"
        (blen,) = struct.unpack_from(BOM[bom] + "I", buf, pos + 4)
        (vmaj,) = struct.unpack_from(BOM[bom] + "H", buf, pos + 12)
        if blen < 28 or blen & 3 or blen > MAX_BLOCK:
            return f"block length {blen}"
        if vmaj != 1:
            return f"unsupported version {vmaj}"
        return None

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
            if btype == SHB:
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
                sec = self._section = Section(BOM[buf[pos + 8 : pos + 12]])
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
        iface = Iface(sec.u16(buf, pos + 8)[0], sec.u32(buf, pos + 12)[0])
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
        self, buf: bytes, out: list[int], special: dict[int, tuple[int, int, int, int, int]], sec: Section
    ) -> tuple[Chunk | None, str | None]:
        """Read EPB fields with numpy, check them, convert timestamps per interface, then fill in SPB/PB rows."""
        at = np.fromiter(out, np.int64, len(out))
        n = len(at)
        rows = np.arange(n) if not special else np.setdiff1d(np.arange(n), np.fromiter(special, np.int64))
        p = at[rows]
        blen, ifid = record_pairs(buf, p + 4, sec.endian)
        hi, lo = record_pairs(buf, p + 12, sec.endian)
        cap, wire = record_pairs(buf, p + 20, sec.endian)
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
