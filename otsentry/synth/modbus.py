"""Modbus/TCP message builders: PDUs for the common function codes, and the MBAP header around them.

PDU builders return the bytes after the unit id (function code first); ``adu`` wraps any PDU, which is also the
raw builder for malformed traffic (wrong protocol id, a lying length field, reserved function codes). Requests
and responses that are byte-identical in the specification (write single coil/register, diagnostics echo) share
one builder.

The polling traffic generator that uses them lives in ``otsentry.synth.polling``.
"""

from __future__ import annotations

import struct
from typing import Mapping, Sequence

__all__ = ["ACKNOWLEDGE", "DIAGNOSTICS", "DIAG_FORCE_LISTEN_ONLY", "DIAG_RESTART_COMMUNICATIONS",
    "DIAG_RETURN_QUERY_DATA", "ENCAPSULATED_INTERFACE", "GATEWAY_PATH_UNAVAILABLE", "GATEWAY_TARGET_FAILED",
    "ILLEGAL_DATA_ADDRESS", "ILLEGAL_DATA_VALUE", "ILLEGAL_FUNCTION", "MAX_READ_BITS", "MAX_READ_REGISTERS",
    "MAX_WRITE_COILS", "MAX_WRITE_REGISTERS", "MEI_READ_DEVICE_ID", "READ_COILS", "READ_DISCRETE_INPUTS",
    "READ_HOLDING_REGISTERS", "READ_INPUT_REGISTERS", "SERVER_DEVICE_BUSY", "SERVER_DEVICE_FAILURE",
    "WRITE_MULTIPLE_COILS", "WRITE_MULTIPLE_REGISTERS", "WRITE_SINGLE_COIL", "WRITE_SINGLE_REGISTER", "adu",
    "diagnostics", "exception_response", "pack_bits", "read_bits_response", "read_device_id_request",
    "read_device_id_response", "read_registers_response", "read_request", "write_multiple_coils_request",
    "write_multiple_registers_request", "write_multiple_response", "write_single_coil", "write_single_register"]

READ_COILS = 1
READ_DISCRETE_INPUTS = 2
READ_HOLDING_REGISTERS = 3
READ_INPUT_REGISTERS = 4
WRITE_SINGLE_COIL = 5
WRITE_SINGLE_REGISTER = 6
DIAGNOSTICS = 8
WRITE_MULTIPLE_COILS = 15
WRITE_MULTIPLE_REGISTERS = 16
ENCAPSULATED_INTERFACE = 43
MEI_READ_DEVICE_ID = 14

# FC 8 sub-functions.
DIAG_RETURN_QUERY_DATA = 0
DIAG_RESTART_COMMUNICATIONS = 1
DIAG_FORCE_LISTEN_ONLY = 4

# Exception codes.
ILLEGAL_FUNCTION = 1
ILLEGAL_DATA_ADDRESS = 2
ILLEGAL_DATA_VALUE = 3
SERVER_DEVICE_FAILURE = 4
ACKNOWLEDGE = 5
SERVER_DEVICE_BUSY = 6
GATEWAY_PATH_UNAVAILABLE = 0x0A
GATEWAY_TARGET_FAILED = 0x0B

MAX_READ_BITS = 2000
MAX_READ_REGISTERS = 125
MAX_WRITE_COILS = 1968
MAX_WRITE_REGISTERS = 123

_MBAP = struct.Struct("!HHHB")


def adu(transaction_id: int, unit_id: int, pdu: bytes, protocol_id: int = 0, length: int | None = None) -> bytes:
    """MBAP header + PDU. ``length`` defaults to the true one (unit id + PDU); pass another to craft a liar."""
    return _MBAP.pack(transaction_id & 0xFFFF, protocol_id, len(pdu) + 1 if length is None else length,
                      unit_id) + pdu


