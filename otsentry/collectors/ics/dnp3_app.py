"""DNP3 application layer: one fragment (application control, function code, IIN, objects) as a ``Message``."""

from __future__ import annotations

from otsentry.collectors.ics.dnp3_names import (ERROR_IIN_MASK, FUNCTIONS, RESPONSE_CODES, function_class,
                                                 function_name, iin_names)
from otsentry.collectors.ics.dnp3_objects import walk_objects
from otsentry.collectors.ics.message import Message

__all__ = ["HEADERS_ONLY", "UNPAIRED", "parse_fragment"]

# Requests whose object headers carry no object bodies (reads, freezes, class assignment, unsolicited control).
HEADERS_ONLY = frozenset({0x01, 0x07, 0x08, 0x09, 0x0A, 0x14, 0x15, 0x16, 0x1E})
# Never answered by a response of their own: confirms, unsolicited responses and the "no response" (_NR) requests.
UNPAIRED = frozenset({0x00, 0x06, 0x08, 0x0A, 0x0C, 0x82})


def parse_fragment(fragment: bytes, master: int, outstation: int, frame: int, ts_ns: int) -> Message:
    """Decode an application fragment sent between ``master`` and ``outstation`` (link addresses).

    Responses (129-131) carry IIN; their ``status`` is the first IIN2 error bit set (function not supported,
    object unknown, parameter error...). The pairing key is (outstation, master, application sequence).
    """
    if len(fragment) < 2:
        return Message("dnp3", frame, ts_ns, True, -1, "unknown--1", "other", outstation, flags=("malformed",))
    control, fc = fragment[0], fragment[1]
    seq = control & 0x0F
    response = fc in RESPONSE_CODES
    flags: list[str] = []
    status = detail = None
    pos = 2
    if response:
        if len(fragment) < 4:
            return Message("dnp3", frame, ts_ns, False, fc, function_name(fc), "other", outstation,
                           key=(outstation, master, seq) if fc != 0x82 else None, flags=("malformed",))
        iin = fragment[2] << 8 | fragment[3]
        pos = 4
        names = iin_names(iin)
        detail = f"iin=0x{iin:04x}" + (f" ({','.join(names)})" if names else "")
        errors = iin_names(iin & ERROR_IIN_MASK)  # IIN2 is the low octet
        status = errors[0] if errors else None
    if fc not in FUNCTIONS:
        flags.append("reserved_function")
    walk = walk_objects(fragment, pos, with_data=response or fc not in HEADERS_ONLY)
    if walk.malformed:
        flags.append("malformed")
    if walk.undecoded:
        flags.append("objects_undecoded")
    # Unsolicited responses are not answers to a request: unpaired. Confirms pair with nothing either.
    key = None if fc in UNPAIRED else (outstation, master, seq)
    return Message("dnp3", frame, ts_ns, not response, fc, function_name(fc), function_class(fc), outstation,
                   walk.objects, walk.values, status, key, tuple(flags), detail or "",
                   fragment[2] << 8 | fragment[3] if response else None)
