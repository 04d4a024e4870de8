"""EtherNet/IP encapsulation and the CIP messages it carries (explicit messaging), as ``Message``s.

One encapsulation message is one ``Message`` (what tshark counts as ``enip.command``); SendRRData/SendUnitData
carry one CIP request or response in their Common Packet Format data item, named by its service with the class,
instance and attribute of its path; a Multiple Service Packet also lists the services it embeds. ListIdentity
responses give vendor, device type, product code, revision and product name (for the asset inventory).
"""

from __future__ import annotations

import struct

from otsentry.collectors.ics.enip_names import CIP_CLASSES, GENERAL_STATUS, SERVICES, command_name, service_name
from otsentry.collectors.ics.message import Message

__all__ = ["HEADER", "LOGICAL_SEGMENTS", "cip_path", "parse_cip", "parse_encapsulation", "parse_identity",
           "segment_label"]

HEADER = 24
_DATA_ITEMS = (0x00B2, 0x00B1)  # unconnected, connected data


# logical segment type (segment octet & 0xFC) -> what it names
LOGICAL_SEGMENTS = {0x20: "class", 0x24: "instance", 0x28: "member", 0x2C: "connection", 0x30: "attribute"}


def segment_label(name: str, value: int) -> str:
    """One logical segment of a path as otsentry names it (``class=0x02``, ``instance=1``)."""
    return f"{name}=0x{value:02x}" if name == "class" else f"{name}={value}"


def cip_path(path: bytes) -> tuple[tuple[str, ...], int | None]:
    """Logical and symbolic segments of a request path: ("class=0x02", "instance=1", "attribute=3", "tag=X")."""
    parts: list[str] = []
    klass = None
    pos = 0
    while pos < len(path):
        seg = path[pos]
        if seg & 0xE0 == 0x20:  # logical segment: 8, 16 or 32-bit value
            fmt = seg & 0x03
            name = LOGICAL_SEGMENTS.get(seg & 0xFC, "logical")
            if fmt == 0 and pos + 2 <= len(path):
                value, pos = path[pos + 1], pos + 2
            elif fmt == 1 and pos + 4 <= len(path):
                value, pos = path[pos + 2] | path[pos + 3] << 8, pos + 4
            elif fmt == 2 and pos + 6 <= len(path):
                value, pos = struct.unpack_from("<I", path, pos + 2)[0], pos + 6
            else:
                break
            if name == "class" and klass is None:
                klass = value
            parts.append(segment_label(name, value))
        elif seg == 0x91 and pos + 2 <= len(path):  # ANSI extended symbolic: a tag name
            size = path[pos + 1]
            parts.append("tag=" + path[pos + 2 : pos + 2 + size].decode("latin-1"))
            pos += 2 + size + (size & 1)
        else:  # port, network or data segments: named, not walked further
            parts.append(f"segment=0x{seg:02x}")
            break
    return tuple(parts), klass


def parse_cip(data: bytes) -> tuple[int, bool, tuple[str, ...], str | None, tuple[str, ...]]:
    """(service, response, objects, status, flags) of one CIP message."""
    if len(data) < 2:
        return -1, False, (), None, ("malformed",)
    service, response = data[0] & 0x7F, bool(data[0] & 0x80)
    flags = () if service in SERVICES else ("reserved_function",)
    if response:
        if len(data) < 4:
            return service, True, (), None, flags + ("malformed",)
        status = data[2]
        return service, True, (), None if status == 0 else GENERAL_STATUS.get(status, f"status-0x{status:02x}"), flags
    words = data[1]
    if 2 + 2 * words > len(data):
        return service, False, (), None, flags + ("malformed",)
    objects, klass = cip_path(data[2 : 2 + 2 * words])
    if klass is not None and klass in CIP_CLASSES:
        objects = objects + (CIP_CLASSES[klass],)
    if service == 0x0A and klass == 0x02:  # Multiple Service Packet: the embedded services
        body = data[2 + 2 * words :]
        if len(body) >= 2:
            count = body[0] | body[1] << 8
            for i in range(min(count, 64)):
                at = 2 + 2 * i
                if at + 2 > len(body):
                    break
                off = body[at] | body[at + 1] << 8
                if off < len(body):
                    objects = objects + ("service=" + service_name(body[off] & 0x7F),)
    return service, False, objects, None, flags


def _cip_item(body: bytes) -> tuple[bytes, int | None] | None:
    """The CIP bytes of a SendRRData/SendUnitData body, and the connected sequence count (None: unconnected)."""
    if len(body) < 8:
        return None
    count, pos = body[6] | body[7] << 8, 8
    for _ in range(min(count, 8)):
        if pos + 4 > len(body):
            return None
        kind, size = body[pos] | body[pos + 1] << 8, body[pos + 2] | body[pos + 3] << 8
        item = body[pos + 4 : pos + 4 + size]
        if kind == 0x00B2:
            return item, None
        if kind == 0x00B1 and len(item) >= 2:
            return item[2:], item[0] | item[1] << 8  # after the connected sequence count
        pos += 4 + size
    return None


def parse_identity(body: bytes) -> dict[str, int | str] | None:
    """The identity item of a ListIdentity response (vendor, device type, product code, revision, name)."""
    if len(body) < 2 + 4 + 2 + 16 + 14:
        return None
    pos = 2 + 4 + 2 + 16  # item count, item type and length, protocol version, socket address
    vendor, device, product, major, minor, status, serial = struct.unpack_from("<HHHBBHI", body, pos)
    pos += 14
    size = body[pos] if pos < len(body) else 0
    name = body[pos + 1 : pos + 1 + size].decode("latin-1", "replace")
    return {"vendor_id": vendor, "device_type": device, "product_code": product, "revision": f"{major}.{minor}",
            "serial": f"0x{serial:08x}", "product_name": name}


def parse_encapsulation(pdu: bytes, from_client: bool, frame: int, ts_ns: int) -> Message:
    """One encapsulation message; the session handle is the station, the sender context pairs replies."""
    if len(pdu) < HEADER:  # shorter than the encapsulation header (the framer never yields these)
        return Message("enip", frame, ts_ns, from_client, -1, "encapsulation", "other", flags=("malformed",))
    command, length, session, status = struct.unpack_from("<HHII", pdu, 0)
    context = pdu[12:20]
    body = pdu[HEADER : HEADER + length]
    flags: tuple[str, ...] = () if len(body) == length else ("truncated",)
    operation, name, klass, objects, cip_status, detail = command, command_name(command), "other", (), None, ""
    identity: tuple[tuple[str, str], ...] = ()
    key: tuple = (command, bytes(context))
    if command in (0x006F, 0x0070):
        item = _cip_item(body)
        if item is not None:
            cip, sequence = item
            service, _, objects, cip_status, cip_flags = parse_cip(cip)
            flags += cip_flags
            operation, name = service, service_name(service)
            klass = SERVICES.get(service, ("", "other"))[1]
            detail = "unconnected" if sequence is None else f"connected seq={sequence}"
            if sequence is not None:  # connected messaging: the reply echoes the sequence count
                key = (command, session, sequence)
    elif command in (0x0063, 0x0004, 0x0064):
        klass = "diagnostic"
        if not from_client and command == 0x0063:
            ident = parse_identity(body)
            if ident:
                detail = " ".join(f"{k}={v}" for k, v in ident.items())
                identity = tuple((k, str(v)) for k, v in ident.items())
    enc_status = None if status == 0 else f"encap-status-0x{status:x}"
    return Message("enip", frame, ts_ns, from_client, operation, name, klass, None, objects, (),
                   enc_status or cip_status, key, flags, detail, identity=identity)
