"""IEC 60870-5-104 APDUs: APCI (I, S and U frames) and the ASDU of I frames, as ``Message``s.

The controlling station (the TCP client) sends commands with cause "act"; the controlled station answers
"actcon" (negative when P/N is set) and "actterm", and sends monitor data spontaneously or when interrogated.
Commands pair with their confirmation by (type id, common address, first IOA), and so do the controlled station's
refusals (the activation mirrored with cause 44-47: unknown type, cause, common address or IOA); a read command
(C_RD_NA_1) pairs with the monitor data it requested (cause 5, "req"); other monitor data is not paired.
"""

from __future__ import annotations

import struct

from otsentry.collectors.ics.iec104_names import TYPES, U_FUNCTIONS, cause_name, type_class, type_name
from otsentry.collectors.ics.message import Message

__all__ = ["MAX_OBJECTS", "parse_apdu", "sequence_label"]

MAX_OBJECTS = 64  # IOAs named per ASDU
_CONFIRMS = frozenset({7, 9})  # actcon, deactcon (actterm follows the confirmation: not paired)
_REFUSALS = frozenset({44, 45, 46, 47})  # unknown type id, cause, common address, information object address
READ, REQUESTED = 102, 5  # C_RD_NA_1 and the cause of the data it asks for


def sequence_label(ioa: int, count: int) -> str:
    """A sequence of information objects (SQ=1) named by its first and last address (``100-107``)."""
    return f"{ioa}-{ioa + count - 1}" if count > 1 else str(ioa)


def parse_apdu(pdu: bytes, from_client: bool, frame: int, ts_ns: int) -> Message:
    """One framed APDU (start octet first; any prefix before it belongs to it, as in Wireshark)."""
    start = pdu.find(b"\x68")
    flags: list[str] = [] if start == 0 else ["prefix"]
    apdu = pdu[start:] if start >= 0 else b""
    if len(apdu) < 6 or apdu[1] < 4:  # no start octet, or too short for any APCI (the framer never yields these)
        return Message("iec104", frame, ts_ns, from_client, -1, "APCI", "other", flags=tuple(flags + ["malformed"]))
    c1 = apdu[2]
    if c1 & 1 == 0:
        return _asdu(apdu, from_client, frame, ts_ns, flags)
    if c1 & 3 == 1:
        return Message("iec104", frame, ts_ns, from_client, -2, "S", "other", flags=tuple(flags))
    name = U_FUNCTIONS.get(c1)
    if name is None:
        flags.append("reserved_function")
    return Message("iec104", frame, ts_ns, from_client, -3, f"U ({name or f'0x{c1:02x}'})", "other",
                   flags=tuple(flags))


def _asdu(apdu: bytes, from_client: bool, frame: int, ts_ns: int, flags: list[str]) -> Message:
    asdu = apdu[6 : 2 + apdu[1]]
    if len(asdu) < 6:
        return Message("iec104", frame, ts_ns, from_client, -1, "I", "other", flags=tuple(flags + ["malformed"]))
    tid, vsq, cot, ca = asdu[0], asdu[1], asdu[2], asdu[4] | asdu[5] << 8
    cause, negative, test = cot & 0x3F, bool(cot & 0x40), bool(cot & 0x80)
    if tid not in TYPES:
        flags.append("reserved_function")
    if test:
        flags.append("test")
    count, sequence = vsq & 0x7F, bool(vsq & 0x80)
    size = TYPES.get(tid, ("", "", None))[2]
    objects, values = _objects(asdu[6:], count, sequence, size, tid, flags)
    status = None
    if negative:
        status = "negative"
    elif cause >= 44:
        status = cause_name(cause)
    klass = type_class(tid)
    # A command's activation (act/deact) is the request; its confirmations and monitor data are not.
    request = tid >= 45 and cause in (5, 6, 8)
    first = objects[0] if objects else ""
    key = None
    if request or cause in _CONFIRMS or (cause in _REFUSALS and not from_client):
        key = (tid, ca, first)
    elif cause == REQUESTED and tid < 45 and not from_client:
        key = (READ, ca, first.split("-")[0])
    return Message("iec104", frame, ts_ns, request, tid, type_name(tid), klass, ca, objects, values, status, key,
                   tuple(flags), f"cot={cause_name(cause)}" + (" negative" if negative else ""))


def _objects(body: bytes, count: int, sequence: bool, size: int | None, tid: int,
             flags: list[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """IOAs (and the first octet of each element as its value) of the information objects."""
    objects: list[str] = []
    values: list[int] = []
    if size is None:
        return (), ()
    if sequence:
        need = 3 + count * size
        if len(body) < need:
            flags.append("malformed")
            return (), ()
        ioa = body[0] | body[1] << 8 | body[2] << 16
        objects.append(sequence_label(ioa, count))
        values.extend(_element(body, 3 + i * size, size, tid) for i in range(min(count, MAX_OBJECTS)))
        return tuple(objects), tuple(values)
    pos = 0
    for i in range(count):
        if pos + 3 + size > len(body):
            flags.append("malformed")
            break
        if i < MAX_OBJECTS:
            objects.append(str(body[pos] | body[pos + 1] << 8 | body[pos + 2] << 16))
            values.append(_element(body, pos + 3, size, tid))
        pos += 3 + size
    return tuple(objects), tuple(values)


def _element(body: bytes, at: int, size: int, tid: int) -> int:
    """The element's value as an integer: the command or point state octet, a scaled value, or a float's integer."""
    if size == 0:
        return 0
    if tid in (11, 12, 35, 49, 62, 110, 111) or tid in (9, 10, 34, 48, 61):  # 16-bit normalised/scaled value
        return int.from_bytes(body[at : at + 2], "little", signed=True)
    if tid in (13, 14, 36, 50, 63, 112):  # short float
        v = struct.unpack_from("<f", body, at)[0]
        return int(round(v)) if v == v and abs(v) < 1 << 62 else 0
    return body[at]
