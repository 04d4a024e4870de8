"""FC 43 / MEI 14 (read device identification) response objects: what a device says it is, as text.

The transaction decoder keeps only the object ids (values are numbers there); the asset inventory wants the text.
Objects follow the specification (Modbus Application Protocol v1.1b3, 6.21): basic 0-2 (vendor name, product code,
major/minor revision), regular 3-6 (vendor URL, product name, model name, user application name), reserved 7-0x7F,
extended 0x80-0xFF (vendor-specific). Unknown ids are named ``object_0xNN``, never an error; a truncated object list
keeps what was whole. Text is decoded as UTF-8 with replacement (the specification says ASCII; devices vary).
"""

from __future__ import annotations

__all__ = ["FC_ENCAPSULATED", "MEI_READ_DEVICE_ID", "OBJECT_NAMES", "device_identification", "object_name"]

FC_ENCAPSULATED = 0x2B
MEI_READ_DEVICE_ID = 0x0E
OBJECT_NAMES = {0: "vendor_name", 1: "product_code", 2: "revision", 3: "vendor_url", 4: "product_name",
                5: "model_name", 6: "user_application_name"}
MAX_TEXT = 245  # one object cannot be longer than a PDU


def object_name(object_id: int) -> str:
    return OBJECT_NAMES.get(object_id, f"object_0x{object_id:02x}")


def device_identification(pdu: bytes) -> tuple[tuple[str, str], ...]:
    """The ``(name, text)`` objects of a read-device-identification response PDU (function byte first); () for
    anything else (a request, an exception, another MEI type, a PDU too short for its header)."""
    if len(pdu) < 7 or pdu[0] != FC_ENCAPSULATED or pdu[1] != MEI_READ_DEVICE_ID:
        return ()
    count, pos, out = pdu[6], 7, []
    while len(out) < count and pos + 2 <= len(pdu):
        oid, size = pdu[pos], pdu[pos + 1]
        if pos + 2 + size > len(pdu):
            break
        text = pdu[pos + 2:pos + 2 + min(size, MAX_TEXT)].decode("utf-8", errors="replace").strip("\x00 ")
        out.append((object_name(oid), text))
        pos += 2 + size
    return tuple(out)
