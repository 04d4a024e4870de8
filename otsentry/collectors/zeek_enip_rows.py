"""The field values of ICSNPP-ENIP's ``enip.log``, ``cip.log`` and ``cip_identity.log`` rows, from one framed
EtherNet/IP encapsulation unit (pure functions; the writer adds the connection columns).

They follow that plugin's parser where it differs from the specification, so that its rows are reproduced:

- a request path is read segment by segment up to the first segment that is not logical; a 32-bit logical
  value's third byte is shifted by 13, not 16 (the plugin's arithmetic), and a reserved size reads as unset;
- an extended status is the status size byte's count of *bytes* (the specification counts words), big-endian;
- a Multiple Service Packet writes its own row and then one per embedded service; an embedded response's status
  is the byte after its reserved byte, and its extended status is not read;
- a sequence count of 0 (unconnected messaging, or a connected message numbered 0) is unset.

Where the plugin would read past the end of a unit, the row takes what was read so far.
"""

from __future__ import annotations

import ipaddress
import struct

from otsentry.collectors.formats import zeek_escape
from otsentry.collectors.zeek_enip_names import (CIP_CLASSES, CIP_DEVICE_TYPES, CIP_EXT_STATUS, CIP_SERVICES,
                                                 CIP_STATUSES, CIP_VENDORS, ENIP_COMMANDS, ENIP_STATUSES)

__all__ = ["cip_io_row", "cip_rows", "enip_row", "identity_rows"]

HEADER = 24
MULTIPLE_SERVICE = 0x0A
UNSET = "-"
Row = tuple[str, ...]


def _hex2(n: int | None) -> str:
    return UNSET if n is None else f"0x{n:02x}"


def enip_row(unit: bytes) -> Row | None:
    """enip.log's command code, command, length, session handle, status, sender context and options."""
    if len(unit) < HEADER:
        return None
    command, length, session, status = struct.unpack_from("<HHII", unit, 0)
    (options,) = struct.unpack_from("<I", unit, 20)
    return (f"0x{command:02x}", ENIP_COMMANDS.get(command, "unknown"), str(length), f"0x{session:08x}",
            ENIP_STATUSES.get(status, f"Unknown ENIP Status-0x{status:02x}"), "0x" + unit[12:20].hex(),
            f"0x{options:08x}")


def _path(data: bytes, start: int, end: int) -> tuple[int | None, int | None, int | None]:
    """Class, instance and attribute ids of the logical segments in ``data[start:end]``."""
    ids: list[int | None] = [None, None, None]
    x = start
    try:
        while x + 1 < end:
            if data[x] >> 5 != 1:
                break
            choice, size = (data[x] & 0x1C) >> 2, data[x] & 3
            x += 2 if size else 1
            if size == 0:
                value: int | None = data[x]
            elif size == 1:
                value = data[x + 1] << 8 | data[x]
            elif size == 2:
                value = data[x + 3] << 24 | data[x + 2] << 13 | data[x + 1] << 8 | data[x]
            else:
                value = None
            slot = {0: 0, 1: 1, 4: 2}.get(choice)
            if slot is not None:
                ids[slot] = value
            x += (1, 2, 4, 4)[size]
    except IndexError:
        pass
    return ids[0], ids[1], ids[2]


def _request(seq: int, service: int, ids: tuple[int | None, int | None, int | None]) -> Row:
    klass, instance, attribute = ids
    name = UNSET if klass is None else CIP_CLASSES.get(klass, "unknown") or "(empty)"
    return (_seq(seq), "request", f"0x{service:02x}", CIP_SERVICES.get(service, "unknown"), UNSET, UNSET, UNSET,
            UNSET, _hex2(klass), name, _hex2(instance), _hex2(attribute))


def _response(seq: int, service: int, status: int, extended: int | None) -> Row:
    ext = (UNSET, UNSET) if extended is None else (
        f"0x{extended:04x}", CIP_EXT_STATUS.get(extended, f"Unknown Extended Status-0x{extended:04x}"))
    return (_seq(seq), "response", f"0x{service:02x}", CIP_SERVICES.get(service, "unknown"), f"0x{status:02x}",
            CIP_STATUSES.get(status, f"Unknown CIP Status-0x{status:02x}"), *ext, UNSET, UNSET, UNSET, UNSET)


def _seq(seq: int) -> str:
    return str(seq) if seq else UNSET


