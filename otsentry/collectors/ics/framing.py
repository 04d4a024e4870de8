"""Stream framers of the OT protocols: one length rule per protocol, declared as data, one framer for all.

Each protocol cuts its stream by a length in its header: DNP3 link frames (0x05 0x64, LEN: the size follows from
LEN and the CRC blocks), IEC 104 APDUs (0x68, length), TPKT for S7comm and S7comm-plus (0x03 0x00, length) and
EtherNet/IP encapsulation (24-byte header, data length). At a unit boundary the bytes must start a unit; protocols
with a start octet resynchronise by scanning for it (as Wireshark's IEC 104 dissector does, which counts the
skipped prefix as part of the next APDU: the count of APDUs is the same), the others skip the rest of the bytes
received (counted, never decoded as something they are not).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

from otsentry.collectors.ics.dnp3_link import MIN_LEN, frame_size
from otsentry.collectors.ics.enip_names import COMMANDS as ENIP_COMMANDS
from otsentry.collectors.ics.message import Pdu

__all__ = ["FRAMES", "FrameSpec", "StreamFramer"]


@dataclass(frozen=True, slots=True)
class FrameSpec:
    """How one protocol's units are framed: ``size(buf, pos)`` is the unit's length or None if no unit starts
    at ``pos`` (``head`` bytes are available); ``sync`` is the start octet sequence to resynchronise on."""

    protocol: str
    head: int
    size: Callable[[bytes | bytearray, int], int | None]
    sync: bytes = b""


def _dnp3(buf: bytes | bytearray, pos: int) -> int | None:
    return frame_size(buf[pos + 2]) if buf[pos] == 0x05 and buf[pos + 1] == 0x64 and buf[pos + 2] >= MIN_LEN \
        else None


def _iec104(buf: bytes | bytearray, pos: int) -> int | None:
    return 2 + buf[pos + 1] if buf[pos] == 0x68 else None


def _tpkt(buf: bytes | bytearray, pos: int) -> int | None:
    if buf[pos] != 3 or buf[pos + 1] != 0:
        return None
    size = buf[pos + 2] << 8 | buf[pos + 3]
    return size if size >= 7 else None


def _enip(buf: bytes | bytearray, pos: int) -> int | None:
    """A known command other than NOP (whose all-zero header matches any run of zeros) and zero options."""
    command = buf[pos] | buf[pos + 1] << 8
    if command == 0 or command not in ENIP_COMMANDS or any(buf[pos + 20 : pos + 24]):
        return None
    return 24 + (buf[pos + 2] | buf[pos + 3] << 8)


FRAMES: Mapping[str, FrameSpec] = MappingProxyType({
    "dnp3": FrameSpec("dnp3", 3, _dnp3, b"\x05\x64"),
    "iec104": FrameSpec("iec104", 2, _iec104, b"\x68"),
    "tpkt": FrameSpec("tpkt", 4, _tpkt),
    "enip": FrameSpec("enip", 24, _enip),
})


class StreamFramer:
    """Frames one direction of one connection (the reassembler's ``Framer``); also frames one UDP datagram."""

    __slots__ = ("spec", "buffer")

    def __init__(self, spec: FrameSpec) -> None:
        self.spec = spec
        self.buffer = bytearray()

    def starts(self, data: bytes) -> bool:
        return len(data) >= self.spec.head and self.spec.size(data, 0) is not None

    def feed(self, data: bytes, frame: int, ts_ns: int, out: list) -> int:
        spec, buf = self.spec, self.buffer
        buf += data
        pos, skipped, n = 0, 0, len(buf)
        while n - pos >= spec.head:
            size = spec.size(buf, pos)
            if size is None:
                nxt = buf.find(spec.sync, pos + 1) if spec.sync else -1
                if nxt < 0:  # keep a last octet that may start the sync sequence
                    keep = len(spec.sync) - 1 if spec.sync and buf.endswith(spec.sync[:1]) else 0
                    skipped += n - pos - keep
                    pos = n - keep
                    break
                skipped += nxt - pos
                pos = nxt
                continue
            if n - pos < size:
                break
            out.append(Pdu(bytes(buf[pos : pos + size]), frame, ts_ns))
            pos += size
        del buf[:pos]
        return skipped

    def flush(self, frame: int, ts_ns: int) -> list:
        data, self.buffer = bytes(self.buffer), bytearray()
        if len(data) >= self.spec.head and self.spec.size(data, 0) is not None:
            return [Pdu(data, frame, ts_ns, truncated=True)]
        return []

    def datagram(self, data: bytes, frame: int, ts_ns: int) -> tuple[list[Pdu], int]:
        """Frame one UDP datagram on its own: its units, and the bytes that were not (a cut unit included)."""
        out: list[Pdu] = []
        skipped = self.feed(data, frame, ts_ns, out)
        rest = self.flush(frame, ts_ns)
        out.extend(rest)
        return out, skipped
