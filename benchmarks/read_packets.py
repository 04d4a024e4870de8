"""Throughput of the bytes -> packets layer: reading a capture into chunks, then decoding them into columns.

    python benchmarks/read_packets.py [FILE] [--records N] [--chunk-bytes B] [--repeat R]

Without FILE it writes an N-record Ethernet/IPv4/TCP (Modbus-sized payload) pcap to a temporary directory first.
Prints records/s for reading alone and for reading + decoding (best of R runs, one core).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from otsentry.collectors.capture import open_capture
from otsentry.collectors.packets import decode_packets

PCAP_HEADER = bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")


def write_synthetic_pcap(path: Path, records: int, seed: int = 1) -> None:
    """Ethernet/IPv4/TCP frames carrying a 12-byte Modbus request, varied addresses/ports/seq, built with numpy."""
    rng = np.random.default_rng(seed)
    frame = bytearray(
        bytes.fromhex("020000000001020000000002 0800".replace(" ", ""))
        + bytes.fromhex("45000034 00014000 40060000 0a000001 0a000002")
        + bytes.fromhex("c000 01f6 00000000 00000000 5018 2000 0000 0000")
        + bytes.fromhex("0001 0000 0006 01 03 0000 000a")
    )
    rec_len = 16 + len(frame)
    with open(path, "wb") as f:
        f.write(PCAP_HEADER)
        for start in range(0, records, 100_000):
            n = min(100_000, records - start)
            a = np.tile(np.frombuffer(bytes(16) + frame, np.uint8), (n, 1))
            idx = np.arange(start, start + n, dtype=np.uint64)
            ts = np.uint64(1_700_000_000_000_000) + idx * np.uint64(1000)  # microseconds, 1 kHz
            a[:, 0:4] = (ts // np.uint64(10**6)).astype("<u4").view(np.uint8).reshape(n, 4)
            a[:, 4:8] = (ts % np.uint64(10**6)).astype("<u4").view(np.uint8).reshape(n, 4)
            a[:, 8:12] = np.frombuffer(np.uint32(len(frame)).tobytes(), np.uint8)
            a[:, 12:16] = a[:, 8:12]
            ip = 16 + 14
            a[:, ip + 15] = rng.integers(1, 20, n, dtype=np.uint8)  # client 10.0.0.x
            a[:, ip + 20 : ip + 22] = rng.integers(1024, 65535, n).astype(">u2").view(np.uint8).reshape(n, 2)
            a[:, ip + 24 : ip + 28] = idx.astype(">u4").view(np.uint8).reshape(n, 4)
            f.write(a.tobytes())
    assert os.path.getsize(path) == 24 + records * rec_len


def run(path: Path, chunk_bytes: int, decode: bool) -> tuple[int, float]:
    start = time.perf_counter()
    n = 0
    with open_capture(path, chunk_bytes) as reader:
        for chunk in reader.chunks():
            n += len(decode_packets(chunk)) if decode else len(chunk)
    return n, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", type=Path)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--chunk-bytes", type=int, default=8 << 20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file
        if path is None:
            path = Path(tmp) / "synthetic.pcap"
            t = time.perf_counter()
            write_synthetic_pcap(path, args.records)
            size_mb = path.stat().st_size / 1e6
            print(f"wrote {args.records:,} records ({size_mb:.0f} MB) in {time.perf_counter() - t:.2f}s")
        for label, decode in (("read", False), ("read+decode", True)):
            n, best = 0, float("inf")
            for _ in range(args.repeat):
                n, dt = run(path, args.chunk_bytes, decode)
                best = min(best, dt)
            print(f"{label:12s} {n:>10,} records  {best:6.3f}s  {n / best:>12,.0f} records/s")


if __name__ == "__main__":
    main()
