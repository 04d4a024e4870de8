"""Finding where each classic-pcap record starts, mostly with numpy.

Why: record headers chain (each record's caplen says where the next one starts), so the obvious walk is a Python
loop, and at a million records per second that loop alone cost ~0.2 s. Records of one capture share the upper 16
bits of their timestamp seconds (they change once every 18 hours), so numpy can list every byte offset whose
header *could* start a record (candidates, a few false ones inside packet data among them), compute each
candidate's successor, and keep the candidates reachable from the known first record. Each kept position is the
successor of the one before it, so the result is exactly what the loop finds; where the chain leaves the
candidates (a timestamp from another 18-hour span, a corrupt length), the Python loop takes over for a while.
"""

from __future__ import annotations

import struct
import sys

import numpy as np

__all__ = ["MAX_FAILS", "MAX_ROUNDS", "PY_BATCH", "VECTOR_MIN_BYTES", "walk_records"]

VECTOR_MIN_BYTES = 64 << 10  # less than this left to walk: the plain loop is cheaper than a scan
PY_BATCH = 64  # records walked by the loop between two attempts to resume the vectorised chain
MAX_FAILS = 3  # unproductive vectorised attempts per buffer before the loop walks the rest
MAX_ROUNDS = 24  # fixpoint rounds (longest chain of false candidates) before giving up on a scan


def walk_records(buf: bytes, pos: int, endian: str) -> tuple[np.ndarray, int]:
    """Caplen-field offsets of the records whose header fits in ``buf`` from ``pos`` on, and the loop's final pos.

    Identical to ``while pos <= len(buf) - 8: out.append(pos); pos += 16 + caplen_at(pos)``.
    """
    last = len(buf) - 8
    parts: list[np.ndarray] = []
    walker = _Walker(buf, endian, last)
    batch, fails = PY_BATCH, 0
    while pos <= last:
        vector = fails < MAX_FAILS and last - pos >= VECTOR_MIN_BYTES
        if vector:
            chain, pos = walker.chain(pos)
            if chain is not None and len(chain) >= 4 * batch:
                parts.append(chain)
                batch = PY_BATCH
            else:
                if chain is not None:
                    parts.append(chain)
                fails += 1
                batch *= 4
            if pos > last:
                break
        got, pos = walker.loop(pos, batch if vector else -1)  # -1: no limit
        parts.append(got)
    if not parts:
        return np.empty(0, dtype=np.int64), pos
    return (parts[0] if len(parts) == 1 else np.concatenate(parts)), pos


class _Walker:
    """One buffer's caplen reader, the Python loop, and the candidate graph of the current timestamp span."""

    def __init__(self, buf: bytes, endian: str, last: int) -> None:
        self.buf, self.endian, self.last = buf, endian, last
        self.unpack = struct.Struct(endian + "I").unpack_from
        self.key: int | None = None  # upper timestamp bits the candidates were scanned for
        self.cand = np.empty(0, dtype=np.int64)

    def loop(self, pos: int, limit: int) -> tuple[np.ndarray, int]:
        """At most ``limit`` records (no limit if negative) with the plain loop."""
        out: list[int] = []
        app, last, buf = out.append, self.last, self.buf
        if (self.endian == "<") == (sys.byteorder == "little") and struct.calcsize("I") == 4:
            # Four uint32 views of the buffer, one per byte alignment: the caplen at ``pos`` is
            # ``views[pos & 3][pos >> 2]`` (a plain index, no call, no tuple), a quarter faster than struct.
            mv = memoryview(buf)
            end = len(buf)
            views = tuple(mv[k : k + (end - k) // 4 * 4].cast("I") for k in range(4))
            while pos <= last and limit:
                app(pos)
                pos += 16 + views[pos & 3][pos >> 2]
                limit -= 1
            del views, mv
        else:
            unpack = self.unpack
            while pos <= last and limit:
                app(pos)
                (n,) = unpack(buf, pos)
                pos += 16 + n
                limit -= 1
        return np.fromiter(out, np.int64, len(out)), pos

    def _scan(self, key: int, first: int) -> None:
        """Candidates: caplen-field offsets >= ``first`` whose record's timestamp has upper bits ``key``."""
        high = 2 if self.endian == "<" else 0  # where the upper 16 bits of ts_sec sit in a record header
        lo, hi = first - 8 + high, self.last - 8 + high  # record starts r with r + 8 <= last
        region = memoryview(self.buf)[lo : hi + 2]
        dt = np.dtype(self.endian + "u2")
        even = np.frombuffer(region, dt, count=len(region) // 2)
        odd = np.frombuffer(region, dt, count=(len(region) - 1) // 2, offset=1)
        cand = np.concatenate([np.flatnonzero(even == key) * 2, np.flatnonzero(odd == key) * 2 + 1])
        cand.sort(kind="stable")  # two sorted runs: the stable sort merges them
        cand += first
        caplen = np.ndarray((len(self.buf) - 3,), dtype=self.endian + "u4", buffer=self.buf, strides=(1,))[cand]
        nxt = cand + 16 + caplen.astype(np.int64)
        succ = np.searchsorted(cand, nxt)
        has = succ < len(cand)
        has[has] = cand[succ[has]] == nxt[has]
        self.key, self.cand, self.nxt, self.succ, self.has = key, cand, nxt, succ, has

    def chain(self, pos: int) -> tuple[np.ndarray | None, int]:
        """The records from ``pos`` on while each one's successor is a candidate; (None, pos) if ``pos`` is not one."""
        r = pos - 8 + (2 if self.endian == "<" else 0)
        key = int.from_bytes(self.buf[r : r + 2], "little" if self.endian == "<" else "big")
        if key != self.key:  # scanned from an earlier record on, so pos is inside the scanned span
            self._scan(key, pos)
        i0 = int(np.searchsorted(self.cand, pos))
        if i0 == len(self.cand) or int(self.cand[i0]) != pos:
            return None, pos
        has, succ = self.has[i0:], self.succ[i0:] - i0
        # Reachable from pos: start from "all" and drop candidates without a kept predecessor until nothing changes.
        valid = np.ones(len(has), dtype=bool)
        for _ in range(MAX_ROUNDS):
            kept = np.zeros(len(has), dtype=bool)
            kept[0] = True
            kept[succ[valid & has]] = True
            if np.array_equal(kept, valid):
                break
            valid = kept
        else:
            return None, pos
        rows = np.flatnonzero(valid) + i0
        return self.cand[rows], int(self.nxt[rows[-1]])
