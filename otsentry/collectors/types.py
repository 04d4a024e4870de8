"""Value types inside the collector: a connection, what one decoded PDU says, and the error of an unreadable capture.

Both decoder backends (native and tshark) append decoded ADUs to the same columnar batches (``halves``); the shared
pairing stage turns them into ``ModbusEvent``s, so the two backends can only disagree on decoding, never on pairing.
"""

from __future__ import annotations

from dataclasses import dataclass

from otsentry.errors import InputError

__all__ = ["CaptureError", "Conn", "DecodedPdu"]


class CaptureError(InputError):
    """A capture that cannot be read: names the file and what was wrong (shown to the user in one line)."""


@dataclass(frozen=True, slots=True)
class Conn:
    """A Modbus/TCP connection, oriented client -> server (the server listens on a Modbus port)."""

    client_ip: str
    client_port: int
    server_ip: str
    server_port: int


@dataclass(frozen=True, slots=True)
class DecodedPdu:
    """What one Modbus PDU says. ``function_code`` has the exception bit (0x80) cleared.

    ``flags`` holds PDU-level flag names from ``otsentry.records`` (reserved_function, malformed_pdu,
    length_mismatch); they never raise.
    """

    function_code: int
    exception_code: int | None = None
    sub_function: int | None = None
    start_address: int | None = None
    quantity: int | None = None
    values: tuple[int, ...] = ()
    flags: frozenset[str] = frozenset()
