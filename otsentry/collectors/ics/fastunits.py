"""Vectorised reading of the frequent well-formed OT units: what counting and pairing need, as the parsers read it.

For each framed unit (its bytes at ``off``/``size`` in a chunk's buffer) ``classify`` says whether it is of a kind
read here (if not, its connection takes the general path for the chunk) and, for those that are, what
``units.UnitDecoder`` and the protocol's parser make of it: protocol, request or not, error status, operation
name and pairing key, the key as integer columns (``key_columns`` encodes a parser's key the same way, for
requests carried over from an earlier chunk). Objects, values and details are the parser's: ``message_of`` runs
it on the unit when an operation is read. Kinds read here: S7comm job/ack-data PDUs in one COTP DT TPDU,
IEC 104 I/S/U APDUs with known type ids and whole objects, EtherNet/IP commands with SendRRData/SendUnitData
carrying one well-formed CIP message in the usual two-item CPF, DNP3 link frames (``fast_dnp3``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from otsentry.collectors.ics.dnp3_app import parse_fragment
from otsentry.collectors.ics.dnp3_names import FUNCTIONS as DNP3_FUNCTIONS
from otsentry.collectors.ics.enip import parse_encapsulation
from otsentry.collectors.ics.enip_names import COMMANDS, SERVICES
from otsentry.collectors.ics.fast_dnp3 import read_frames
from otsentry.collectors.ics.fastpath import gather, lookup
from otsentry.collectors.ics.iec104 import parse_apdu
from otsentry.collectors.ics.iec104_names import TYPES, U_FUNCTIONS
from otsentry.collectors.ics.message import Message
from otsentry.collectors.ics.s7_names import FUNCTIONS as S7_FUNCTIONS
from otsentry.collectors.ics.s7comm import parse_s7comm

__all__ = ["ABSENT", "LINK_COUNTS", "NAMES", "PROTOCOLS", "UnitClasses", "classify", "key_columns",
           "message_of"]

PROTOCOLS = ("s7comm", "iec104", "enip", "dnp3")
LINK_COUNTS = {"tpkt": "cotp", "dnp3": "dnp3"}  # framer -> the protocol whose link_frames count its units
ABSENT = np.uint64(2**64 - 1)  # a key field the parser's key does not have
_S7_HEAD = 7  # TPKT (4) and a COTP DT header of length indicator 2 (3)


def _names() -> tuple[list[str], dict[int, int], dict[int, int], dict[int, int], dict[int, int], dict[int, int],
                      dict[int, int]]:
    names: list[str] = []

    def ids(table: dict[int, str]) -> dict[int, int]:
        out = {}
        for code, name in table.items():
            out[code] = len(names)
            names.append(name)
        return out

    s7 = ids({f: n for f, (n, _) in S7_FUNCTIONS.items() if f not in (0x28, 0x29)})  # PI services: named by parser
    types = ids({t: entry[0] for t, entry in TYPES.items()})
    u = ids({c1: f"U ({name})" for c1, name in U_FUNCTIONS.items()})
    commands = ids(dict(COMMANDS))
    services = ids({s: n for s, (n, _) in SERVICES.items()})
    dnp3 = ids({fc: n for fc, (n, _) in DNP3_FUNCTIONS.items()})
    return names, s7, types, u, commands, services, dnp3


NAMES, _S7_IDS, _TYPE_IDS, _U_IDS, _COMMAND_IDS, _SERVICE_IDS, _DNP3_IDS = _names()
_S_ID = len(NAMES)
NAMES.append("S")


_S7_NAME, _TYPE_NAME, _U_NAME = lookup(_S7_IDS, 256), lookup(_TYPE_IDS, 256), lookup(_U_IDS, 256)
_COMMAND_NAME, _SERVICE_NAME = lookup(_COMMAND_IDS, 65536), lookup(_SERVICE_IDS, 128)
_DNP3_NAME = lookup(_DNP3_IDS, 256)
_OBJECT_SIZE = lookup({tid: entry[2] for tid, entry in TYPES.items() if entry[2] is not None}, 256)  # -1: not read


@dataclass(frozen=True, slots=True)
class UnitClasses:
    """Per unit: read here (``ok``), and for those what the parser says."""

    ok: np.ndarray  # bool
    protocol: np.ndarray  # index in PROTOCOLS
    request: np.ndarray  # bool: counted as a request
    error: np.ndarray  # bool: the message has an error status
    name: np.ndarray  # index in NAMES
    keyed: np.ndarray  # bool: paired by key
    key: np.ndarray  # (n, 4) uint64, ABSENT where the key has no such field
    message: np.ndarray | None = None  # bool: the unit completes a message (None: every unit does)
    malformed: np.ndarray | None = None  # bool: the message is flagged malformed (None: none is)
    crc_errors: np.ndarray | None = None  # blocks with a wrong CRC (DNP3)
    buf: np.ndarray | None = None  # where the message bytes are (None: the unit itself, in the chunk's buffer)
    at: np.ndarray | None = None
    length: np.ndarray | None = None
    stations: np.ndarray | None = None  # (n, 2): master and outstation link addresses (DNP3)


class _Bytes:
    """Byte gathers at fixed offsets from each unit's start, clipped to the buffer (rows not ``ok`` read noise)."""

    def __init__(self, u8: np.ndarray, off: np.ndarray) -> None:
        self.u8, self.off = u8, off

    def b(self, at: np.ndarray | int) -> np.ndarray:
        return gather(self.u8, self.off, at)

    def be16(self, at: np.ndarray | int) -> np.ndarray:
        return self.b(at) << 8 | self.b(at + 1)

    def le16(self, at: np.ndarray | int) -> np.ndarray:
        return self.b(at) | self.b(at + 1) << 8

    def le32(self, at: np.ndarray | int) -> np.ndarray:
        return self.le16(at) | self.le16(at + 2) << 16

    def le64(self, at: int) -> np.ndarray:
        return self.le32(at).astype(np.uint64) | self.le32(at + 4).astype(np.uint64) << np.uint64(32)


