"""DNP3 link frames read over arrays, as ``units.UnitDecoder`` and ``dnp3_app.parse_fragment`` read them one by one.

Per frame: the CRC of the header and of every data block (CRC-16/DNP, one table step per byte position across all
blocks of the chunk at once), whether it carries user data, and for a data frame that is a whole application
fragment in one transport segment (FIR and FIN: what nearly every poll and answer is) the fragment's function,
IIN errors, pairing key and whether its object headers are malformed, walked as ``dnp3_objects.walk_objects``
walks them for headers whose object sizes are fixed. Fragments split over several frames, objects with size
prefixes and device attributes are left to the general path (the frame is not ``ok``).
"""

from __future__ import annotations

import numpy as np

from otsentry.arrays import ranges
from otsentry.collectors.ics.dnp3_app import HEADERS_ONLY, UNPAIRED
from otsentry.collectors.ics.dnp3_link import BLOCK, CRC_TABLE, HEADER, MIN_LEN
from otsentry.collectors.ics.dnp3_names import ERROR_IIN_MASK, FUNCTIONS, OBJECT_SIZES, PACKED_BITS, RESPONSE_CODES
from otsentry.collectors.ics.dnp3_objects import COUNT_BYTES, PREFIX_BYTES, RANGE_BYTES

__all__ = ["ADDRESSES", "DnpFrames", "MAX_HEADERS", "crc_errors", "read_frames", "walk_malformed"]

ADDRESSES = 4  # the message bytes kept per fragment start with the master's and the outstation's link address
MAX_HEADERS = 32  # object headers walked per fragment over arrays; more (rare) goes to the general path
_CRC = np.array(CRC_TABLE, dtype=np.int64)


def _table(entries: dict, size: int, default: int = 0) -> np.ndarray:
    t = np.full(size, default, dtype=np.int64)
    for k, v in entries.items():
        t[k] = v
    return t


_RANGE_W, _COUNT_W, _PREFIX_W = _table(RANGE_BYTES, 16), _table(COUNT_BYTES, 16), _table(PREFIX_BYTES, 8)
_BITS = np.zeros((256, 256), dtype=np.int64)
_SIZE = np.full((256, 256), -1, dtype=np.int64)  # bytes per object, -1: not fixed
for (_g, _v), _n in PACKED_BITS.items():
    _BITS[_g, _v] = _n
for _g in (110, 111, 112, 113):  # octet strings: the variation is the length
    _SIZE[_g, :] = np.arange(256)
for (_g, _v), _n in OBJECT_SIZES.items():
    _SIZE[_g, _v] = _n
_KNOWN = _table({fc: 1 for fc in FUNCTIONS}, 256).astype(bool)
_RESPONSE = _table({fc: 1 for fc in RESPONSE_CODES}, 256).astype(bool)
_HEADERS_ONLY = _table({fc: 1 for fc in HEADERS_ONLY}, 256).astype(bool)
_UNPAIRED = _table({fc: 1 for fc in UNPAIRED}, 256).astype(bool)


