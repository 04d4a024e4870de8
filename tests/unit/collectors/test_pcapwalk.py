"""The vectorised pcap record walk against the plain loop it replaces (identical positions and final offset)."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from otsentry.collectors import pcapwalk
from otsentry.collectors.pcapwalk import walk_records


def _reference(buf: bytes, pos: int, endian: str) -> tuple[list[int], int]:
    out, last = [], len(buf) - 8
    while pos <= last:
        out.append(pos)
        pos += 16 + struct.unpack_from(endian + "I", buf, pos)[0]
    return out, pos


def _records(rng: random.Random, n: int, endian: str, ts0: int, jump_every: int = 0, fake: float = 0.0) -> bytes:
    """``n`` pcap records; payloads sometimes hold byte patterns that look like a record header."""
    parts, ts = [], ts0
    for i in range(n):
        if jump_every and i and i % jump_every == 0:
            ts += rng.choice([70000, -70000, 1 << 20])
        size = rng.choice([60, 64, 66, 70, 75, 120, rng.randrange(0, 300)])
        body = bytearray(rng.randbytes(size))
        if fake and size >= 24 and rng.random() < fake:  # a header lookalike inside the payload
            at = rng.randrange(0, size - 16)
            body[at : at + 16] = struct.pack(endian + "IIII", ts & 0xFFFFFFFF, 0, rng.randrange(0, 200), 0)
        parts.append(struct.pack(endian + "IIII", ts & 0xFFFFFFFF, rng.randrange(10**6), size, size) + bytes(body))
        ts += rng.randrange(0, 3)
    return b"".join(parts)


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("seed", range(6))
def test_walk_matches_loop(endian: str, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcapwalk, "VECTOR_MIN_BYTES", 2048)
    rng = random.Random(seed)
    buf = _records(rng, 3000, endian, 1_700_000_000 + seed * 40_000, jump_every=[0, 0, 700, 97, 1, 0][seed],
                   fake=[0.0, 0.3, 0.1, 0.5, 0.2, 1.0][seed])
    for cut in (len(buf), len(buf) - 7, len(buf) - 100, len(buf) // 2 + 3, 5000, 40, 15, 0):
        part = buf[:cut]
        at, pos = walk_records(part, 8, endian)
        ref, ref_pos = _reference(part, 8, endian)
        assert at.tolist() == ref and pos == ref_pos, cut


def test_walk_with_junk_lengths(monkeypatch: pytest.MonkeyPatch) -> None:
    """A corrupt caplen in the middle: the walk goes on through garbage exactly as the loop does."""
    monkeypatch.setattr(pcapwalk, "VECTOR_MIN_BYTES", 2048)
    rng = random.Random(9)
    buf = bytearray(_records(rng, 2000, "<", 1_600_000_000, fake=0.3))
    ref, _ = _reference(bytes(buf), 8, "<")
    for k in (5, 700, 1500):
        struct.pack_into("<I", buf, ref[k], rng.choice([3, 17, 1 << 30, 100_000]))
    data = bytes(buf)
    at, pos = walk_records(data, 8, "<")
    assert (at.tolist(), pos) == _reference(data, 8, "<")


def test_walk_real_sizes() -> None:
    """Default thresholds on a buffer large enough for the vectorised path."""
    rng = random.Random(3)
    buf = _records(rng, 20000, "<", 1_700_000_000, fake=0.05)
    at, pos = walk_records(buf, 8, "<")
    assert at.dtype == np.int64
    assert (at.tolist(), pos) == _reference(buf, 8, "<")
