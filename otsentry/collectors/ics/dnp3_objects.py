"""DNP3 application object headers (group, variation, qualifier, range) and the values of the common objects.

Pure functions over one application fragment. Headers are always decoded; an object whose size is not known
(a variable-size object without a size prefix) ends the walk there, counted as ``objects_undecoded`` rather than
guessed, and a header or range running past the fragment is ``malformed``.
"""

from __future__ import annotations

import struct
from types import MappingProxyType
from typing import Mapping, NamedTuple

from otsentry.collectors.ics.dnp3_names import OBJECT_SIZES, PACKED_BITS

__all__ = ["COUNT_BYTES", "INT_FORMATS", "MAX_VALUES", "ObjectWalk", "PREFIX_BYTES", "RANGE_BYTES", "VALUE_LAYOUT",
           "object_label", "walk_objects"]

MAX_VALUES = 256  # values kept per fragment (a response may carry thousands of points)
# qualifier code (low nibble) -> octets of each range bound / of the count; prefix code (bits 4-6) -> prefix octets
RANGE_BYTES: Mapping[int, int] = MappingProxyType({0: 1, 1: 2, 2: 4, 3: 1, 4: 2, 5: 4})
COUNT_BYTES: Mapping[int, int] = MappingProxyType({7: 1, 8: 2, 9: 4, 0xB: 1})
PREFIX_BYTES: Mapping[int, int] = MappingProxyType({0: 0, 1: 1, 2: 2, 3: 4, 4: 1, 5: 2, 6: 4})
INT_FORMATS: Mapping[int, str] = MappingProxyType({1: "<B", 2: "<H", 4: "<I"})  # little-endian unsigned by size

# (group, variation) -> (offset in the object, struct format) of the value worth keeping; a flag octet first.
VALUE_LAYOUT: Mapping[tuple[int, int], tuple[int, str]] = MappingProxyType({
    (12, 1): (0, "<B"), (12, 2): (0, "<B"),  # CROB: the control code (operate type, trip/close)
    (30, 1): (1, "<i"), (30, 2): (1, "<h"), (30, 3): (0, "<i"), (30, 4): (0, "<h"), (30, 5): (1, "<f"),
    (30, 6): (1, "<d"), (32, 1): (1, "<i"), (32, 2): (1, "<h"), (32, 3): (1, "<i"), (32, 4): (1, "<h"),
    (32, 5): (1, "<f"), (32, 6): (1, "<d"),
    (40, 1): (1, "<i"), (40, 2): (1, "<h"), (40, 3): (1, "<f"), (40, 4): (1, "<d"),
    (41, 1): (0, "<i"), (41, 2): (0, "<h"), (41, 3): (0, "<f"), (41, 4): (0, "<d"),
    (20, 1): (1, "<I"), (20, 2): (1, "<H"), (20, 5): (0, "<I"), (20, 6): (0, "<H"),
    (22, 1): (1, "<I"), (22, 2): (1, "<H"),
    (50, 1): (0, "<Q"),  # 48-bit milliseconds since 1970 (read as 8 bytes, masked)
    (52, 1): (0, "<H"), (52, 2): (0, "<H"),
})
_FLAG_STATE = frozenset({(1, 2), (2, 1), (2, 2), (2, 3), (10, 2), (11, 1), (11, 2)})  # state = flag bit 7


class ObjectWalk(NamedTuple):
    objects: tuple[str, ...]
    values: tuple[int, ...]
    malformed: bool
    undecoded: bool  # stopped at an object whose size is unknown


def _layouts() -> dict[tuple[int, int], tuple[int, struct.Struct]]:
    return {gv: (off, struct.Struct(fmt)) for gv, (off, fmt) in VALUE_LAYOUT.items() if gv != (50, 1)}


_LAYOUTS = _layouts()


def _runs() -> dict[tuple[int, int], struct.Struct]:
    """Per object kind with a value layout, a struct that reads the value of one whole object (padding around)."""
    out = {}
    for gv, (off, packer) in _LAYOUTS.items():
        size = OBJECT_SIZES.get(gv)
        if size is not None and off + packer.size <= size:
            out[gv] = struct.Struct(f"<{off}x{packer.format[1:]}{size - off - packer.size}x")
    return out


_RUNS = _runs()


def _integral(v: int | float) -> int | None:
    if isinstance(v, float):
        return int(round(v)) if v == v and abs(v) < 1 << 62 else None  # NaN and infinities: no value
    return v


def _value(data: bytes, at: int, size: int, gv: tuple[int, int]) -> int | None:
    if size <= 0 or at + size > len(data):
        return None
    if gv in _FLAG_STATE:
        return data[at] >> 7 & 1
    if gv == (50, 1):
        return int.from_bytes(data[at : at + 6], "little") if at + 6 <= len(data) else None
    layout = _LAYOUTS.get(gv)
    if layout is None:
        return None
    off, packer = layout
    if at + off + packer.size > len(data):
        return None
    v = packer.unpack_from(data, at + off)[0]
    if isinstance(v, float):
        return int(round(v)) if v == v and abs(v) < 1 << 62 else None
    return v


