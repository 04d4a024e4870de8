"""Modbus as a producer of the protocol-independent ``OperationEvent`` (``otsentry.contracts.events``).

The class of each function code is declared once here, as data; codes not listed (reserved, user-defined,
vendor polls) are "other", never an error.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Iterable, Iterator, Mapping

from otsentry.collectors.modbus_names import exception_name
from otsentry.contracts.events import OperationEvent
from otsentry.records import ModbusEvent

__all__ = ["MODBUS_OPERATION_CLASSES", "modbus_operation", "modbus_operations", "operation_class"]

MODBUS_OPERATION_CLASSES: Mapping[int, str] = MappingProxyType({
    0x01: "read", 0x02: "read", 0x03: "read", 0x04: "read", 0x18: "read",
    0x05: "write", 0x06: "write", 0x0F: "write", 0x10: "write", 0x16: "write", 0x17: "write",
    0x14: "file", 0x15: "file",
    0x07: "diagnostic", 0x08: "diagnostic", 0x0B: "diagnostic", 0x0C: "diagnostic", 0x11: "diagnostic",
    0x13: "diagnostic", 0x2B: "diagnostic",
    0x09: "program", 0x0D: "program", 0x12: "program", 0x28: "program", 0x5A: "program", 0x7D: "program",
    0x7E: "program",
})


def operation_class(function_code: int) -> str:
    """The operation class of a Modbus function code (exception bit cleared); "other" when not declared."""
    return MODBUS_OPERATION_CLASSES.get(function_code, "other")


def _objects(e: ModbusEvent) -> tuple[str, ...]:
    if e.start_address is None:
        return ()
    if e.quantity and e.quantity > 1:
        return (f"{e.start_address}-{e.start_address + e.quantity - 1}",)
    return (str(e.start_address),)


def modbus_operation(e: ModbusEvent) -> OperationEvent:
    """One Modbus transaction as an operation event (register ranges as "start-last", 0-based)."""
    return OperationEvent(
        protocol="modbus", ts=e.ts, client_ip=e.client_ip, client_port=e.client_port, server_ip=e.server_ip,
        server_port=e.server_port, station=e.unit_id, operation=e.function_code, operation_name=e.function_name,
        operation_class=operation_class(e.function_code), objects=_objects(e), values=e.values,
        status=None if e.exception_code is None else exception_name(e.exception_code), latency_s=e.latency_s,
        request_frame=e.request_frame, response_frame=e.response_frame, flags=e.flags)


def modbus_operations(events: Iterable[ModbusEvent]) -> Iterator[OperationEvent]:
    return (modbus_operation(e) for e in events)
