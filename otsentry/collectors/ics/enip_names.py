"""EtherNet/IP encapsulation commands and CIP services, classes and general status codes, declared as data.

Names as ICSNPP's ``enip.log``/``cip.log`` spell them. CIP service codes 0x4B-0x63 are object-specific: the
same code means different things on different classes; the names given are those of the Connection Manager
(class 0x06) and of Logix tag services, the ones that matter on a plant floor. Unknown codes are "reserved".
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

__all__ = ["CIP_CLASSES", "COMMANDS", "GENERAL_STATUS", "SERVICES", "command_name", "service_name"]

COMMANDS: Mapping[int, str] = MappingProxyType({
    0x0000: "NOP", 0x0001: "List Targets (reserved)", 0x0004: "List Services", 0x0063: "List Identity",
    0x0064: "List Interfaces", 0x0065: "Register Session", 0x0066: "Unregister Session",
    0x006F: "Send RR Data", 0x0070: "Send Unit Data", 0x0072: "Indicate Status", 0x0073: "Cancel",
})

# code -> (name, operation class)
SERVICES: Mapping[int, tuple[str, str]] = MappingProxyType({
    0x01: ("Get Attributes All", "read"), 0x02: ("Set Attributes All", "write"),
    0x03: ("Get Attribute List", "read"), 0x04: ("Set Attribute List", "write"),
    0x05: ("Reset", "diagnostic"), 0x06: ("Start", "control"), 0x07: ("Stop", "control"),
    0x08: ("Create", "program"), 0x09: ("Delete", "program"), 0x0A: ("Multiple Service Packet", "other"),
    0x0D: ("Apply Attributes", "program"), 0x0E: ("Get Attribute Single", "read"),
    0x10: ("Set Attribute Single", "write"), 0x11: ("Find Next Object Instance", "read"),
    0x14: ("Error Response", "other"), 0x15: ("Restore", "program"), 0x16: ("Save", "program"),
    0x17: ("No Operation", "other"), 0x18: ("Get Member", "read"), 0x19: ("Set Member", "write"),
    0x1A: ("Insert Member", "write"), 0x1B: ("Remove Member", "write"), 0x1C: ("Group Sync", "other"),
    0x4B: ("Execute PCCC", "other"), 0x4C: ("Read Tag", "read"), 0x4D: ("Write Tag", "write"),
    0x4E: ("Forward Close", "other"), 0x4F: ("Read Modify Write Tag", "write"),
    0x52: ("Unconnected Send", "other"), 0x53: ("Write Tag Fragmented", "write"),
    0x54: ("Forward Open", "other"), 0x55: ("Get Instance Attribute List", "read"),
    0x5B: ("Large Forward Open", "other"),
})

CIP_CLASSES: Mapping[int, str] = MappingProxyType({
    0x01: "Identity", 0x02: "Message Router", 0x04: "Assembly", 0x06: "Connection Manager", 0x0F: "Parameter",
    0x37: "File", 0x64: "Logix Program", 0x66: "Logix Data Table", 0x6B: "Symbol", 0x6C: "Template",
    0x8E: "Controller (Logix)", 0xAC: "Logix Controller", 0xF4: "Port", 0xF5: "TCP/IP Interface",
    0xF6: "Ethernet Link",
})

GENERAL_STATUS: Mapping[int, str] = MappingProxyType({
    0x00: "Success", 0x01: "Connection failure", 0x02: "Resource unavailable", 0x03: "Invalid parameter value",
    0x04: "Path segment error", 0x05: "Path destination unknown", 0x06: "Partial transfer",
    0x07: "Connection lost", 0x08: "Service not supported", 0x09: "Invalid attribute value",
    0x0A: "Attribute list error", 0x0B: "Already in requested mode/state", 0x0C: "Object state conflict",
    0x0D: "Object already exists", 0x0E: "Attribute not settable", 0x0F: "Privilege violation",
    0x10: "Device state conflict", 0x11: "Reply data too large", 0x13: "Not enough data",
    0x14: "Attribute not supported", 0x15: "Too much data", 0x16: "Object does not exist",
    0x1E: "Embedded service error", 0x1F: "Vendor specific error", 0x20: "Invalid parameter",
    0x26: "Path size invalid",
})


def command_name(code: int) -> str:
    return COMMANDS.get(code, f"reserved-0x{code:04x}")


def service_name(code: int) -> str:
    entry = SERVICES.get(code)
    return entry[0] if entry else f"reserved-0x{code:02x}"
