"""DNP3 transport function: application fragments rebuilt from link frames (FIR, FIN, 6-bit sequence).

Per (direction, source, destination) of one connection, as IEEE 1815 section 8 says: a segment with FIR starts a
new fragment (one in progress is dropped), a later segment must carry the next sequence number (mod 64) or the
fragment in progress is dropped, FIN completes it. A fragment longer than ``MAX_FRAGMENT`` is dropped and counted
(Suricata's ``too_long_reassembly``): memory per sequence is bounded, whatever a peer sends. So is the number
of sequences in progress per connection (``MAX_OPEN``; link addresses are 16 bits, a forger can make billions):
a new fragment beyond it evicts the oldest one in progress, counted as dropped and in ``evicted``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MAX_FRAGMENT", "MAX_OPEN", "TransportCounts", "TransportReassembler"]

MAX_FRAGMENT = 8192  # bytes; the standard's usual maximum fragment size is 2048
MAX_OPEN = 16  # fragments in progress per connection (a master and its outstations: a handful)
FIN, FIR, SEQ = 0x80, 0x40, 0x3F


@dataclass
class TransportCounts:
    segments: int = 0
    fragments: int = 0
    dropped_segments: int = 0  # without FIR and no fragment in progress (one out of sequence ends its fragment)
    dropped_fragments: int = 0  # incomplete fragments abandoned (a new FIR, a sequence break, too long)
    too_long: int = 0
    evicted: int = 0  # fragments in progress dropped for a newer one (more than MAX_OPEN sequences)


@dataclass
class _Partial:
    data: bytearray
    next_seq: int


@dataclass
class TransportReassembler:
    """Transport reassembly of one connection; ``feed`` returns the completed application fragment, if any."""

    counts: TransportCounts = field(default_factory=TransportCounts)
    _open: dict[tuple, _Partial] = field(default_factory=dict)

    def feed(self, key: tuple, segment: bytes) -> bytes | None:
        if not segment:
            return None
        self.counts.segments += 1
        head, body = segment[0], segment[1:]
        seq = head & SEQ
        partial = self._open.get(key)
        if head & FIR:
            if partial is not None:
                self.counts.dropped_fragments += 1
                del self._open[key]
            elif len(self._open) >= MAX_OPEN:
                del self._open[next(iter(self._open))]  # the oldest started
                self.counts.evicted += 1
                self.counts.dropped_fragments += 1
            partial = self._open[key] = _Partial(bytearray(), seq)
        elif partial is None:
            self.counts.dropped_segments += 1
            return None
        elif seq != partial.next_seq:  # one drop: the fragment, with the segment that broke it
            self.counts.dropped_fragments += 1
            del self._open[key]
            return None
        partial.data += body
        partial.next_seq = (seq + 1) & SEQ
        if len(partial.data) > MAX_FRAGMENT:
            self.counts.too_long += 1
            self.counts.dropped_fragments += 1
            del self._open[key]
            return None
        if head & FIN:
            del self._open[key]
            self.counts.fragments += 1
            return bytes(partial.data)
        return None

    @property
    def in_progress(self) -> int:
        """Fragments started and not yet complete."""
        return len(self._open)

    @property
    def pending_bytes(self) -> int:
        """Bytes held in fragments not yet complete (at most ``MAX_FRAGMENT`` for each of ``MAX_OPEN`` sequences)."""
        return sum(len(p.data) for p in self._open.values())

    def close(self) -> None:
        """End of the connection: fragments still open were never completed."""
        self.counts.dropped_fragments += len(self._open)
        self._open.clear()
