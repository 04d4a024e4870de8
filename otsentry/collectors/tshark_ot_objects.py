"""Objects and values of OT messages, read from Wireshark's tree (``--decoder tshark``), worded as otsentry words them.

Objects: DNP3 object headers (``g30v1:0-9``, from ``dnp3.al.obj`` and its qualifier and range fields), IEC 104
information object addresses (``iec60870_asdu.ioa``; a sequence as ``first-last``), S7comm S7ANY variable
addresses (``DB1:0.0x4``) and SZL requests, and CIP request paths walked segment by segment (``class=0x02``,
``instance=1``...: ``cip.path_segment`` gives their order, ``cip.class``/``cip.instance``/... their values) with
the class's name and the services a Multiple Service Packet embeds. Values: DNP3 points (``dnp3_values``: the
state bit of binary points, analog and counter values, CROB control codes, absolute times, time delays) and IEC
104 elements (``iec104_values``: the quality or command octet, scaled, normalised and float values). And what an
S7 CPU says of itself in SZL answers (``szl_identity``). Same words and numbers as the native parsers, so both
backends' operations compare field for field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from otsentry.collectors.ics.dnp3_objects import MAX_VALUES, object_label
from otsentry.collectors.ics.enip import LOGICAL_SEGMENTS, segment_label
from otsentry.collectors.ics.enip_names import CIP_CLASSES, service_name
from otsentry.collectors.ics.iec104 import MAX_OBJECTS, sequence_label
from otsentry.collectors.ics.iec104_names import TYPES
from otsentry.collectors.ics.s7comm import COMPONENTS, szl_request_label, variable_label

__all__ = ["cip_objects", "dnp3_objects", "dnp3_values", "ek_int", "iec104_objects", "iec104_values", "s7_objects",
           "szl_identity"]

Layer = dict[str, Any]
Getter = Callable[[Layer, str], list]
_RANGES, _COUNTS = frozenset(range(6)), frozenset({7, 8, 9, 0xB})


def ek_int(value: Any) -> int:
    """A number as tshark's EK output prints it: decimal, or hexadecimal with ``0x``."""
    text = str(value)
    return int(text, 16) if text.startswith("0x") else int(text)



def dnp3_objects(layer: Layer, values: Getter) -> tuple[str, ...]:
    """``g{group}v{variation}`` per object header, with ``:start-stop`` (``:start``) for range qualifiers."""
    out: list[str] = []
    starts, stops = iter(values(layer, "dnp3.al.range.start")), iter(values(layer, "dnp3.al.range.stop"))
    for obj, rng in zip(values(layer, "dnp3.al.obj"), values(layer, "dnp3.al.objq.range")):
        code = ek_int(obj)
        g, v = code >> 8, code & 0xFF
        if ek_int(rng) in _RANGES:
            start, stop = next(starts, None), next(stops, None)
            if start is None or stop is None:
                break
            start, stop = ek_int(start), ek_int(stop)
            if stop < start:
                out.append(object_label(g, v))
                break
            out.append(object_label(g, v, start, stop))
        else:
            out.append(object_label(g, v))
    return tuple(out)


def iec104_objects(asdu: Layer, tid: int, values: Getter) -> tuple[str, ...]:
    """The IOAs of an ASDU's information objects (types whose elements the native parser reads)."""
    if TYPES.get(tid, ("", "", None))[2] is None:
        return ()
    ioas = [ek_int(v) for v in values(asdu, "iec60870_asdu.ioa")]
    if not ioas:
        return ()
    if values(asdu, "iec60870_asdu.sq")[:1] in ([True], ["1"], [1]):
        count = ek_int((values(asdu, "iec60870_asdu.numix") or [len(ioas)])[0])
        return (sequence_label(ioas[0], count),)
    return tuple(str(i) for i in ioas[:MAX_OBJECTS])