def object_label(g: int, v: int, start: int | None = None, stop: int | None = None) -> str:
    """An object header as otsentry names it: ``g30v1``, with ``:start-stop`` (``:start``) for a range; the
    Wireshark backend words its headers with it too."""
    if start is None or stop is None:
        return f"g{g}v{v}"
    return f"g{g}v{v}:{start}-{stop}" if stop > start else f"g{g}v{v}:{start}"


def walk_objects(data: bytes, pos: int, with_data: bool) -> ObjectWalk:
    """Walk the object headers from ``pos``; ``with_data`` says whether the objects' bodies follow each header
    (they do in writes, controls and responses, not in reads or class assignments)."""
    objects: list[str] = []
    values: list[int] = []
    n = len(data)
    while pos < n:
        if pos + 3 > n:
            return ObjectWalk(tuple(objects), tuple(values), True, False)
        g, v, q = data[pos], data[pos + 1], data[pos + 2]
        pos += 3
        prefix, rng = q >> 4 & 7, q & 0x0F
        if rng in RANGE_BYTES:
            w = RANGE_BYTES[rng]
            if pos + 2 * w > n:
                return ObjectWalk(tuple(objects), tuple(values), True, False)
            start = int.from_bytes(data[pos : pos + w], "little")
            stop = int.from_bytes(data[pos + w : pos + 2 * w], "little")
            pos += 2 * w
            if stop < start:
                objects.append(object_label(g, v))
                return ObjectWalk(tuple(objects), tuple(values), True, False)
            count, label = stop - start + 1, object_label(g, v, start, stop)
        elif rng in COUNT_BYTES:
            w = COUNT_BYTES[rng]
            if pos + w > n:
                return ObjectWalk(tuple(objects), tuple(values), True, False)
            count = int.from_bytes(data[pos : pos + w], "little")
            pos += w
            label = object_label(g, v)
        elif rng == 6:
            count, label = 0, object_label(g, v)
        else:  # reserved range specifier: the rest cannot be framed
            objects.append(object_label(g, v))
            return ObjectWalk(tuple(objects), tuple(values), True, False)
        if prefix == 7:
            objects.append(label)
            return ObjectWalk(tuple(objects), tuple(values), True, False)
        objects.append(label)
        if not with_data or count == 0 or rng == 6:
            continue
        end = _bodies(data, pos, g, v, prefix, count, values)
        if end is None:
            return ObjectWalk(tuple(objects), tuple(values), False, True)
        if end > n:
            return ObjectWalk(tuple(objects), tuple(values), True, False)
        pos = end
    return ObjectWalk(tuple(objects), tuple(values), False, False)


def _bodies(data: bytes, pos: int, g: int, v: int, prefix: int, count: int, values: list[int]) -> int | None:
    """Skip (and read the values of) ``count`` objects from ``pos``; the end offset, or None if sizes unknown."""
    gv = (g, v)
    bits = PACKED_BITS.get(gv)
    if bits and prefix == 0:
        end = pos + (count * bits + 7) // 8
        for i in range(min(count, MAX_VALUES - len(values))):
            if pos + (i * bits) // 8 >= len(data):
                break
            values.append(data[pos + (i * bits) // 8] >> (i * bits) % 8 & ((1 << bits) - 1))
        return end
    size = OBJECT_SIZES.get(gv)
    if size is None and g in (110, 111, 112, 113):  # octet strings: the variation is the length
        size = v
    if prefix == 0 and size:  # a packed run of fixed-size objects (most responses): one C-level unpack
        end = pos + count * size
        run = _RUNS.get(gv)
        if run is not None and end <= len(data):
            room = max(0, MAX_VALUES - len(values))
            take = data[pos : pos + min(count, room) * size]
            values.extend(v for v in (_integral(x[0]) for x in run.iter_unpack(take)) if v is not None)
            return end
    pbytes = PREFIX_BYTES[prefix]
    if pbytes == 0 and not size:  # objects without a body (class data g60): nothing to walk, whatever the count
        return pos
    for _ in range(count):
        if pos + pbytes > len(data):
            return len(data) + 1
        if prefix >= 4:  # a size prefix: the object's own length
            osize = int.from_bytes(data[pos : pos + pbytes], "little")
        elif g == 0:  # device attribute: data type, length, value
            if pos + pbytes + 2 > len(data):
                return len(data) + 1
            osize = 2 + data[pos + pbytes + 1]
        elif size is None:
            return None
        else:
            osize = size
        pos += pbytes
        if pos + osize > len(data):
            return len(data) + 1
        if len(values) < MAX_VALUES:
            value = _value(data, pos, osize, gv)
            if value is not None:
                values.append(value)
        pos += osize
    return pos
