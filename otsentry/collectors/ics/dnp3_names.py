"""DNP3 (IEEE 1815) structure declared once as data: function codes, IIN bits, link functions, object sizes.

Function names are spelled as Zeek spells them in ``dnp3.log`` (``scripts/base/protocols/dnp3/consts.zeek``) so
that rows can be diffed against Zeek's baselines; codes not listed are named ``unknown-<code>`` (reserved, never
an error). Each function code also carries its operation class, the vocabulary of cross-protocol policy rules.
"""

from __future__ import annotations

from functools import lru_cache
from types import MappingProxyType
from typing import Mapping

__all__ = ["ERROR_IIN_MASK", "FUNCTIONS", "IIN_BITS", "LINK_PRIMARY", "LINK_SECONDARY", "OBJECT_SIZES", "PACKED_BITS",
    "RESPONSE_CODES", "function_class", "function_name", "iin_names"]

# code -> (Zeek's name, operation class)
FUNCTIONS: Mapping[int, tuple[str, str]] = MappingProxyType({
    0x00: ("CONFIRM", "other"),
    0x01: ("READ", "read"),
    0x02: ("WRITE", "write"),
    0x03: ("SELECT", "control"),
    0x04: ("OPERATE", "control"),
    0x05: ("DIRECT_OPERATE", "control"),
    0x06: ("DIRECT_OPERATE_NR", "control"),
    0x07: ("IMMED_FREEZE", "control"),
    0x08: ("IMMED_FREEZE_NR", "control"),
    0x09: ("FREEZE_CLEAR", "control"),
    0x0A: ("FREEZE_CLEAR_NR", "control"),
    0x0B: ("FREEZE_AT_TIME", "control"),
    0x0C: ("FREEZE_AT_TIME_NR", "control"),
    0x0D: ("COLD_RESTART", "diagnostic"),
    0x0E: ("WARM_RESTART", "diagnostic"),
    0x0F: ("INITIALIZE_DATA", "program"),
    0x10: ("INITIALIZE_APPL", "program"),
    0x11: ("START_APPL", "program"),
    0x12: ("STOP_APPL", "program"),
    0x13: ("SAVE_CONFIG", "program"),
    0x14: ("ENABLE_UNSOLICITED", "diagnostic"),
    0x15: ("DISABLE_UNSOLICITED", "diagnostic"),
    0x16: ("ASSIGN_CLASS", "program"),
    0x17: ("DELAY_MEASURE", "time"),
    0x18: ("RECORD_CURRENT_TIME", "time"),
    0x19: ("OPEN_FILE", "file"),
    0x1A: ("CLOSE_FILE", "file"),
    0x1B: ("DELETE_FILE", "file"),
    0x1C: ("GET_FILE_INFO", "file"),
    0x1D: ("AUTHENTICATE_FILE", "file"),
    0x1E: ("ABORT_FILE", "file"),
    0x1F: ("ACTIVATE_CONFIG", "program"),
    0x20: ("AUTHENTICATE_REQ", "other"),
    0x21: ("AUTHENTICATE_ERR", "other"),
    0x81: ("RESPONSE", "other"),
    0x82: ("UNSOLICITED_RESPONSE", "other"),
    0x83: ("AUTHENTICATE_RESP", "other"),
})
RESPONSE_CODES = frozenset({0x81, 0x82, 0x83})  # these carry the two IIN octets

# Internal indications, IIN1 bit 0 first then IIN2 (bit index = 8 * octet + bit); IIN2 bits 6-7 are reserved.
IIN_BITS: tuple[str, ...] = (
    "all_stations", "class_1_events", "class_2_events", "class_3_events", "need_time", "local_control",
    "device_trouble", "device_restart",
    "no_func_code_support", "object_unknown", "parameter_error", "event_buffer_overflow", "already_executing",
    "config_corrupt", "reserved_2_6", "reserved_2_7",
)
ERROR_IIN_MASK = 0x3F  # IIN2 bits that say the request failed

