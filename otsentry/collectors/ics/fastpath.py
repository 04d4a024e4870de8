"""Vectorised framing of OT TCP segments for the common case: the OT counterpart of ``collectors.fastpath``.

A connection takes the fast path for a chunk when each of its segments in the chunk (both directions) is a pure
acknowledgment or holds only whole units of its protocol back to back, follows its direction's previous segment
exactly, and nothing is pending in either direction (no partial unit, no held bytes, no COTP segment in
progress), and when every unit is of a kind ``fastunits`` reads. That is what a poller and its device exchange
nearly all the time. Every other connection of the chunk goes, segment by segment in capture order, through the
general path (reassembly, framer, parser, pairer); both give the same counts and operations (tested on every
capture and on generated segmentations). The length rules are those of ``framing.FRAMES``, over arrays.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from otsentry.collectors.ics.dnp3_link import MIN_LEN, frame_size
from otsentry.collectors.ics.enip_names import COMMANDS as ENIP_COMMANDS
from otsentry.collectors.reassembly import SEQ_MOD

__all__ = ["FAST_FRAMERS", "MAX_UNITS_PER_SEGMENT", "frame_segments", "gather", "lookup", "stream_breaks"]

MAX_UNITS_PER_SEGMENT = 16  # more (rare) goes to the general path
_ENIP_KNOWN = np.zeros(65536, dtype=bool)
_ENIP_KNOWN[[c for c in ENIP_COMMANDS if c != 0]] = True  # NOP's all-zero header matches any run of zeros


def gather(u8: np.ndarray, pos: np.ndarray, k: int | np.ndarray = 0) -> np.ndarray:
    """The byte ``k`` after each position, as int64; clipped to the buffer (rows that are not what they are
    checked for may read noise, never past the end). Every array reader of the fast path reads through it."""
    return u8.take(pos + k, mode="clip").astype(np.int64)


def lookup(entries: dict[int, int], size: int, default: int = -1) -> np.ndarray:
    """A code table as an array indexed by code (``default`` for codes not listed)."""
    table = np.full(size, default, dtype=np.int64)
    for code, value in entries.items():
        table[code] = value
    return table



def _iec104(u8: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return np.where(gather(u8, pos, 0) == 0x68, 2 + gather(u8, pos, 1), -1)


def _tpkt(u8: np.ndarray, pos: np.ndarray) -> np.ndarray:
    size = gather(u8, pos, 2) << 8 | gather(u8, pos, 3)
    return np.where((gather(u8, pos, 0) == 3) & (gather(u8, pos, 1) == 0) & (size >= 7), size, -1)


def _enip(u8: np.ndarray, pos: np.ndarray) -> np.ndarray:
    command = gather(u8, pos, 0) | gather(u8, pos, 1) << 8
    options = gather(u8, pos, 20) | gather(u8, pos, 21) | gather(u8, pos, 22) | gather(u8, pos, 23)
    return np.where(_ENIP_KNOWN[command] & (options == 0), 24 + (gather(u8, pos, 2) | gather(u8, pos, 3) << 8), -1)


def _dnp3(u8: np.ndarray, pos: np.ndarray) -> np.ndarray:
    length = gather(u8, pos, 2)
    return np.where((gather(u8, pos, 0) == 0x05) & (gather(u8, pos, 1) == 0x64) & (length >= MIN_LEN),
                    frame_size(length), -1)


# framer -> (bytes a size needs, size of the unit starting at each position or -1)
FAST_FRAMERS: dict[str, tuple[int, Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
    "tpkt": (4, _tpkt), "iec104": (2, _iec104), "enip": (24, _enip), "dnp3": (3, _dnp3)}


def frame_segments(framer: str, u8: np.ndarray, base: np.ndarray,
                   plen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Which segments (payload at ``base``, ``plen`` bytes) are whole units of ``framer`` back to back, and their
    units: (whole per segment, segment of each unit, its offset, its size), units in segment then byte order."""
    head, size_at = FAST_FRAMERS[framer]
    n = len(base)
    end = base + plen
    pos = base.copy()
    alive = plen > 0
    done = np.zeros(n, dtype=bool)
    segs, offs, sizes = [], [], []
    for _ in range(MAX_UNITS_PER_SEGMENT):
        act = np.flatnonzero(alive & ~done)
        if not len(act):
            break
        at = pos[act]
        room = end[act] - at
        size = np.where(room >= head, size_at(u8, at), -1)
        good = (size > 0) & (size <= room)
        alive[act[~good]] = False
        act, at, size = act[good], at[good], size[good]
        segs.append(act)
        offs.append(at)
        sizes.append(size)
        pos[act] = at + size
        done[act] = pos[act] == end[act]
    whole = alive & done
    if not segs:
        empty = np.empty(0, dtype=np.int64)
        return whole, empty, empty, empty
    seg, off, size = np.concatenate(segs), np.concatenate(offs), np.concatenate(sizes)
    keep = whole[seg]
    seg, off, size = seg[keep], off[keep], size[keep]
    order = np.lexsort((off, seg))  # segment order, then byte order within a segment
    return whole, seg[order], off[order], size[order]


def stream_breaks(sid: np.ndarray, seq: np.ndarray, plen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Over data segments in capture order: the streams where one segment does not follow the previous one of
    its stream exactly (a retransmission, a hole, a reordering), and each stream's first segment (an index)."""
    order = np.argsort(sid, kind="stable")
    s = sid[order]
    first = np.ones(len(s), dtype=bool)
    first[1:] = s[1:] != s[:-1]
    follows = np.ones(len(s), dtype=bool)
    follows[1:] = seq[order[1:]] == (seq[order[:-1]] + plen[order[:-1]]) % SEQ_MOD
    broken = np.unique(s[~first & ~follows])
    return broken, order[first]