def _crc(u8: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """CRC-16/DNP of ``length`` (at most 16) bytes at each ``start``."""
    crc = np.zeros(len(start), dtype=np.int64)
    last = len(u8) - 1
    for j in range(int(length.max()) if len(length) else 0):
        byte = u8[np.minimum(start + j, last)].astype(np.int64)
        crc = np.where(j < length, (crc >> 8) ^ _CRC[(crc ^ byte) & 0xFF], crc)
    return ~crc & 0xFFFF


def _le(u8: np.ndarray, at: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Little-endian unsigned integers of 0, 1, 2 or 4 bytes at ``at``."""
    last = len(u8) - 1
    out = np.zeros(len(at), dtype=np.int64)
    for k in range(4):
        out |= np.where(k < width, u8[np.minimum(at + k, last)].astype(np.int64) << (8 * k), 0)
    return out


def crc_errors(u8: np.ndarray, off: np.ndarray, data_len: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blocks with a wrong CRC per frame (header included), and each frame's data blocks (frame, start, length)."""
    stored = lambda at: u8[at].astype(np.int64) | u8[at + 1].astype(np.int64) << 8  # noqa: E731
    errors = (_crc(u8, off, np.full(len(off), 8)) != stored(off + 8)).astype(np.int64)
    blocks = (data_len + BLOCK - 1) // BLOCK
    frame = np.repeat(np.arange(len(off)), blocks)
    k = np.arange(len(frame)) - np.repeat(np.cumsum(blocks) - blocks, blocks)
    start = off[frame] + HEADER + (BLOCK + 2) * k
    length = np.minimum(BLOCK, data_len[frame] - BLOCK * k)
    if len(frame):
        errors += np.bincount(frame, weights=_crc(u8, start, length) != stored(start + length),
                              minlength=len(off)).astype(np.int64)
    return errors, np.stack([frame, start, length]) if len(frame) else np.zeros((3, 0), dtype=np.int64)


def walk_malformed(u8: np.ndarray, base: np.ndarray, n: np.ndarray, pos: np.ndarray,
                   with_data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(decided, malformed) per fragment (``n`` bytes at ``base``, headers from offset ``pos``): ``walk_objects``'s
    malformed flag where the walk needs no size prefix or device attribute and has at most MAX_HEADERS headers."""
    m = len(base)
    decided, malformed, rejected = np.zeros(m, dtype=bool), np.zeros(m, dtype=bool), np.zeros(m, dtype=bool)
    pos = pos.copy()
    last = len(u8) - 1
    for _ in range(MAX_HEADERS):
        act = np.flatnonzero(~decided & ~rejected)
        if not len(act):
            break
        p, size = pos[act], n[act]
        decided[act[p >= size]] = True  # the walk reached the end
        short = (p < size) & (p + 3 > size)
        decided[act[short]] = malformed[act[short]] = True
        keep = (p < size) & ~short
        act, p, size = act[keep], p[keep], size[keep]
        at = base[act] + p
        g, v, q = (u8[np.minimum(at + k, last)].astype(np.int64) for k in range(3))
        p = p + 3
        prefix, rng = q >> 4 & 7, q & 0x0F
        wr, wc = _RANGE_W[rng], _COUNT_W[rng]
        need = np.where(wr > 0, 2 * wr, wc)
        lo, hi = _le(u8, base[act] + p, np.where(wr > 0, wr, wc)), _le(u8, base[act] + p + wr, wr)
        count = np.where(wr > 0, hi - lo + 1, lo)
        bad = (((wr > 0) | (wc > 0)) & (p + need > size)) | ((wr > 0) & (hi < lo)) | ((wr == 0) & (wc == 0) & (rng != 6))
        bad |= prefix == 7
        p = p + need
        decided[act[bad]] = malformed[act[bad]] = True
        ok = ~bad
        act, p, size, g, v, prefix, count, rng = (x[ok] for x in (act, p, size, g, v, prefix, count, rng))
        body = with_data[act] & (count > 0) & (rng != 6)
        bits, osize, pw = _BITS[g, v], _SIZE[g, v], _PREFIX_W[prefix]
        packed = (bits > 0) & (prefix == 0)
        end = np.where(packed, p + (count * bits + 7) // 8,
                       np.where(prefix == 0, np.where(osize > 0, p + count * osize, p),
                                p + count * (pw + np.maximum(osize, 0))))
        end = np.where(body, end, p)
        variable = body & ~packed & (prefix > 0) & ((prefix >= 4) | (g == 0))  # size prefixes, device attributes
        undecoded = body & ~packed & ~variable & (prefix > 0) & (osize < 0)  # the walk stops there, not malformed
        rejected[act[variable]] = True
        decided[act[undecoded]] = True
        past = ~variable & ~undecoded & (end > size)
        decided[act[past]] = malformed[act[past]] = True
        go = ~variable & ~undecoded & ~past
        pos[act[go]] = end[go]
    return decided & ~rejected, malformed


class DnpFrames:
    """What the decoder makes of each DNP3 link frame of the fast path, over arrays.

    ``ok`` frames are read here; ``message`` ones complete an application fragment, whose message bytes (link
    addresses, then the fragment: ``fastunits.message_of`` reads them) are at ``at``/``length`` in ``buf``."""

    __slots__ = ("ok", "message", "crc_errors", "malformed", "request", "error", "function", "keyed", "key",
                 "buf", "at", "length")

    def __init__(self, u8: np.ndarray, off: np.ndarray, size: np.ndarray) -> None:
        m = len(off)
        g = lambda k: u8[np.minimum(off + k, len(u8) - 1)].astype(np.int64)  # noqa: E731
        length, control = g(2), g(3)
        destination, source = g(4) | g(5) << 8, g(6) | g(7) << 8
        data_len = length - MIN_LEN
        self.crc_errors, blocks = crc_errors(u8, off, data_len)
        carries = (control & 0x40 > 0) & ((control & 0x0F == 3) | (control & 0x0F == 4)) & (data_len > 0) \
            & (self.crc_errors == 0)
        # user data without the CRCs, frame after frame (only the frames that carry some)
        sel = carries[blocks[0]]
        ud = u8[ranges(blocks[1][sel], blocks[2][sel])]
        ud_len = np.where(carries, data_len, 0)
        ud_at = np.cumsum(ud_len) - ud_len
        transport = ud[np.minimum(ud_at, max(len(ud) - 1, 0))].astype(np.int64) if len(ud) else np.zeros(m, np.int64)
        whole = carries & (transport & 0xC0 == 0xC0)  # FIR and FIN: the fragment is this segment's body
        self.ok = ~carries | whole
        self.message = whole.copy()
        from_master = control & 0x80 > 0
        master, outstation = np.where(from_master, source, destination), np.where(from_master, destination, source)
        frag_len = np.where(whole, data_len - 1, 0)
        self.length = np.where(whole, ADDRESSES + frag_len, 0)
        self.at = np.cumsum(self.length) - self.length
        buf = np.zeros(int(self.length.sum()) + 8, dtype=np.uint8)  # padded: gathers below read a few bytes on
        w = np.flatnonzero(whole)
        for k, value in enumerate((master & 0xFF, master >> 8, outstation & 0xFF, outstation >> 8)):
            buf[self.at[w] + k] = value[w]
        if len(w):
            buf[ranges(self.at[w] + ADDRESSES, frag_len[w])] = ud[ranges(ud_at[w] + 1, frag_len[w])]
        self.buf = buf
        fa = self.at + ADDRESSES
        b = lambda k: buf[np.minimum(fa + k, len(buf) - 1)].astype(np.int64)  # noqa: E731
        fc, seq = b(1), b(0) & 0x0F
        response = _RESPONSE[fc]
        readable = (frag_len >= 2) & _KNOWN[fc] & (~response | (frag_len >= 4))
        decided, self.malformed = walk_malformed(buf, fa, frag_len, np.where(response, 4, 2),
                                                 response | ~_HEADERS_ONLY[fc])
        self.ok &= ~whole | (readable & decided)
        self.message &= self.ok
        self.malformed &= self.message
        self.request = ~response
        self.error = response & ((b(2) << 8 | b(3)) & ERROR_IIN_MASK != 0)
        self.function = fc
        self.keyed = ~_UNPAIRED[fc]
        self.key = np.stack([outstation, master, seq], axis=1)


def read_frames(u8: np.ndarray, off: np.ndarray, size: np.ndarray) -> DnpFrames:
    with np.errstate(over="ignore"):
        return DnpFrames(u8, off, size)
