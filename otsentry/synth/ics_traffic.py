"""Generated OT traffic of one protocol: a master polling one device over one TCP connection, for benchmarks.

Each exchange is a request segment and its answer segment (one unit each, as most masters send them); about one
exchange in ten is a write or control instead of a read. Deterministic for a seed, written as a pcap.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Callable

from otsentry.synth.frames import Direction, Link
from otsentry.synth.ics_frames import apdu_i, cip_rr, dnp3_frames, enip, s7_job, tpkt_dt
from otsentry.synth.pcapwriter import PcapWriter

__all__ = ["PORTS", "PROTOCOLS", "write_ics_capture"]

ACK, PSH = 0x10, 0x08
PORTS = {"dnp3": 20000, "iec104": 2404, "s7comm": 102, "enip": 44818}
PROTOCOLS = tuple(PORTS)


def _dnp3(i: int, rng: random.Random) -> tuple[bytes, bytes]:
    seq = i & 0x0F
    if rng.random() < 0.1:
        crob = struct.pack("<BBIIB", 0x41, 1, 100, 0, 0)
        req = bytes([0xC0 | seq, 0x05, 12, 1, 0x28, 1, 0, rng.randrange(16), 0]) + crob
    else:
        req = bytes([0xC0 | seq, 0x01, 30, 1, 0x00, 0, 9])
    resp = bytes([0xC0 | seq, 0x81, 0, 0, 30, 1, 0x00, 0, 9]) + b"".join(
        struct.pack("<Bi", 1, rng.randrange(1000)) for _ in range(10))
    return dnp3_frames(req, dst=4, src=3)[0], dnp3_frames(resp, dst=3, src=4, from_master=False)[0]


def _iec104(i: int, rng: random.Random) -> tuple[bytes, bytes]:
    if rng.random() < 0.1:
        ioa = struct.pack("<I", rng.randrange(100))[:3]
        return apdu_i(45, 6, 1, ioa + b"\x01", tx=i, rx=i), apdu_i(45, 7, 1, ioa + b"\x01", tx=i, rx=i + 1)
    objects = b"".join(struct.pack("<I", k)[:3] + struct.pack("<hB", rng.randrange(1000), 0) for k in range(8))
    # general interrogation: confirmed, then the answer (two APDUs in one segment, as controlled stations send them)
    return apdu_i(100, 6, 1, b"\0\0\0\x14", tx=i, rx=i), apdu_i(100, 7, 1, b"\0\0\0\x14", tx=i, rx=i + 1) + \
        apdu_i(11, 20, 1, objects, count=8, tx=i + 1, rx=i + 1)


def _s7comm(i: int, rng: random.Random) -> tuple[bytes, bytes]:
    item = bytes([0x12, 0x0A, 0x10, 0x02]) + struct.pack(">HHB", 10, 1, 0x84) + (8 * rng.randrange(64)).to_bytes(3, "big")
    func = 0x05 if rng.random() < 0.1 else 0x04
    req = s7_job(bytes([func, 1]) + item, b"\0\x04\0\x50" + bytes(10) if func == 5 else b"", ref=i & 0xFFFF)
    resp = s7_job(bytes([func, 1]), b"\xff\x04\x00\x50" + bytes(10), ref=i & 0xFFFF, rosctr=3)
    return tpkt_dt(req), tpkt_dt(resp)


def _enip(i: int, rng: random.Random) -> tuple[bytes, bytes]:
    service = 0x10 if rng.random() < 0.1 else 0x0E
    context = struct.pack("<Q", i)
    req = enip(0x006F, cip_rr(bytes([service, 3, 0x20, 0x04, 0x24, 0x64, 0x30, 0x03])), context=context)
    resp = enip(0x006F, cip_rr(bytes([service | 0x80, 0, 0, 0]) + bytes(16)), context=context)
    return req, resp


EXCHANGES: dict[str, Callable[[int, random.Random], tuple[bytes, bytes]]] = {
    "dnp3": _dnp3, "iec104": _iec104, "s7comm": _s7comm, "enip": _enip}


def write_ics_capture(path: Path, protocol: str, packets: int, seed: int = 1) -> int:
    """Write ``packets`` packets (request and answer segments) of ``protocol``; returns the exchanges written."""
    if protocol not in EXCHANGES:
        raise ValueError(f"unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    rng = random.Random(seed)
    link = Link()
    out = Direction("10.0.0.8", "10.0.0.3", 40000, PORTS[protocol], link)
    back = Direction("10.0.0.3", "10.0.0.8", PORTS[protocol], 40000, link.reverse())
    seq_c, seq_s = 1000, 5000
    ts = 1_700_000_000 * 10**9
    exchanges = packets // 2
    with PcapWriter(path) as writer:
        for i in range(exchanges):
            req, resp = EXCHANGES[protocol](i, rng)
            writer.write(ts, out.tcp(seq_c, seq_s, ACK | PSH, req, ident=i))
            seq_c += len(req)
            writer.write(ts + 2_000_000, back.tcp(seq_s, seq_c, ACK | PSH, resp, ident=i))
            seq_s += len(resp)
            ts += 50_000_000  # 20 exchanges per second
    return exchanges
