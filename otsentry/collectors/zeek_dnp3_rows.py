"""The rows of ICSNPP-DNP3's ``dnp3_control.log`` and ``dnp3_objects.log`` from one DNP3 application fragment
(pure functions; the writer adds the connection columns and keeps the per-connection state).

ICSNPP-DNP3 is a script over Zeek's DNP3 analyzer events, so its rows follow that analyzer's parser, kept here:

- object headers are walked as Zeek's binpac grammar walks them: in a request only the data of g12, g50, g51,
  g52, g70, g80 and g120 is read (any other header is taken to have none); in a response every object is read,
  the bit-packed kinds (g1v1, g3v1, g10v1, g12v3) as one octet per eight points (two-bit g3v1 included);
- a header's count and range are Zeek's: a start-stop range gives its size and bounds, a one-octet count gives
  itself as count and low bound, a two- or four-octet count its value as count but the octets read big-endian
  as low bound, "all objects" 0 and 65535, 65535;
- a header whose object size is not known ends the walk (the analyzer gives up there too);
- a control block's index is the last object prefix seen since the message's header (``-`` without one); a
  request's status prints ``-``, a response's is named.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from otsentry.collectors.ics.dnp3_names import OBJECT_SIZES
from otsentry.collectors.ics.dnp3_objects import COUNT_BYTES, INT_FORMATS, PREFIX_BYTES, RANGE_BYTES
from otsentry.collectors.zeek_dnp3_names import CONTROL_STATUS, OBJECT_NAMES, OPERATION_TYPES, TRIP_CODES, \
    function_name

__all__ = ["ExtendedRows", "dnp3_extended_rows"]

UNSET = "-"
Row = tuple[str, ...]
# request functions whose objects Zeek parses (the others carry none, or are unknown to it)
_REQUEST_OBJECTS = frozenset({0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x10, 0x11,
                              0x12, 0x14, 0x15, 0x16, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F, 0x20})
_RESPONSE_OBJECTS = frozenset({0x81, 0x82, 0x83})
_REQUEST_DATA_GROUPS = frozenset({12, 50, 51, 52, 70, 80, 120})
_PACKED = frozenset({0x0101, 0x0301, 0x0A01, 0x0C03})


class ExtendedRows(NamedTuple):
    control: list[Row]
    objects: list[Row]


def _range(data: bytes, pos: int, code: int) -> tuple[int, int, int, int] | None:
    """(items, low, high, position after) of an object header's range field, as Zeek's grammar reads it."""
    if code in RANGE_BYTES:
        size = RANGE_BYTES[code]
        if pos + 2 * size > len(data):
            return None
        order = "<" if code in (1, 2) else ">"  # virtual-address ranges inherit the message's big-endian order
        fmt = order + {1: "B", 2: "H", 4: "I"}[size] * 2
        low, high = struct.unpack_from(fmt, data, pos)
        items = high - low + 1 if code <= 2 else 0
        return items, low, high, pos + 2 * size
    if code == 6:
        return 0, 0xFFFF, 0xFFFF, pos
    if COUNT_BYTES.get(code) == 1:
        return (data[pos], data[pos], 0, pos + 1) if pos < len(data) else None
    if code in COUNT_BYTES:
        size = COUNT_BYTES[code]
        if pos + size > len(data):
            return None
        raw = data[pos : pos + size]
        return int.from_bytes(raw, "little"), int.from_bytes(raw, "big"), 0, pos + size
    return None


def dnp3_extended_rows(fragment: bytes, is_orig: bool) -> ExtendedRows:
    """The control and object rows of one application fragment (sent by the originator when ``is_orig``)."""
    out = ExtendedRows([], [])
    head = 2 if is_orig else 4
    if len(fragment) < head:
        return out
    fc = fragment[1]
    name = function_name(fc)
    if fc not in (_REQUEST_OBJECTS if is_orig else _RESPONSE_OBJECTS):
        return out
    index: int | None = None
    pos = head
    while pos + 3 <= len(fragment):
        kind, qualifier = fragment[pos] << 8 | fragment[pos + 1], fragment[pos + 2]
        parsed = _range(fragment, pos + 3, qualifier & 0x0F)
        if parsed is None:
            return out
        items, low, high, pos = parsed
        group, variation = kind >> 8, kind & 0xFF
        label = OBJECT_NAMES.get(kind)
        if label is not None and (fc == 0x01 if is_orig else fc == 0x81):
            out.objects.append((name, label) + ((UNSET,) * 3 if is_orig else (str(items), str(low), str(high))))
        if is_orig and group not in _REQUEST_DATA_GROUPS:
            continue  # Zeek reads no data after such a request header
        prefix = PREFIX_BYTES.get((qualifier >> 4) & 0x07)
        if kind in _PACKED:
            count, size, prefix = (items + 7) // 8, 1, 0
        else:
            count, size = items, OBJECT_SIZES.get((group, variation))
        if prefix is None or size is None:
            return out
        for _ in range(count):
            if pos + prefix + size > len(fragment):
                return out
            if prefix:
                index = struct.unpack_from(INT_FORMATS[prefix], fragment, pos)[0]
                pos += prefix
            if group == 12 and variation in (1, 2):
                code, times, on, off, status = struct.unpack_from("<BBIIB", fragment, pos)
                out.control.append(("Control Relay Output Block" if variation == 1 else "Pattern Control Block", name,
                                    UNSET if index is None else str(index), TRIP_CODES.get(code >> 6, f"unknown-{code >> 6:x}"),
                                    OPERATION_TYPES.get(code & 0x0F, f"unknown-{code & 0x0F:x}"),
                                    "T" if code & 0x20 else "F", str(times), str(on), str(off),
                                    UNSET if is_orig else CONTROL_STATUS.get(status, f"unknown-{status:x}")))
            pos += size
    return out
