"""OT protocol units built the way the standards lay them out: DNP3 link frames (with CRCs) and transport
segments, IEC 104 APDUs, TPKT/COTP/S7 PDUs, EtherNet/IP encapsulation. The tests' golden and property inputs,
and the benchmark's traffic (``otsentry.synth.ics_traffic``)."""

from __future__ import annotations

import struct

from otsentry.collectors.ics.dnp3_link import crc16

__all__ = ["apdu_i", "apdu_u", "cip_rr", "dnp3_frames", "dnp3_link", "enip", "s7_job", "tpkt_dt"]


def dnp3_link(control: int, dst: int, src: int, data: bytes = b"") -> bytes:
    head = b"\x05\x64" + bytes([5 + len(data), control]) + struct.pack("<HH", dst, src)
    out = head + struct.pack("<H", crc16(head))
    for i in range(0, len(data), 16):
        block = data[i : i + 16]
        out += block + struct.pack("<H", crc16(block))
    return out


def dnp3_frames(fragment: bytes, dst: int = 4, src: int = 3, from_master: bool = True, seq: int = 0,
                segment: int = 249) -> list[bytes]:
    """An application fragment as link frames (transport segments of ``segment`` bytes, FIR/FIN/sequence)."""
    pieces = [fragment[i : i + segment] for i in range(0, len(fragment), segment)] or [b""]
    control = (0x80 if from_master else 0) | 0x40 | 0x04  # DIR, PRM, UNCONFIRMED_USER_DATA
    out = []
    for i, piece in enumerate(pieces):
        th = (0x40 if i == 0 else 0) | (0x80 if i == len(pieces) - 1 else 0) | (seq + i) & 0x3F
        out.append(dnp3_link(control, dst, src, bytes([th]) + piece))
    return out


def apdu_i(type_id: int, cause: int, ca: int, objects: bytes, count: int = 1, negative: bool = False,
           tx: int = 0, rx: int = 0) -> bytes:
    asdu = bytes([type_id, count, cause | (0x40 if negative else 0), 0]) + struct.pack("<H", ca) + objects
    return bytes([0x68, 4 + len(asdu)]) + struct.pack("<HH", (tx & 0x7FFF) << 1, (rx & 0x7FFF) << 1) + asdu


def apdu_u(function: int) -> bytes:
    return bytes([0x68, 4, function, 0, 0, 0])


def tpkt_dt(payload: bytes, eot: bool = True) -> bytes:
    cotp = bytes([2, 0xF0, 0x80 if eot else 0])
    return b"\x03\x00" + struct.pack(">H", 4 + len(cotp) + len(payload)) + cotp + payload


def s7_job(params: bytes, data: bytes = b"", ref: int = 1, rosctr: int = 1) -> bytes:
    head = struct.pack(">BBHHHH", 0x32, rosctr, 0, ref, len(params), len(data))
    if rosctr in (2, 3):
        head += b"\0\0"
    return head + params + data


def enip(command: int, body: bytes = b"", session: int = 0x11, context: bytes = b"ctx00001") -> bytes:
    return struct.pack("<HHII", command, len(body), session, 0) + context + b"\0\0\0\0" + body


def cip_rr(cip: bytes) -> bytes:
    """A SendRRData body with one unconnected data item."""
    return struct.pack("<IHH", 0, 10, 2) + struct.pack("<HH", 0, 0) + struct.pack("<HH", 0xB2, len(cip)) + cip