def _key(*cols: np.ndarray) -> np.ndarray:
    out = np.full((len(cols[0]), 4), ABSENT, dtype=np.uint64)
    for j, col in enumerate(cols):
        out[:, j] = col.astype(np.uint64)
    return out


def _s7(g: _Bytes, size: np.ndarray, from_client: np.ndarray) -> UnitClasses:
    """One COTP DT TPDU (end of TSDU) carrying an S7comm job or ack-data PDU with a known function."""
    t = _S7_HEAD
    rosctr = g.b(t + 1)
    head = np.where(rosctr == 3, 12, 10)
    plen, dlen = g.be16(t + 6), g.be16(t + 8)
    func = g.b(t + head)
    ok = ((size >= t + 10) & (g.b(4) == 2) & (g.b(5) & 0xF0 == 0xF0) & (g.b(6) & 0x80 > 0) & (g.b(t) == 0x32)
          & ((rosctr == 1) | (rosctr == 3)) & (size - t >= head + plen + dlen) & (plen >= 1))
    name = _S7_NAME[func]
    ok &= name >= 0
    ack = rosctr == 3
    error = ack & ((g.b(t + 10) | g.b(t + 11)) != 0)
    error |= ack & (func == 0x04) & (dlen >= 1) & (g.b(t + head + plen) != 0xFF)
    n = len(size)
    return UnitClasses(ok, np.zeros(n, dtype=np.int64), rosctr == 1, error, name, np.ones(n, dtype=bool),
                       _key(g.be16(t + 4)))


def _iec104(g: _Bytes, size: np.ndarray, from_client: np.ndarray) -> UnitClasses:
    """An APDU from its start octet: S and known U frames, I frames with a known type id and whole objects."""
    length, c1 = g.b(1), g.b(2)
    is_i, is_u = c1 & 1 == 0, c1 & 3 == 3
    tid, vsq, cot, ca = g.b(6), g.b(7), g.b(8), g.le16(10)
    count, sequence, element = vsq & 0x7F, vsq & 0x80 > 0, _OBJECT_SIZE[tid]
    body = length - 10
    whole = np.where(sequence, 3 + count * element <= body, count * (3 + element) <= body) | (element < 0)
    ok = (g.b(0) == 0x68) & (length >= 4) & (size == 2 + length) & np.where(
        is_i, (length >= 10) & (_TYPE_NAME[tid] >= 0) & whole, ~is_u | (_U_NAME[c1] >= 0))
    ioa = g.b(12) | g.b(13) << 8 | g.b(14) << 16
    first = (element >= 0) & (sequence | (count >= 1))  # the parser names a first object
    a = np.where(first, ioa, -1).astype(np.uint64)  # -1 wraps to ABSENT
    b = np.where(first & sequence & (count > 1), ioa + count - 1, -1).astype(np.uint64)
    cause = cot & 0x3F
    command = (tid >= 45) & ((cause == 5) | (cause == 6) | (cause == 8))
    keyed = command | (cause == 7) | (cause == 9) | ((cause >= 44) & (cause <= 47) & ~from_client)
    read = ~keyed & (cause == 5) & (tid < 45) & ~from_client  # data a read command asked for
    key = _key(np.where(read, 102, tid), ca, a, np.where(read, ABSENT, b))
    name = np.where(is_i, _TYPE_NAME[tid], np.where(is_u, _U_NAME[c1], _S_ID))
    error = is_i & ((cot & 0x40 > 0) | (cause >= 44))
    return UnitClasses(ok, np.ones(len(size), dtype=np.int64), np.where(is_i, command, from_client), error, name,
                       is_i & (keyed | read), key)


