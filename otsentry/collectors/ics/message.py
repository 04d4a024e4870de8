"""The value types every OT protocol decoder of this package shares: one decoded message, and its framing unit.

A ``Pdu`` is what a stream framer cut out of a reassembled byte stream (or one UDP datagram): the bytes of one
protocol data unit, where it ended (frame, time) and whether the stream ended before it was complete. A
``Message`` is what a protocol parser made of it: one request or response, named as the protocol names it,
with its operation class (``otsentry.contracts.events.OPERATION_CLASSES``), the objects it addresses and the
values it carries. The pairer turns requests and responses into ``OperationEvent``s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from otsentry.collectors.types import Conn

__all__ = ["KeptMessage", "Message", "Pdu"]


@dataclass(frozen=True, slots=True)
class Pdu:
    """One framed protocol data unit; ``frame``/``ts_ns`` are those of the packet that completed it."""

    data: bytes
    frame: int
    ts_ns: int
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded request or response of any OT protocol.

    ``request`` is None for messages that are neither (DNP3 confirms, IEC 104 S/U frames are requests or
    confirmations of the link, not of an operation: they say ``request=True/False`` as sent). ``key`` pairs a
    response with its request within a connection (DNP3 application sequence, S7 PDU reference, EtherNet/IP
    sender context, IEC 104 type/address/object); None means the message is not paired. ``status`` is None
    for a normal message, else the protocol's error name; ``flags`` are anomalies of the message itself
    (``malformed``, ``crc_error``, ``truncated``, ``reserved_function``...).
    """

    protocol: str
    frame: int
    ts_ns: int
    request: bool
    operation: int
    operation_name: str
    operation_class: str
    station: int | None = None
    objects: tuple[str, ...] = ()
    values: tuple[int, ...] = ()
    status: str | None = None
    key: tuple | None = None
    flags: tuple[str, ...] = ()
    detail: str = ""  # protocol-specific extra text for humans (IIN bits, cause of transmission, tag name)
    status_code: int | None = None  # the protocol's raw status word where it has one (DNP3 IIN, IIN1 high octet)
    identity: tuple[tuple[str, str], ...] = ()  # what a device said of itself (ListIdentity, S7 SZL records)


class KeptMessage(NamedTuple):
    """A message as the collector keeps it for log writers (``CollectorConfig.keep_messages``): its connection,
    whether the client sent it, and the framed unit it came from (Zeek/ICSNPP logs print raw header fields; for
    DNP3 the transport-reassembled application fragment)."""

    conn: Conn
    message: Message
    from_client: bool
    unit: bytes
