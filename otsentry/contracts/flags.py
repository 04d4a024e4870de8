"""Flags a decoded event may carry, and their bit masks in the collector's columns.

Names are part of the record schema: add, never rename. The bit of a flag is its position in ``ALL_FLAGS``, so
the columns of one run and the names in its records always agree.
"""

from __future__ import annotations

import functools

FLAG_UNANSWERED = "unanswered"  # request with no response before the pairing timeout (or end of capture)
FLAG_ORPHAN_RESPONSE = "orphan_response"  # response with no matching request
FLAG_BAD_PROTOCOL_ID = "bad_protocol_id"  # MBAP protocol id != 0
FLAG_LENGTH_MISMATCH = "length_mismatch"  # MBAP length disagrees with what the function code implies
FLAG_TRUNCATED = "truncated"  # ADU cut short (end of stream, capture snap length, or gap)
FLAG_RESERVED_FUNCTION = "reserved_function"  # function code not in the public table (user-defined or unknown)
FLAG_MALFORMED_PDU = "malformed_pdu"  # PDU too short or inconsistent for its function code
FLAG_MIDSTREAM = "midstream"  # connection seen without its handshake

ALL_FLAGS = (
    FLAG_UNANSWERED,
    FLAG_ORPHAN_RESPONSE,
    FLAG_BAD_PROTOCOL_ID,
    FLAG_LENGTH_MISMATCH,
    FLAG_TRUNCATED,
    FLAG_RESERVED_FUNCTION,
    FLAG_MALFORMED_PDU,
    FLAG_MIDSTREAM,
)

FLAG_BITS = {name: 1 << i for i, name in enumerate(ALL_FLAGS)}


@functools.lru_cache(maxsize=1024)
def flags_to_mask(names: frozenset[str] | tuple[str, ...]) -> int:
    mask = 0
    for name in names:
        mask |= FLAG_BITS[name]
    return mask


def mask_to_flags(mask: int) -> tuple[str, ...]:
    return tuple(name for name in ALL_FLAGS if mask & FLAG_BITS[name])


# What the ``malformed`` feature counts: an ADU whose framing or PDU could not be trusted.
MALFORMED_FLAGS = (FLAG_BAD_PROTOCOL_ID, FLAG_LENGTH_MISMATCH, FLAG_MALFORMED_PDU, FLAG_TRUNCATED)
MALFORMED_MASK = flags_to_mask(MALFORMED_FLAGS)

__all__ = [
    "ALL_FLAGS", "FLAG_BAD_PROTOCOL_ID", "FLAG_BITS", "FLAG_LENGTH_MISMATCH", "FLAG_MALFORMED_PDU", "FLAG_MIDSTREAM",
    "FLAG_ORPHAN_RESPONSE", "FLAG_RESERVED_FUNCTION", "FLAG_TRUNCATED", "FLAG_UNANSWERED", "MALFORMED_FLAGS",
    "MALFORMED_MASK", "flags_to_mask", "mask_to_flags",
]
