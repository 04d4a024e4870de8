"""S7comm and S7comm-plus structure declared once as data: PDU types, functions, userdata groups, areas,
return codes. Names as Wireshark's s7comm dissector and ICSNPP's ``s7comm.log`` spell them; unknown codes are
"reserved-0x.."."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

__all__ = ["AREAS", "COTP_TYPES", "FUNCTIONS", "PLUS_FUNCTIONS", "PLUS_OPCODES", "RETURN_CODES", "ROSCTR",
    "USERDATA_GROUPS", "USERDATA_SUBFUNCTIONS"]

COTP_TYPES: Mapping[int, str] = MappingProxyType({
    0xE0: "CR", 0xD0: "CC", 0x80: "DR", 0xC0: "DC", 0xF0: "DT", 0x10: "ED", 0x60: "AK", 0x20: "EA", 0x50: "RJ",
    0x70: "ER"})

ROSCTR: Mapping[int, str] = MappingProxyType({1: "JOB", 2: "ACK", 3: "ACK_DATA", 7: "USER_DATA"})

# function -> (name, operation class)
FUNCTIONS: Mapping[int, tuple[str, str]] = MappingProxyType({
    0x00: ("CPU_SERVICES", "diagnostic"), 0xF0: ("SETUP_COMMUNICATION", "other"), 0x04: ("READ_VARIABLE", "read"),
    0x05: ("WRITE_VARIABLE", "write"), 0x1A: ("REQUEST_DOWNLOAD", "program"), 0x1B: ("DOWNLOAD_BLOCK", "program"),
    0x1C: ("DOWNLOAD_ENDED", "program"), 0x1D: ("START_UPLOAD", "program"), 0x1E: ("UPLOAD", "program"),
    0x1F: ("END_UPLOAD", "program"), 0x28: ("PI_SERVICE", "control"), 0x29: ("PLC_STOP", "control"),
})

USERDATA_GROUPS: Mapping[int, tuple[str, str]] = MappingProxyType({
    0x0: ("MODE_TRANSITION", "diagnostic"), 0x1: ("PROGRAMMER_COMMANDS", "program"),
    0x2: ("CYCLIC_DATA", "read"), 0x3: ("BLOCK_FUNCTIONS", "program"), 0x4: ("CPU_FUNCTIONS", "diagnostic"),
    0x5: ("SECURITY", "diagnostic"), 0x6: ("PBC_BSEND_BRECV", "other"), 0x7: ("TIME_FUNCTIONS", "time"),
    0xF: ("NC_PROGRAMMING", "program"),
})
# (group, subfunction) -> name, for the ones with a meaning of their own
USERDATA_SUBFUNCTIONS: Mapping[tuple[int, int], str] = MappingProxyType({
    (0x3, 0x01): "LIST_BLOCKS", (0x3, 0x02): "LIST_BLOCKS_OF_TYPE", (0x3, 0x03): "GET_BLOCK_INFO",
    (0x4, 0x01): "READ_SZL", (0x4, 0x02): "MESSAGE_SERVICE", (0x4, 0x03): "DIAGNOSTIC_MESSAGE",
    (0x4, 0x0C): "ALARM_QUERY", (0x5, 0x01): "PLC_PASSWORD", (0x5, 0x02): "CLEAN_SESSION",
    (0x7, 0x01): "READ_CLOCK", (0x7, 0x02): "SET_CLOCK", (0x7, 0x03): "READ_CLOCK_FOLLOWING",
    (0x7, 0x04): "SET_CLOCK_2", (0x2, 0x01): "CYCLIC_MEMORY", (0x2, 0x04): "CYCLIC_UNSUBSCRIBE",
})

AREAS: Mapping[int, str] = MappingProxyType({
    0x03: "SYSINFO", 0x05: "SYSFLAGS", 0x06: "ANAIN", 0x07: "ANAOUT", 0x1C: "C", 0x1D: "T", 0x1E: "IEC_C",
    0x1F: "IEC_T", 0x80: "P", 0x81: "I", 0x82: "Q", 0x83: "M", 0x84: "DB", 0x85: "DI", 0x86: "L", 0x87: "V"})

RETURN_CODES: Mapping[int, str] = MappingProxyType({
    0x00: "RESERVED", 0x01: "HARDWARE_FAULT", 0x03: "ACCESS_DENIED", 0x05: "INVALID_ADDRESS",
    0x06: "DATA_TYPE_NOT_SUPPORTED", 0x07: "DATA_TYPE_INCONSISTENT", 0x0A: "OBJECT_DOES_NOT_EXIST",
    0xFF: "SUCCESS"})

PLUS_OPCODES: Mapping[int, str] = MappingProxyType({0x31: "Request", 0x32: "Response", 0x33: "Notification",
                                                    0x02: "Response2"})
# function -> (name, operation class), as Wireshark's s7comm_plus plugin names them
PLUS_FUNCTIONS: Mapping[int, tuple[str, str]] = MappingProxyType({
    0x04BB: ("Explore", "read"), 0x04CA: ("CreateObject", "program"), 0x04D4: ("DeleteObject", "program"),
    0x04F2: ("SetVariable", "write"), 0x04FC: ("GetVariable", "read"), 0x0506: ("AddLink", "other"),
    0x051A: ("RemoveLink", "other"), 0x0524: ("GetLink", "read"), 0x0542: ("SetMultiVariables", "write"),
    0x054C: ("GetMultiVariables", "read"), 0x0556: ("BeginSequence", "program"), 0x0560: ("EndSequence", "program"),
    0x056B: ("Invoke", "control"), 0x057C: ("SetVarSubStreamed", "write"), 0x0586: ("GetVarSubStreamed", "read"),
    0x0590: ("GetVariablesAddress", "read"), 0x059A: ("Abort", "other"), 0x05A9: ("Error", "other"),
    0x05B3: ("InitSsl", "other"),
})