def s7_objects(layer: Layer, values: Getter) -> tuple[str, ...]:
    """S7ANY item addresses of a read/write job (all items S7ANY, else none), or an SZL request's id and index."""
    szl, index = values(layer, "s7comm.data.userdata.szl_id"), values(layer, "s7comm.data.userdata.szl_index")
    if szl and index:
        return (szl_request_label(ek_int(szl[0]), ek_int(index[0])),)
    syntax = values(layer, "s7comm.param.item.syntaxid")
    areas, dbs = values(layer, "s7comm.param.item.area"), values(layer, "s7comm.param.item.db")
    addresses, counts = values(layer, "s7comm.param.item.address"), values(layer, "s7comm.param.item.length")
    if not syntax or any(ek_int(s) != 0x10 for s in syntax) or not len(areas) == len(dbs) == len(addresses) == \
            len(counts) == len(syntax):
        return ()
    return tuple(variable_label(ek_int(area), ek_int(db), ek_int(address), ek_int(count))
                 for area, db, address, count in list(zip(areas, dbs, addresses, counts))[:32])


def cip_objects(cip: Layer, values: Getter) -> tuple[str, ...]:
    """A CIP request's path as the native parser names it, then its class's name and the embedded services."""
    pools = {kind: iter(values(cip, f"cip.{kind}")) for kind in ("class", "instance", "member", "attribute")}
    symbols = iter(values(cip, "cip.symbol"))
    parts: list[str] = []
    klass = None
    for segment in values(cip, "cip.path_segment"):
        seg = ek_int(segment)
        name = LOGICAL_SEGMENTS.get(seg & 0xFC) if seg & 0xE0 == 0x20 else None
        if name in pools:
            value = next(pools[name], None)
            if value is None:
                break
            value = ek_int(value)
            klass = value if name == "class" and klass is None else klass
            parts.append(segment_label(name, value))
        elif seg == 0x91:
            symbol = next(symbols, None)
            if symbol is None:
                break
            parts.append(f"tag={symbol}")
        else:  # connection points, port and data segments: named by the native parser, not walked further
            parts.append(f"segment=0x{seg:02x}")
            break
    if klass is not None and klass in CIP_CLASSES:
        parts.append(CIP_CLASSES[klass])
    if klass == 0x02 and ek_int((values(cip, "cip.sc") or ["0"])[0]) & 0x7F == 0x0A:
        embedded = cip.get("cip")
        for inner in (embedded if isinstance(embedded, list) else [embedded] if embedded else [])[:64]:
            code = values(inner, "cip.sc")
            if code:
                parts.append("service=" + service_name(ek_int(code[0]) & 0x7F))
    return tuple(parts)


# (group, variations) -> Wireshark's field per point, and whether the native parser keeps it as the point's value
# (a field read but not kept is still consumed: points of several headers share it, in header order).
_POINT_FIELDS: tuple[tuple[int, frozenset[int], str, bool], ...] = (
    (1, frozenset({1}), "dnp3.al.bit", True), (10, frozenset({1}), "dnp3.al.bit", True),
    (80, frozenset({1}), "dnp3.al.bit", True), (12, frozenset({3}), "dnp3.al.bit", True),
    (1, frozenset({2}), "dnp3.al.biq.b7", True), (2, frozenset({1, 2, 3}), "dnp3.al.biq.b7", True),
    (10, frozenset({2}), "dnp3.al.boq.b7", True), (11, frozenset({1, 2}), "dnp3.al.boq.b7", True),
    (30, frozenset({1, 2, 3, 4}), "dnp3.al.ana.int", True), (30, frozenset({5}), "dnp3.al.ana.float", True),
    (30, frozenset({6}), "dnp3.al.ana.double", True), (32, frozenset({1, 2}), "dnp3.al.ana.int", True),
    (32, frozenset({5}), "dnp3.al.ana.float", True), (32, frozenset({6}), "dnp3.al.ana.double", True),
    (32, frozenset({3, 4}), "dnp3.al.ana.int", False), (32, frozenset({7}), "dnp3.al.ana.float", False),
    (32, frozenset({8}), "dnp3.al.ana.double", False), (31, frozenset(range(1, 9)), "dnp3.al.ana.int", False),
    (33, frozenset(range(1, 9)), "dnp3.al.ana.int", False),
    (40, frozenset({1, 2}), "dnp3.al.anaout.int", True), (40, frozenset({3}), "dnp3.al.anaout.float", True),
    (40, frozenset({4}), "dnp3.al.anaout.double", True), (41, frozenset({1, 2}), "dnp3.al.anaout.int", True),
    (41, frozenset({3}), "dnp3.al.anaout.float", True), (41, frozenset({4}), "dnp3.al.anaout.double", True),
    (20, frozenset({1, 2, 5, 6}), "dnp3.al.cnt", True), (22, frozenset({1, 2}), "dnp3.al.cnt", True),
    (20, frozenset({3, 4, 7, 8}), "dnp3.al.cnt", False), (21, frozenset(range(1, 13)), "dnp3.al.cnt", False),
    (22, frozenset(range(3, 9)), "dnp3.al.cnt", False), (23, frozenset(range(1, 9)), "dnp3.al.cnt", False),
    (50, frozenset({1}), "dnp3.al.timestamp", True), (52, frozenset({1, 2}), "dnp3.al.time_delay", True),
)
# points that carry an absolute time besides their value (they take their turn in ``dnp3.al.timestamp``)
_TIMED = {(2, 2), (4, 2), (11, 2), (13, 2), (21, 5), (21, 6), (21, 7), (21, 8), (22, 5), (22, 6), (22, 7), (22, 8),
          (23, 5), (23, 6), (23, 7), (23, 8), (32, 3), (32, 4), (32, 7), (32, 8), (33, 3), (33, 4), (33, 7), (33, 8),
          (42, 3), (42, 4), (42, 7), (42, 8), (43, 3), (43, 4), (43, 7), (43, 8), (50, 3), (50, 4), (51, 1), (51, 2)}