LINK_PRIMARY: Mapping[int, str] = MappingProxyType({
    0: "RESET_LINK_STATES", 2: "TEST_LINK_STATES", 3: "CONFIRMED_USER_DATA", 4: "UNCONFIRMED_USER_DATA",
    9: "REQUEST_LINK_STATUS"})
LINK_SECONDARY: Mapping[int, str] = MappingProxyType({0: "ACK", 1: "NACK", 11: "LINK_STATUS", 15: "NOT_SUPPORTED"})

# (group, variation) -> bytes per object, for the fixed-size objects; PACKED_BITS are 1 or 2 bits per point.
# Objects not listed (device attributes g0, files g70, octet strings g110/g111, authentication g120) are
# variable-size: their headers are decoded, their bodies only where a size prefix says how long they are.
_SIZES = {
    1: {2: 1}, 2: {1: 1, 2: 7, 3: 3}, 3: {2: 1}, 4: {1: 1, 2: 7, 3: 3}, 10: {2: 1}, 11: {1: 1, 2: 7},
    12: {1: 11, 2: 11}, 13: {1: 2, 2: 8},
    20: {1: 5, 2: 3, 3: 5, 4: 3, 5: 4, 6: 2, 7: 4, 8: 2},
    21: {1: 5, 2: 3, 3: 5, 4: 3, 5: 11, 6: 9, 7: 11, 8: 9, 9: 4, 10: 2, 11: 4, 12: 2},
    22: {1: 5, 2: 3, 3: 5, 4: 3, 5: 11, 6: 9, 7: 11, 8: 9}, 23: {1: 5, 2: 3, 3: 5, 4: 3, 5: 11, 6: 9, 7: 11, 8: 9},
    30: {1: 5, 2: 3, 3: 4, 4: 2, 5: 5, 6: 9}, 31: {1: 5, 2: 3, 3: 11, 4: 9, 5: 4, 6: 2, 7: 5, 8: 9},
    32: {1: 5, 2: 3, 3: 11, 4: 9, 5: 5, 6: 9, 7: 11, 8: 15}, 33: {1: 5, 2: 3, 3: 11, 4: 9, 5: 5, 6: 9, 7: 11, 8: 15},
    34: {1: 2, 2: 4, 3: 4}, 40: {1: 5, 2: 3, 3: 5, 4: 9}, 41: {1: 5, 2: 3, 3: 5, 4: 9},
    42: {1: 5, 2: 3, 3: 11, 4: 9, 5: 5, 6: 9, 7: 11, 8: 15}, 43: {1: 6, 2: 4, 3: 12, 4: 10, 5: 6, 6: 10, 7: 12, 8: 16},
    50: {1: 6, 2: 10, 3: 6, 4: 11}, 51: {1: 6, 2: 6}, 52: {1: 2, 2: 2}, 60: {1: 0, 2: 0, 3: 0, 4: 0},

}
OBJECT_SIZES: Mapping[tuple[int, int], int] = MappingProxyType(
    {(g, v): n for g, vs in _SIZES.items() for v, n in vs.items()})
PACKED_BITS: Mapping[tuple[int, int], int] = MappingProxyType({(1, 1): 1, (3, 1): 2, (10, 1): 1, (12, 3): 1,
                                                                (80, 1): 1})


def function_name(code: int) -> str:
    entry = FUNCTIONS.get(code)
    return entry[0] if entry else f"unknown-{code}"


def function_class(code: int) -> str:
    entry = FUNCTIONS.get(code)
    return entry[1] if entry else "other"


@lru_cache(maxsize=4096)
def iin_names(iin: int) -> tuple[str, ...]:
    """The set bits of a 16-bit IIN (IIN1 in the high octet, as Zeek and Wireshark print it)."""
    bits = (iin >> 8) | ((iin & 0xFF) << 8)  # bit i of IIN_BITS
    return tuple(name for i, name in enumerate(IIN_BITS) if bits >> i & 1)