def _enip(g: _Bytes, size: np.ndarray, from_client: np.ndarray) -> UnitClasses:
    """A known command; SendRRData/SendUnitData with [null or connected address, data item] holding one CIP
    message with a known service that the parser does not find malformed."""
    command, length, session, status = g.le16(0), g.le16(2), g.le32(4), g.le32(8)
    end = 24 + length
    rr = (command == 0x6F) | (command == 0x70)
    k0, s0 = g.le16(32), g.le16(34)
    null, addressed = (k0 == 0) & (s0 == 0), (k0 == 0xA1) & (s0 == 4)
    item = np.where(addressed, 44, 36)
    k1, s1 = g.le16(item), g.le16(item + 2)
    connected = k1 == 0xB1
    cip = item + np.where(connected, 6, 4)
    cip_len = s1 - np.where(connected, 2, 0)
    service, response = g.b(cip) & 0x7F, g.b(cip) & 0x80 > 0
    cip_ok = ((length >= 8) & (g.le16(30) == 2) & (null | addressed) & (item + 4 + s1 <= end)
              & ((k1 == 0xB2) | (connected & (s1 >= 2))) & (cip_len >= 2) & (_SERVICE_NAME[service] >= 0)
              & np.where(response, cip_len >= 4, 2 + 2 * g.b(cip + 1) <= cip_len))
    ok = (_COMMAND_NAME[command] >= 0) & (command != 0) & (~rr | cip_ok) & (size == end)
    name = np.where(rr, _SERVICE_NAME[service], _COMMAND_NAME[command])
    error = (status != 0) | (rr & response & (g.b(cip + 2) != 0))
    by_sequence = rr & connected
    context = g.le64(12)
    key = _key(command, by_sequence, np.where(by_sequence, session.astype(np.uint64), context),
               np.where(by_sequence, g.le16(item + 4), 0))
    return UnitClasses(ok, np.full(len(size), 2, dtype=np.int64), from_client.copy(), error, name,
                       np.ones(len(size), dtype=bool), key)


_CLASSIFIERS: dict[str, Callable[[_Bytes, np.ndarray, np.ndarray], UnitClasses]] = {
    "tpkt": _s7, "iec104": _iec104, "enip": _enip}


def _dnp3(u8: np.ndarray, off: np.ndarray, size: np.ndarray) -> UnitClasses:
    f = read_frames(u8, off, size)
    name = _DNP3_NAME[f.function]
    return UnitClasses(f.ok, np.full(len(off), 3, dtype=np.int64), f.request, f.error, name, f.keyed,
                       _key(*f.key.T), f.message, f.malformed, f.crc_errors, f.buf, f.at, f.length, f.stations)


def classify(framer: str, u8: np.ndarray, off: np.ndarray, size: np.ndarray,
             from_client: np.ndarray) -> UnitClasses:
    """The units ``framer`` cut at ``off`` (``size`` bytes each) in ``u8``, read as their parser reads them."""
    with np.errstate(over="ignore"):
        if framer == "dnp3":
            return _dnp3(u8, off, size)
        return _CLASSIFIERS[framer](_Bytes(u8, off), size, from_client)


def key_columns(protocol: str, key: tuple) -> tuple[int, int, int, int] | None:
    """A parser's pairing key as ``classify`` encodes it; None for a key it never makes."""
    absent = int(ABSENT)
    if protocol == "s7comm" and len(key) == 2 and key[0] == "s7":
        return key[1], absent, absent, absent
    if protocol == "iec104" and len(key) == 3:
        first = key[2]
        if not first:
            return key[0], key[1], absent, absent
        a, _, b = first.partition("-")
        return key[0], key[1], int(a), int(b) if b else absent
    if protocol == "enip" and len(key) == 2 and isinstance(key[1], bytes):
        return key[0], 0, int.from_bytes(key[1], "little"), 0
    if protocol == "enip" and len(key) == 3:
        return key[0], 1, key[1], key[2]
    if protocol == "dnp3" and len(key) == 3:
        return key[0], key[1], key[2], absent
    return None


def message_of(protocol: int, unit: bytes, from_client: bool, frame: int, ts_ns: int, master: int = 0,
               outstation: int = 0) -> Message:
    """The parser's message of one unit ``classify`` read (``protocol`` indexes PROTOCOLS; a DNP3 unit is its
    application fragment, sent between the ``master`` and ``outstation`` link addresses)."""
    if protocol == 0:
        return parse_s7comm(unit[_S7_HEAD:], frame, ts_ns)
    if protocol == 1:
        return parse_apdu(unit, from_client, frame, ts_ns)
    if protocol == 2:
        return parse_encapsulation(unit, from_client, frame, ts_ns)
    return parse_fragment(unit, master, outstation, frame, ts_ns)