def _point(field: str, value: object) -> int | None:
    if field == "dnp3.al.timestamp":  # milliseconds since 1970, as the object carries them
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00")[:26] + "+00:00"
                                        if "." in str(value) else str(value).replace("Z", "+00:00"))
        return round(moment.timestamp() * 1000)
    if isinstance(value, bool):
        return int(value)
    number = float(value) if field.endswith(("float", "double")) else ek_int(value)
    if isinstance(number, float):
        return int(round(number)) if number == number and abs(number) < 1 << 62 else None
    return number


def dnp3_values(layer: Layer, values: Getter) -> tuple[int, ...]:
    """Point values in header order, up to the native parser's MAX_VALUES: CROB control codes (operation type,
    clear, trip/close bits) and what ``_POINT_FIELDS`` reads for the others."""
    pools: dict[str, Any] = {}
    ops = iter(zip(values(layer, "dnp3.ctl.op"), values(layer, "dnp3.ctl.clr"), values(layer, "dnp3.ctl.trip")))
    starts, stops = iter(values(layer, "dnp3.al.range.start")), iter(values(layer, "dnp3.al.range.stop"))
    quantities = iter(values(layer, "dnp3.al.range.quantity"))
    out: list[int] = []
    for obj, rng in zip(values(layer, "dnp3.al.obj"), values(layer, "dnp3.al.objq.range")):
        code, qualifier = ek_int(obj), ek_int(rng)
        g, v = code >> 8, code & 0xFF
        if qualifier in _RANGES:
            start, stop = next(starts, None), next(stops, None)
            count = ek_int(stop) - ek_int(start) + 1 if start is not None and stop is not None else 0
        elif qualifier in _COUNTS:
            quantity = next(quantities, None)
            count = ek_int(quantity) if quantity is not None else 0
        else:
            count = 0
        if (g, v) in ((12, 1), (12, 2)):
            for control in (next(ops, None) for _ in range(count)):
                if control is not None:
                    op, clr, trip = control
                    out.append(ek_int(op) | (0x20 if clr in (True, "1", 1) else 0) | ek_int(trip) << 6)
            continue
        source = next(((f, keep) for group, vs, f, keep in _POINT_FIELDS if group == g and v in vs), None)
        if source is not None:
            field, keep = source
            pool = pools.setdefault(field, iter(values(layer, field)))
            for _ in range(count):
                value = next(pool, None)
                point = _point(field, value) if keep and value is not None else None
                if point is not None:
                    out.append(point)
        if (g, v) in _TIMED:
            pool = pools.setdefault("dnp3.al.timestamp", iter(values(layer, "dnp3.al.timestamp")))
            for _ in range(count):
                next(pool, None)
    return tuple(out[:MAX_VALUES])


def _octet(value: object) -> int:
    return ek_int(value) & 0xFF


def _normalised(value: object) -> int:
    return int(round(float(str(value)) * 32768))


def _rounded(value: object) -> int:
    number = float(str(value))
    return int(round(number)) if number == number and abs(number) < 1 << 62 else 0


