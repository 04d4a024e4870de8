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
from otsentry.collectors.chunks import view_as
from otsentry.collectors.ics.dnp3_app import HEADERS_ONLY, UNPAIRED
from otsentry.collectors.ics.dnp3_link import BLOCK, CRC_TABLE, HEADER, MIN_LEN, frame_size
from otsentry.collectors.ics.dnp3_names import ERROR_IIN_MASK, FUNCTIONS, OBJECT_SIZES, PACKED_BITS, RESPONSE_CODES
from otsentry.collectors.ics.dnp3_objects import COUNT_BYTES, PREFIX_BYTES, RANGE_BYTES
from otsentry.collectors.ics.fastpath import gather, lookup

__all__ = ["DnpFrames", "MAX_HEADERS", "crc_errors", "read_frames", "walk_malformed"]

MAX_HEADERS = 32  # object headers walked per fragment over arrays; more (rare) goes to the general path
_CRC = np.array(CRC_TABLE, dtype=np.int64)


_RANGE_W, _COUNT_W, _PREFIX_W = lookup(RANGE_BYTES, 16, 0), lookup(COUNT_BYTES, 16, 0), lookup(PREFIX_BYTES, 8, 0)
_BITS = np.zeros((256, 256), dtype=np.int64)
_SIZE = np.full((256, 256), -1, dtype=np.int64)  # bytes per object, -1: not fixed
for (_g, _v), _n in PACKED_BITS.items():
    _BITS[_g, _v] = _n
for _g in (110, 111, 112, 113):  # octet strings: the variation is the length
    _SIZE[_g, :] = np.arange(256)
for (_g, _v), _n in OBJECT_SIZES.items():
    _SIZE[_g, _v] = _n
_KNOWN, _RESPONSE, _HEADERS_ONLY, _UNPAIRED = (lookup(dict.fromkeys(codes, 1), 256, 0).astype(bool)
                                                for codes in (FUNCTIONS, RESPONSE_CODES, HEADERS_ONLY, UNPAIRED))


def _word_table() -> np.ndarray:
    """Two bytes at a time: a 16-bit register XORed with the next two bytes is shifted out entirely."""
    x = np.arange(65536, dtype=np.int64)
    c = (x >> 8) ^ _CRC[x & 0xFF]  # the low byte
    return (c >> 8) ^ _CRC[c & 0xFF]  # the high byte (already XORed into the register)


_CRC2 = _word_table()


