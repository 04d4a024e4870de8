"""OT protocol units built the way the standards lay them out: DNP3 link frames (with CRCs) and transport
segments, IEC 104 APDUs, TPKT/COTP/S7 PDUs, EtherNet/IP encapsulation. The tests' golden and property inputs,
and the benchmark's traffic (``otsentry.synth.ics_traffic``)."""

from __future__ import annotations

import struct

from otsentry.collectors.ics.dnp3_link import crc16

__all__ = ["apdu_i", "apdu_s", "apdu_u", "cip_request", "cip_rr", "cotp_connect", "dnp3_app", "dnp3_frames",
           "dnp3_link", "enip", "enip_identity", "s7_job", "s7_szl", "tpkt_dt"]


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


def dnp3_app(seq: int, function: int, objects: bytes = b"", iin: int | None = None, con: bool = False,
             uns: bool = False) -> bytes:
    """An application fragment: control (FIR, FIN, CON, UNS, sequence), function, IIN (responses), objects."""
    control = 0xC0 | (0x20 if con else 0) | (0x10 if uns else 0) | seq & 0x0F
    return bytes([control, function]) + (b"" if iin is None else struct.pack(">H", iin)) + objects


def apdu_s(rx: int) -> bytes:
    """A supervisory frame acknowledging ``rx`` I-frames."""
    return bytes([0x68, 4, 1, 0]) + struct.pack("<H", (rx & 0x7FFF) << 1)


def cotp_connect(confirm: bool = False, slot: int = 2) -> bytes:
    """A COTP connection request (or confirm) in TPKT, with the TSAPs of an HMI talking to rack 0, ``slot``."""
    params = bytes([0xC1, 2, 1, 0, 0xC2, 2, 1, slot, 0xC0, 1, 0x0A])
    cotp = bytes([0xD0 if confirm else 0xE0]) + (b"\x00\x01\x00\x02" if confirm else b"\x00\x00\x00\x01") + \
        b"\x00" + params
    cotp = bytes([len(cotp)]) + cotp
    return b"\x03\x00" + struct.pack(">H", 4 + len(cotp)) + cotp


def s7_szl(szl_id: int, ref: int, records: bytes = b"", record_size: int = 0, count: int = 0,
           response: bool = False) -> bytes:
    """A userdata "read SZL" request, or its answer carrying ``count`` records of ``record_size`` bytes."""
    if not response:
        params = bytes([0, 1, 0x12, 4, 0x11, 0x44, 1, 0])
        data = b"\xff\x09" + struct.pack(">HHH", 4, szl_id, 0)
    else:
        params = bytes([0, 1, 0x12, 8, 0x12, 0x84, 1, 1, 0, 0, 0, 0])
        body = struct.pack(">HHHH", szl_id, 0, record_size, count) + records
        data = b"\xff\x09" + struct.pack(">H", len(body)) + body
    return s7_job(params, data, ref=ref, rosctr=7)


def cip_request(service: int, path: bytes, data: bytes = b"") -> bytes:
    """A CIP request: service, path size in words, path (padded to even), request data."""
    if len(path) % 2:
        path += b"\0"
    return bytes([service, len(path) // 2]) + path + data


def enip_identity(vendor: int, device_type: int, product: int, revision: tuple[int, int], serial: int,
                  name: str, ip: bytes) -> bytes:
    """The body of a ListIdentity reply: one CIP identity item."""
    socket = struct.pack(">HH", 2, 44818) + ip + bytes(8)
    item = struct.pack("<H", 1) + socket + struct.pack("<HHHBBHI", vendor, device_type, product, *revision, 0x0030,
                                                       serial) + bytes([len(name)]) + name.encode() + b"\x03"
    return struct.pack("<HHH", 1, 0x0C, len(item)) + item