# type id -> (Wireshark's field per element, how the native parser's value follows from it)
_ELEMENTS: dict[int, tuple[str, Callable[[object], int]]] = {
    **{t: ("iec60870_asdu.siq", _octet) for t in (1, 2, 30)}, **{t: ("iec60870_asdu.diq", _octet) for t in (3, 4, 31)},
    **{t: ("iec60870_asdu.vti", _octet) for t in (5, 6, 32)},
    **{t: ("iec60870_asdu.bitstring", lambda v: ek_int(v) >> 24 & 0xFF) for t in (7, 8, 33, 51, 64)},  # shown MSB first
    **{t: ("iec60870_asdu.normval", _normalised) for t in (9, 10, 34, 48, 61, 110)},
    21: ("iec60870_asdu.normval", lambda v: _normalised(v) & 0xFF),  # no quality octet: its first octet is kept
    **{t: ("iec60870_asdu.scalval", ek_int) for t in (11, 12, 35, 49, 62, 111)},
    **{t: ("iec60870_asdu.float", _rounded) for t in (13, 14, 36, 50, 63, 112)},
    **{t: ("iec60870_asdu.bcr.count", _octet) for t in (15, 16, 37)},
    **{t: ("iec60870_asdu.sco", _octet) for t in (45, 58)}, **{t: ("iec60870_asdu.dco", _octet) for t in (46, 59)},
    **{t: ("iec60870_asdu.rco", _octet) for t in (47, 60)}, 70: ("iec60870_asdu.coi", _octet),
    100: ("iec60870_asdu.qoi", _octet), 101: ("iec60870_asdu.qcc", _octet), 105: ("iec60870_asdu.qrp", _octet),
    103: ("iec60870_asdu.cp56time.ms", _octet),
}


def iec104_values(asdu: Layer, tid: int, values: Getter) -> tuple[int, ...]:
    """One value per information object (at most MAX_OBJECTS), as the native parser reads its element: the
    first octet (quality descriptor, command qualifier), or the 16-bit or float value of measurements and
    set-points. Types not in ``_ELEMENTS`` (protection events, test and delay commands...) give none."""
    size = TYPES.get(tid, ("", "", None))[2]
    if size is None:
        return ()
    count = ek_int((values(asdu, "iec60870_asdu.numix") or ["0"])[0])
    if size == 0:
        return (0,) * min(count, MAX_OBJECTS)
    element = _ELEMENTS.get(tid)
    if element is None:
        return ()
    field, convert = element
    return tuple(convert(v) for v in values(asdu, field)[: min(count, MAX_OBJECTS)])


# SZL 0x001c component identification: record index (``s7comm.COMPONENTS``, its identity key) -> Wireshark's field
_COMPONENT_FIELDS = {1: "s7comm.szl.001c.0001.name", 2: "s7comm.szl.001c.0002.name", 3: "s7comm.szl.001c.0003.tag",
                     4: "s7comm.szl.001c.0004.copyright", 5: "s7comm.szl.001c.0005.serialn",
                     7: "s7comm.szl.001c.0007.cputypname"}


def szl_identity(layer: Layer, values: Getter) -> tuple[tuple[str, str], ...]:
    """An SZL answer's CPU identity as the native parser reads it: 0x0011/0x0111 record 1's order number (MLFB),
    0x001c/0x011c's names and serial, in record order, empty texts left out."""
    szl = values(layer, "s7comm.data.userdata.szl_id")
    ret = values(layer, "s7comm.data.returncode")
    if not szl or not ret or ek_int(ret[0]) != 0xFF:
        return ()
    szl_id = ek_int(szl[0]) & 0xFF
    out: list[tuple[str, str]] = []
    if szl_id == 0x11:
        for index, mlfb in zip(values(layer, "s7comm.szl.xy11.0001.index"), values(layer, "s7comm.szl.xy11.0001.anz")):
            if ek_int(index) == 1:
                out.append(("order_number", str(mlfb).split("\0", 1)[0].strip()))
    elif szl_id == 0x1C:
        for index in values(layer, "s7comm.szl.001c.000x.index")[:32]:
            field = _COMPONENT_FIELDS.get(ek_int(index))
            if field is not None:
                text = values(layer, field)
                out.append((COMPONENTS[ek_int(index)], str(text[0]).split("\0", 1)[0].strip() if text else ""))
    return tuple((k, v) for k, v in out if v)
