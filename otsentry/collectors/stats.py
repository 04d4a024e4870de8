"""The collector's counts: what was decoded, and the parser's health (what it could not see, and why).

``stream_counts`` / ``add_stream_counts`` sum the per-direction reassembly counters; the collector folds in a
stream's counters when its conversation ends and its state is released, so ended streams still count.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from otsentry.collectors.ics.counts import ProtocolCounts, merge_counts
from otsentry.collectors.reassembly import StreamState

__all__ = ["CollectorStats", "DEFRAG_STATS", "STREAM_COUNT_KEYS", "SUMMARY_KEYS", "add_stream_counts",
           "merge_stream_counts", "stream_counts", "summary"]

DEFRAG_STATS = {"fragments": "ip_fragments", "reassembled": "ip_reassembled", "expired": "ip_fragments_expired",
                "dropped": "ip_fragments_dropped", "overlaps": "ip_fragment_overlaps",
                "overlap_conflicts": "ip_fragment_overlap_conflicts", "tiny": "ip_tiny_fragments"}
STREAM_COUNT_KEYS = ("retransmissions", "non_modbus_payload_bytes", "tcp_out_of_order", "tcp_overlaps",
                     "tcp_overlap_conflicts", "tcp_gaps", "tcp_gap_bytes", "tcp_held_peak_bytes")


def stream_counts() -> dict[str, int]:
    return dict.fromkeys(STREAM_COUNT_KEYS, 0)


def add_stream_counts(c: dict[str, int], st: StreamState) -> None:
    """Add one stream direction's reassembly counters to ``c`` (the held peak is a maximum, not a sum)."""
    c["retransmissions"] += st.retransmissions
    c["non_modbus_payload_bytes"] += 0 if st.framer is not None else st.skipped_bytes
    c["tcp_out_of_order"] += st.out_of_order
    c["tcp_overlaps"] += st.overlaps
    c["tcp_overlap_conflicts"] += st.overlap_conflicts
    c["tcp_gaps"] += st.gaps
    c["tcp_gap_bytes"] += st.gap_bytes
    c["tcp_held_peak_bytes"] = max(c["tcp_held_peak_bytes"], st.held_peak)


def merge_stream_counts(c: dict[str, int], other: dict[str, int]) -> None:
    """Add counts made by ``stream_counts``/``add_stream_counts`` into ``c``."""
    for name, value in other.items():
        c[name] = max(c[name], value) if name == "tcp_held_peak_bytes" else c[name] + value


@dataclass
class CollectorStats:
    packets: int = 0
    modbus_adus: int = 0
    modbus_requests: int = 0
    modbus_responses: int = 0
    truncated_adus: int = 0
    exceptions: int = 0
    malformed: int = 0
    unanswered: int = 0
    orphan_responses: int = 0
    transactions: int = 0
    flows: int = 0
    retransmissions: int = 0
    non_modbus_payload_bytes: int = 0
    tcp_out_of_order: int = 0  # segments that arrived ahead of a hole and were held
    tcp_overlaps: int = 0  # segments overlapping earlier bytes, same content
    tcp_overlap_conflicts: int = 0  # ... different content (an evasion attempt)
    tcp_gaps: int = 0  # holes that never filled (framing resynchronised after each)
    tcp_gap_bytes: int = 0
    tcp_held_peak_bytes: int = 0  # high-water mark of one direction's out-of-order buffer
    ip_fragments: int = 0  # IPv4/IPv6 fragments seen
    ip_reassembled: int = 0  # datagrams rebuilt from them
    ip_fragments_expired: int = 0  # datagrams that never completed (timeout or end of capture)
    ip_fragments_dropped: int = 0  # datagrams dropped by the memory bounds or for exceeding 65,535 bytes
    ip_fragment_overlaps: int = 0
    ip_fragment_overlap_conflicts: int = 0  # overlapping fragments whose bytes differ (an evasion attempt)
    ip_tiny_fragments: int = 0  # non-last fragments too small for any real MTU (an evasion attempt)
    first_ts: float | None = None
    last_ts: float | None = None
    protocols: dict[str, ProtocolCounts] = field(default_factory=dict)  # the other OT protocols (collectors.ics)
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return round(self.last_ts - self.first_ts, 6)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["duration_s"] = self.duration_s
        d["protocols"] = {name: c.to_dict() for name, c in sorted(self.protocols.items())}
        return d

    def add(self, other: "CollectorStats") -> None:
        """Sum another run's counts into this one (several captures in one command)."""
        for name in (
            "packets", "modbus_adus", "modbus_requests", "modbus_responses", "truncated_adus", "exceptions", "malformed",
            "unanswered", "orphan_responses", "transactions", "flows", "retransmissions", "non_modbus_payload_bytes",
            "tcp_out_of_order", "tcp_overlaps", "tcp_overlap_conflicts", "tcp_gaps", "tcp_gap_bytes",
            *DEFRAG_STATS.values(),
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.first_ts is not None:
            self.first_ts = other.first_ts if self.first_ts is None else min(self.first_ts, other.first_ts)
            self.last_ts = other.last_ts if self.last_ts is None else max(self.last_ts, other.last_ts)
        self.tcp_held_peak_bytes = max(self.tcp_held_peak_bytes, other.tcp_held_peak_bytes)
        merge_counts(self.protocols, other.protocols)
        self.warnings.extend(other.warnings)


# The counts ``inspect --summary`` prints (and ``collect live --summary``, with the capture's drops): what was
# decoded, then the parser's health: bytes it could not decode, holes, reordering, fragments, evasion evidence.
SUMMARY_KEYS = (
    "packets", "modbus_adus", "modbus_requests", "modbus_responses", "truncated_adus", "exceptions", "malformed",
    "unanswered", "orphan_responses", "transactions", "flows", "retransmissions", "duration_s",
    "non_modbus_payload_bytes", "tcp_out_of_order", "tcp_overlaps", "tcp_overlap_conflicts", "tcp_gaps",
    "tcp_gap_bytes", "tcp_held_peak_bytes", *DEFRAG_STATS.values(), "protocols",
)


def summary(stats: CollectorStats, captures: int) -> dict:
    d = stats.to_dict()
    return {"captures": captures, **{k: d[k] for k in SUMMARY_KEYS}}
