"""DNP3 data link layer: frame size from the header, CRC-16/DNP per block, user data unpacked.

A link frame is a 10-byte header (0x05 0x64, LEN, control, destination, source, CRC) and then the user data
in blocks of up to 16 bytes, each followed by its CRC. ``LEN`` counts control, addresses and user data, not the
CRCs, so the frame's size on the wire is known from its first three bytes: the stream framer needs no more.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

__all__ = ["BLOCK", "CRC_TABLE", "HEADER", "LinkFrame", "MIN_LEN", "START", "crc16", "frame_size", "parse_link"]

START = b"\x05\x64"
HEADER = 10
MIN_LEN = 5  # control + destination + source
BLOCK = 16


def _table() -> tuple[int, ...]:
    out = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1
        out.append(crc)
    return tuple(out)


CRC_TABLE = _table()  # CRC-16/DNP, one step per byte


@lru_cache(maxsize=1 << 14)
def crc16(data: bytes) -> int:
    """CRC-16/DNP (polynomial 0x3D65, reflected, complemented), as stored little-endian after each block.

    Cached: a master polls with the same headers and requests over and over (a bounded cache of 16,384 blocks)."""
    crc = 0
    for b in data:
        crc = (crc >> 8) ^ CRC_TABLE[(crc ^ b) & 0xFF]
    return ~crc & 0xFFFF


def frame_size(length: int) -> int:
    """Bytes on the wire of a frame whose LEN octet is ``length`` (at least ``MIN_LEN``)."""
    data = length - MIN_LEN
    return HEADER + data + 2 * ((data + BLOCK - 1) // BLOCK)


@dataclass(frozen=True, slots=True)
class LinkFrame:
    control: int
    destination: int
    source: int
    data: bytes  # user data with the block CRCs removed (what the transport layer reads)
    crc_errors: int  # header and data blocks whose CRC did not match

    @property
    def from_master(self) -> bool:
        return bool(self.control & 0x80)

    @property
    def primary(self) -> bool:
        return bool(self.control & 0x40)

    @property
    def function(self) -> int:
        return self.control & 0x0F

    @property
    def carries_data(self) -> bool:
        """Primary CONFIRMED/UNCONFIRMED_USER_DATA with at least the transport header."""
        return self.primary and self.function in (3, 4) and len(self.data) > 0


def parse_link(frame: bytes) -> LinkFrame | None:
    """Decode one framed link frame; None when it is not one (wrong start, LEN below 5, shorter than LEN says)."""
    if len(frame) < HEADER or frame[:2] != START or frame[2] < MIN_LEN:
        return None
    size = frame_size(frame[2])
    if len(frame) < size:
        return None
    errors = 0 if crc16(bytes(frame[:8])) == (frame[8] | frame[9] << 8) else 1
    data = bytearray()
    pos, end = HEADER, size
    while pos < end:
        block = bytes(frame[pos : min(pos + BLOCK, end - 2)])
        crc_at = pos + len(block)
        if crc16(block) != (frame[crc_at] | frame[crc_at + 1] << 8):
            errors += 1
        data += block
        pos = crc_at + 2
    return LinkFrame(frame[3], frame[4] | frame[5] << 8, frame[6] | frame[7] << 8, bytes(data), errors)
