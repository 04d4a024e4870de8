"""The Modbus/TCP application header (MBAP), declared once: where its fields are and what makes an ADU.

Both framing paths read it from here: the general reassembler (``reassembly``, one segment at a time) and the
vectorised fast path (``fastpath``, whole chunks with numpy), so their rules cannot drift apart.

  offset  0  transaction id   (2 bytes, big-endian)
          2  protocol id      (2 bytes, 0 for Modbus)
          4  length           (2 bytes: the bytes that follow it, unit id and PDU)
          6  unit id          (1 byte)
          7  function code    (the PDU starts here)
"""

from __future__ import annotations

__all__ = ["FUNCTION", "HEADER", "LENGTH", "LENGTH_BASE", "MAX_ADU", "MIN_ADU", "MIN_LENGTH", "PROTOCOL_ID", "TID",
           "UNIT", "adu_size", "looks_like_mbtcp"]

TID, PROTOCOL_ID, LENGTH, UNIT, FUNCTION = 0, 2, 4, 6, 7
HEADER = FUNCTION  # MBAP bytes before the PDU
LENGTH_BASE = LENGTH + 2  # an ADU is LENGTH_BASE + its length field bytes long
MIN_ADU = HEADER + 1  # an ADU must hold a function code (a shorter one is framing noise, as in tshark)
MIN_LENGTH = 2  # Wireshark's heuristic: a smaller length field cannot hold a unit id and a function code
MAX_ADU = LENGTH_BASE + 0xFFFF  # the length field bounds how much is ever buffered


def adu_size(length_field: int) -> int:
    return LENGTH_BASE + length_field


def looks_like_mbtcp(data: bytes | memoryview, offset: int = 0) -> bool:
    """Wireshark's heuristic for the start of Modbus/TCP data: a whole MBAP header, protocol id 0, length >= 2."""
    if len(data) - offset < MIN_ADU:
        return False
    if data[offset + PROTOCOL_ID] or data[offset + PROTOCOL_ID + 1]:
        return False
    return (data[offset + LENGTH] << 8 | data[offset + LENGTH + 1]) >= MIN_LENGTH