def pack_bits(bits: Sequence[int | bool]) -> bytes:
    """Coil/discrete-input values packed the Modbus way: first bit in the least significant bit of byte 0."""
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def _registers(values: Sequence[int] | bytes) -> bytes:
    if isinstance(values, (bytes, bytearray, memoryview)):
        if len(values) % 2:
            raise ValueError("register bytes must have an even length")
        return bytes(values)
    return struct.pack(f"!{len(values)}H", *values)


def read_request(function_code: int, address: int, quantity: int) -> bytes:
    """FC 1/2/3/4 request PDU (the builder does not enforce the quantity limits, so it can craft bad ones)."""
    return struct.pack("!BHH", function_code, address, quantity)


def read_bits_response(function_code: int, bits: Sequence[int | bool] | bytes) -> bytes:
    """FC 1/2 response PDU; ``bits`` as values, or already packed bytes."""
    data = bytes(bits) if isinstance(bits, (bytes, bytearray)) else pack_bits(bits)
    return struct.pack("!BB", function_code, len(data)) + data


def read_registers_response(function_code: int, values: Sequence[int] | bytes) -> bytes:
    """FC 3/4 response PDU; ``values`` as 16-bit ints, or already big-endian bytes (the fast path)."""
    data = _registers(values)
    return struct.pack("!BB", function_code, len(data)) + data


def write_single_coil(address: int, on: bool) -> bytes:
    """FC 5 request PDU, which the server echoes as its response."""
    return struct.pack("!BHH", WRITE_SINGLE_COIL, address, 0xFF00 if on else 0x0000)


def write_single_register(address: int, value: int) -> bytes:
    """FC 6 request PDU, which the server echoes as its response."""
    return struct.pack("!BHH", WRITE_SINGLE_REGISTER, address, value & 0xFFFF)


def write_multiple_coils_request(address: int, bits: Sequence[int | bool]) -> bytes:
    """FC 15 request PDU."""
    data = pack_bits(bits)
    return struct.pack("!BHHB", WRITE_MULTIPLE_COILS, address, len(bits), len(data)) + data


def write_multiple_registers_request(address: int, values: Sequence[int] | bytes) -> bytes:
    """FC 16 request PDU."""
    data = _registers(values)
    return struct.pack("!BHHB", WRITE_MULTIPLE_REGISTERS, address, len(data) // 2, len(data)) + data


def write_multiple_response(function_code: int, address: int, quantity: int) -> bytes:
    """FC 15/16 response PDU: the address and quantity written."""
    return struct.pack("!BHH", function_code, address, quantity)


def diagnostics(sub_function: int, data: bytes = b"\x00\x00") -> bytes:
    """FC 8 PDU; for sub-function 0 (return query data) the response is the same bytes."""
    return struct.pack("!BH", DIAGNOSTICS, sub_function) + data


def read_device_id_request(read_code: int = 1, object_id: int = 0) -> bytes:
    """FC 43 / MEI 14 request PDU (read code 1 = basic identification stream)."""
    return struct.pack("!BBBB", ENCAPSULATED_INTERFACE, MEI_READ_DEVICE_ID, read_code, object_id)


def read_device_id_response(
    objects: Mapping[int, bytes | str],
    read_code: int = 1,
    conformity: int = 0x81,
    more_follows: bool = False,
    next_object_id: int = 0,
) -> bytes:
    """FC 43 / MEI 14 response PDU listing ``objects`` (0 vendor, 1 product code, 2 revision...)."""
    body = b""
    for oid, value in objects.items():
        raw = value.encode("ascii") if isinstance(value, str) else value
        body += struct.pack("!BB", oid, len(raw)) + raw
    return struct.pack(
        "!BBBBBBB", ENCAPSULATED_INTERFACE, MEI_READ_DEVICE_ID, read_code, conformity,
        0xFF if more_follows else 0x00, next_object_id, len(objects),
    ) + body


def exception_response(function_code: int, exception_code: int) -> bytes:
    """Exception response PDU: the function code with bit 0x80 set, then the exception code."""
    return struct.pack("!BB", (function_code | 0x80) & 0xFF, exception_code)
