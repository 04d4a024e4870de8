"""The overlap policy shared by IP fragment and TCP segment reassembly: the bytes seen first for an offset win.

A new piece of data is cut against the pieces already kept; only the parts nobody covered are kept from it, and
every overlap is reported with whether its bytes matched, so the caller can count consistent overlaps and note the
conflicting ones (an evasion attempt: a target with another policy may keep the other copy).
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["first_bytes_win"]


def first_bytes_win(start: int, data: bytes, kept: Iterable[tuple[int, bytes]]
                    ) -> tuple[list[tuple[int, bytes]], list[tuple[bool, int]]]:
    """(the parts of ``data`` at ``start`` that no piece of ``kept`` covers, and per overlap (same bytes?, size))."""
    parts = [(start, data)]
    overlaps: list[tuple[bool, int]] = []
    for have_start, have in kept:
        have_stop = have_start + len(have)
        cut = []
        for a, part in parts:
            b = a + len(part)
            lo, hi = max(a, have_start), min(b, have_stop)
            if lo >= hi:
                cut.append((a, part))
                continue
            overlaps.append((part[lo - a : hi - a] == have[lo - have_start : hi - have_start], hi - lo))
            if a < lo:
                cut.append((a, part[: lo - a]))
            if hi < b:
                cut.append((hi, part[hi - a :]))
        parts = cut
    return parts, overlaps