def _cip(cip: bytes, seq: int) -> list[Row]:
    """The rows of one CIP message (a Multiple Service Packet gives its own and one per embedded service)."""
    if len(cip) < 2:
        return []
    service, is_response = cip[0] & 0x7F, cip[0] >> 7
    pos = 2 + cip[1] * 2  # the request path (a response's reserved byte reads as its size, as in the plugin)
    if pos > len(cip):
        return []
    if not is_response:
        rows = [_request(seq, service, _path(cip, 2, pos))]
    else:
        if pos + 2 > len(cip) or pos + 2 + cip[pos + 1] > len(cip):
            return []
        ext_bytes = cip[pos + 2 : pos + 2 + cip[pos + 1]]
        rows = [_response(seq, service, cip[pos], int.from_bytes(ext_bytes[:4], "big") if ext_bytes else None)]
        pos += 2 + cip[pos + 1]
    if service == MULTIPLE_SERVICE:
        rows += _embedded(cip, pos, seq, bool(is_response))
    return rows


def _embedded(cip: bytes, pos: int, seq: int, is_response: bool) -> list[Row]:
    if pos + 2 > len(cip):
        return []
    (count,) = struct.unpack_from("<H", cip, pos)
    if pos + 2 + 2 * count > len(cip):
        return []
    offsets = struct.unpack_from(f"<{count}H", cip, pos + 2)
    services = cip[pos + 2 + 2 * count :]
    rows: list[Row] = []
    for offset in offsets:
        loc = offset - 2 * count - 2
        if not 0 <= loc < len(services):
            continue
        service = services[loc] & 0x7F
        if is_response:
            if loc + 2 < len(services):
                rows.append(_response(seq, service, services[loc + 2], None))
        elif loc + 1 < len(services):
            rows.append(_request(seq, service, _path(services, loc + 2, loc + 1 + services[loc + 1] * 2 + 1)))
    return rows


def _items(unit: bytes, first: int) -> list[tuple[int, bytes]]:
    """The common packet format items (type, data) of an encapsulation body whose item count is at ``first``."""
    if len(unit) < first + 2:
        return []
    (count,) = struct.unpack_from("<H", unit, first)
    items, pos = [], first + 2
    for _ in range(count):
        if pos + 4 > len(unit):
            break
        kind, size = struct.unpack_from("<HH", unit, pos)
        items.append((kind, unit[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    return items


def cip_rows(unit: bytes) -> list[Row]:
    """cip.log's fields after the connection columns, for every CIP message of a SendRRData or SendUnitData."""
    if len(unit) < HEADER or struct.unpack_from("<H", unit, 0)[0] not in (0x6F, 0x70):
        return []
    rows: list[Row] = []
    for kind, data in _items(unit, HEADER + 6):  # after the interface handle and the timeout
        if kind == 0xB2:
            rows += _cip(data, 0)
        elif kind == 0xB1 and len(data) >= 2:
            rows += _cip(data[2:], data[0] | data[1] << 8)
    return rows


def cip_io_row(datagram: bytes) -> Row | None:
    """cip_io.log's fields for a class 0/1 I/O datagram (UDP 2222): a sequenced address item (connection id,
    sequence number) and a connected data item, printed in hex with its length (the CIP sequence count included)."""
    items = dict(_items(datagram, 0))
    address, data = items.get(0x8002), items.get(0x00B1)
    if address is None or len(address) < 8 or data is None:
        return None
    connection, sequence = struct.unpack_from("<II", address, 0)
    return f"0x{connection:08x}", str(sequence), str(len(data)), data.hex() or "(empty)"


def identity_rows(unit: bytes) -> list[Row]:
    """cip_identity.log's fields after the connection columns, for every identity item of a ListIdentity reply."""
    if len(unit) < HEADER or struct.unpack_from("<H", unit, 0)[0] != 0x63:
        return []
    rows: list[Row] = []
    for kind, item in _items(unit, HEADER):
        if kind != 0x0C or len(item) < 33:
            continue
        version, = struct.unpack_from("<H", item, 0)
        port, addr = struct.unpack_from(">HI", item, 4)
        vendor, device, product, major, minor, status, serial = struct.unpack_from("<HHHBBHI", item, 18)
        size = item[32]
        name = zeek_escape(item[33 : 33 + size])
        state = item[33 + size] if len(item) > 33 + size else 0
        rows.append((str(version), str(ipaddress.IPv4Address(addr)), str(port), str(vendor),
                     CIP_VENDORS.get(vendor, f"Unknown Vendor-0x{vendor:02x}"), str(device),
                     CIP_DEVICE_TYPES.get(device, f"Unknown Device-0x{device:02x}"), str(product),
                     f"{major}.{minor}", f"0x{status:04x}", f"0x{serial:08x}", name or "(empty)",
                     f"0x{state:04x}"))
    return rows
