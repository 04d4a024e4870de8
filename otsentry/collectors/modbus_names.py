"""Modbus function and exception names, spelled as Zeek spells them in ``modbus.log``.

Tables copied from Zeek's ``scripts/base/protocols/modbus/consts.zeek`` (current form, which has no
``*_EXCEPTION`` entries of its own) so that rows we write can be diffed against Zeek's baselines.

How Zeek fills the ``func`` and ``exception`` columns (``scripts/base/protocols/modbus/main.zeek``):

- One row per PDU, request (``pdu_type`` REQ, from the connection originator) and response (RESP) alike.
- ``func`` is ``build_func(raw function code byte)``:

  1. if the raw byte is a key of ``function_codes``, or the byte with 0x80 cleared is not, the result is
     ``function_codes[raw]``, i.e. the table name or the table's default ``unknown-<raw decimal>``;
  2. otherwise (bit 0x80 set and the cleared code is known) it is the cleared code's name + ``_EXCEPTION``.

  So 0x03 -> ``READ_HOLDING_REGISTERS``, 0x83 -> ``READ_HOLDING_REGISTERS_EXCEPTION``, 0x89 ->
  ``PROGRAM_484_EXCEPTION`` (vendor codes count as known), 0x1C -> ``unknown-28`` and 0x9C -> ``unknown-156``
  (the raw byte, not the cleared code: see ``iti-bro_modbus_fuzz-72.modbus.log``), 0x80 -> ``unknown-128``.
- ``exception`` is ``exception_codes[code]`` (``ILLEGAL_FUNCTION`` ... or ``unknown-<code>``, e.g. ``unknown-7``
  for NEGATIVE ACKNOWLEDGE, which Zeek's table lacks) for a response whose function byte has 0x80 set and
  which carries its exception byte; unset (``-``) on every other row.
- Rows Zeek does not write at all: a PDU with bit 0x80 set sent by the originator (the script logs non-exception
  PDUs only, and exceptions are only parsed in responses), and an exception response too short to hold its
  exception byte (the parser fails before the exception event).

Older Zeek (Bro 2.x / Zeek 3.x) listed 0x81-0x98 ``*_EXCEPTION`` names directly in the table and logged only
responses; for the 14 codes it listed the names are the same as ``build_func`` gives now.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

__all__ = ["MEI_CANOPEN_GENERAL_REFERENCE", "MEI_READ_DEVICE_IDENTIFICATION", "ZEEK_EXCEPTION_CODES",
    "ZEEK_FUNCTION_CODES", "exception_name", "function_name", "zeek_func_name"]

ZEEK_FUNCTION_CODES: Mapping[int, str] = MappingProxyType(
    {
        0x01: "READ_COILS",
        0x02: "READ_DISCRETE_INPUTS",
        0x03: "READ_HOLDING_REGISTERS",
        0x04: "READ_INPUT_REGISTERS",
        0x05: "WRITE_SINGLE_COIL",
        0x06: "WRITE_SINGLE_REGISTER",
        0x07: "READ_EXCEPTION_STATUS",
        0x08: "DIAGNOSTICS",
        0x0B: "GET_COMM_EVENT_COUNTER",
        0x0C: "GET_COMM_EVENT_LOG",
        0x0F: "WRITE_MULTIPLE_COILS",
        0x10: "WRITE_MULTIPLE_REGISTERS",
        0x11: "REPORT_SLAVE_ID",
        0x14: "READ_FILE_RECORD",
        0x15: "WRITE_FILE_RECORD",
        0x16: "MASK_WRITE_REGISTER",
        0x17: "READ_WRITE_MULTIPLE_REGISTERS",
        0x18: "READ_FIFO_QUEUE",
        0x2B: "ENCAP_INTERFACE_TRANSPORT",
        0x5B: "OBJECT_MESSAGING",
        # Machine/vendor/network specific functions (not public codes: the decoder flags them reserved_function).
        0x09: "PROGRAM_484",
        0x0A: "POLL_484",
        0x0D: "PROGRAM_584_984",
        0x0E: "POLL_584_984",
        0x12: "PROGRAM_884_U84",
        0x13: "RESET_COMM_LINK_884_U84",
        0x28: "PROGRAM_CONCEPT",
        0x29: "MULTIPLE_FUNCTION_CODES",
        0x5A: "PROGRAM_UNITY",
        0x7D: "FIRMWARE_REPLACEMENT",
        0x7E: "PROGRAM_584_984_2",
        0x7F: "REPORT_LOCAL_ADDRESS",
    }
)

ZEEK_EXCEPTION_CODES: Mapping[int, str] = MappingProxyType(
    {
        0x01: "ILLEGAL_FUNCTION",
        0x02: "ILLEGAL_DATA_ADDRESS",
        0x03: "ILLEGAL_DATA_VALUE",
        0x04: "SLAVE_DEVICE_FAILURE",
        0x05: "ACKNOWLEDGE",
        0x06: "SLAVE_DEVICE_BUSY",
        0x08: "MEMORY_PARITY_ERROR",
        0x0A: "GATEWAY_PATH_UNAVAILABLE",
        0x0B: "GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND",
    }
)

# MEI types carried by function 43 (Encapsulated Interface Transport); the spec reserves every other value.
MEI_CANOPEN_GENERAL_REFERENCE = 0x0D
MEI_READ_DEVICE_IDENTIFICATION = 0x0E


def zeek_func_name(raw_function_code_byte: int) -> str:
    """Zeek's ``func`` column for a PDU whose function byte (exception bit included) is the argument."""
    raw = raw_function_code_byte
    name = ZEEK_FUNCTION_CODES.get(raw)
    if name is not None:
        return name
    masked = raw & ~0x80
    base = ZEEK_FUNCTION_CODES.get(masked)
    if base is None or not raw & 0x80:
        return f"unknown-{raw}"
    return base + "_EXCEPTION"


def function_name(code: int) -> str:
    """Name for ``ModbusEvent.function_name``: Zeek's name for ``code`` or ``unknown-<code>``.

    Meant for the function code with the exception bit already cleared (0-127), where it is Zeek's plain table
    lookup; a code >= 128 gets what Zeek would log for that raw byte, so the two helpers never disagree.
    """
    return zeek_func_name(code)


def exception_name(code: int) -> str:
    """Zeek's ``exception`` column for an exception code, ``unknown-<code>`` when Zeek has no name for it."""
    return ZEEK_EXCEPTION_CODES.get(code, f"unknown-{code}")