def _crc(u8: np.ndarray, words: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """CRC-16/DNP of ``length`` (at most 16) bytes at each ``start``: two bytes per step (``words`` reads the
    little-endian 16-bit word at every byte offset of ``u8``), a last odd byte alone; blocks of one length
    (16, most of them) step without masks."""
    crc = np.zeros(len(start), dtype=np.int64)
    if not len(start):
        return crc
    top = int(length.max())
    full = np.flatnonzero(length == top)
    part = np.flatnonzero(length != top)
    c = np.zeros(len(full), dtype=np.int64)
    at = start[full]
    for j in range(0, top - 1, 2):  # within each block: no clipping (a fancy index of a strided view is fast)
        c = _CRC2[c ^ words[at + j]]
    crc[full] = c
    if len(part):
        c, at, n = crc[part], start[part], length[part]
        last = len(words) - 1
        for j in range(0, top - 1, 2):
            c = np.where(j + 2 <= n, _CRC2[c ^ words[np.minimum(at + j, last)]], c)
        crc[part] = c
    odd = np.flatnonzero(length & 1)
    if len(odd):
        byte = gather(u8, start[odd] + length[odd] - 1)
        crc[odd] = (crc[odd] >> 8) ^ _CRC[(crc[odd] ^ byte) & 0xFF]
    return ~crc & 0xFFFF


def _le(u8: np.ndarray, at: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Little-endian unsigned integers of 0, 1, 2 or 4 bytes at ``at``."""
    out = np.zeros(len(at), dtype=np.int64)
    for k in range(4):
        out |= np.where(k < width, gather(u8, at, k) << (8 * k), 0)
    return out


def crc_errors(u8: np.ndarray, off: np.ndarray, data_len: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blocks with a wrong CRC per frame (header included), and each frame's data blocks (frame, start, length).
    Frames are whole in ``u8`` (the framer cut them), so their blocks and CRCs are read unclipped."""
    words = view_as(u8, "<u2")
    errors = (_crc(u8, words, off, np.full(len(off), 8)) != words[off + 8]).astype(np.int64)
    blocks = (data_len + BLOCK - 1) // BLOCK
    frame = np.repeat(np.arange(len(off)), blocks)
    k = np.arange(len(frame)) - np.repeat(np.cumsum(blocks) - blocks, blocks)
    start = off[frame] + HEADER + (BLOCK + 2) * k
    length = np.minimum(BLOCK, data_len[frame] - BLOCK * k)
    if len(frame):
        errors += np.bincount(frame, weights=_crc(u8, words, start, length) != words[start + length],
                              minlength=len(off)).astype(np.int64)
    return errors, np.stack([frame, start, length]) if len(frame) else np.zeros((3, 0), dtype=np.int64)


def walk_malformed(u8: np.ndarray, base: np.ndarray, n: np.ndarray, pos: np.ndarray,
                   with_data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(decided, malformed) per fragment (``n`` bytes at ``base``, headers from offset ``pos``): ``walk_objects``'s
    malformed flag where the walk needs no size prefix or device attribute and has at most MAX_HEADERS headers."""
    m = len(base)
    decided, malformed, rejected = np.zeros(m, dtype=bool), np.zeros(m, dtype=bool), np.zeros(m, dtype=bool)
    pos = pos.copy()
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
        g, v, q = (gather(u8, at, k) for k in range(3))
        p = p + 3
        prefix, rng = q >> 4 & 7, q & 0x0F
        wr, wc = _RANGE_W[rng], _COUNT_W[rng]
        need = np.where(wr > 0, 2 * wr, wc)
        lo, hi = _le(u8, base[act] + p, np.where(wr > 0, wr, wc)), _le(u8, base[act] + p + wr, wr)
        count = np.where(wr > 0, hi - lo + 1, lo)
        bad = (((wr > 0) | (wc > 0)) & (p + need > size)) | ((wr > 0) & (hi < lo))  # cut short, backwards
        bad |= ((wr == 0) & (wc == 0) & (rng != 6)) | (prefix == 7)  # reserved range or prefix codes
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
        # an object of unknown size after its prefix: the walk stops there (not malformed, if the prefix is in)
        unknown = body & ~packed & ~variable & (prefix > 0) & (osize < 0)
        undecoded = unknown & (p + pw <= size)
        rejected[act[variable]] = True
        decided[act[undecoded]] = True
        past = ~variable & ~undecoded & (unknown | (end > size))
        decided[act[past]] = malformed[act[past]] = True
        go = ~variable & ~undecoded & ~past
        pos[act[go]] = end[go]
    return decided & ~rejected, malformed


class DnpFrames:
    """What the decoder makes of each DNP3 link frame of the fast path, over arrays.

    ``ok`` frames are read here; ``message`` ones complete an application fragment, whose bytes are at
    ``at``/``length`` in ``buf``, sent between ``stations`` (master, outstation link addresses)."""

    __slots__ = ("ok", "message", "crc_errors", "malformed", "request", "error", "function", "keyed", "key",
                 "buf", "at", "length", "stations")

    def __init__(self, u8: np.ndarray, off: np.ndarray, size: np.ndarray) -> None:
        length, control = gather(u8, off, 2), gather(u8, off, 3)
        destination = gather(u8, off, 4) | gather(u8, off, 5) << 8
        source = gather(u8, off, 6) | gather(u8, off, 7) << 8
        data_len = length - MIN_LEN
        self.crc_errors, blocks = crc_errors(u8, off, data_len)
        carries = (control & 0x40 > 0) & ((control & 0x0F == 3) | (control & 0x0F == 4)) & (data_len > 0) \
            & (self.crc_errors == 0)
        # user data without the CRCs, frame after frame (only the frames that carry some)
        sel = carries[blocks[0]]
        ud = u8[ranges(blocks[1][sel], blocks[2][sel])]
        if not len(ud):
            ud = np.zeros(1, dtype=np.uint8)  # nothing carries data: a byte to gather from, never read
        ud_len = np.where(carries, data_len, 0)
        ud_at = np.cumsum(ud_len) - ud_len
        transport = gather(ud, ud_at)
        whole = carries & (transport & 0xC0 == 0xC0)  # FIR and FIN: the fragment is this segment's body
        self.ok = ~carries | whole
        self.message = whole.copy()
        from_master = control & 0x80 > 0
        master, outstation = np.where(from_master, source, destination), np.where(from_master, destination, source)
        self.stations = np.stack([master, outstation], axis=1)
        self.length = np.where(whole, data_len - 1, 0)
        self.at = ud_at + 1  # the fragment follows the transport header
        self.buf = ud
        fc, seq = gather(ud, self.at, 1), gather(ud, self.at) & 0x0F
        response = _RESPONSE[fc]
        readable = (self.length >= 2) & _KNOWN[fc] & (~response | (self.length >= 4))
        decided, self.malformed = walk_malformed(ud, self.at, self.length, np.where(response, 4, 2),
                                                 response | ~_HEADERS_ONLY[fc])
        self.ok &= ~whole | (readable & decided)
        self.message &= self.ok
        self.malformed &= self.message
        self.request = ~response
        self.error = response & ((gather(ud, self.at, 2) << 8 | gather(ud, self.at, 3)) & ERROR_IIN_MASK != 0)
        self.function = fc
        self.keyed = ~_UNPAIRED[fc]
        self.key = np.stack([outstation, master, seq], axis=1)

    def spread(self, rows: np.ndarray) -> "DnpFrames":
        """These frames' results placed at ``rows`` (a mask) of a longer list whose other units are not ok."""
        for name in self.__slots__:
            if name != "buf":
                value = getattr(self, name)
                full = np.zeros((len(rows), *value.shape[1:]), dtype=value.dtype)
                full[rows] = value
                setattr(self, name, full)
        return self


def read_frames(u8: np.ndarray, off: np.ndarray, size: np.ndarray) -> DnpFrames:
    """The frames at ``off`` of ``size`` bytes; a unit that is not one whole link frame is not ``ok``."""
    with np.errstate(over="ignore"):
        length = gather(u8, off, 2)
        whole = ((size >= HEADER) & (gather(u8, off) == 0x05) & (gather(u8, off, 1) == 0x64) & (length >= MIN_LEN)
                 & (size == frame_size(length)))
        if whole.all():
            return DnpFrames(u8, off, size)
        return DnpFrames(u8, off[whole], size[whole]).spread(whole)
