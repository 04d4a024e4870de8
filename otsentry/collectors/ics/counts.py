"""Per-protocol counts of the OT decoders: what ``inspect --summary`` prints under ``protocols``.

``messages`` counts what Wireshark counts for the protocol on the same capture: DNP3 application fragments
(``dnp3.al.func``), IEC 104 APDUs (``iec60870_104.apdulen``), S7comm PDUs (``s7comm.header.rosctr``), S7comm-plus
PDUs and EtherNet/IP encapsulation messages (``enip.command``). The other counts say what could not be read.
``cotp`` counts the ISO transport (TPKT/COTP) units on port 102 under S7comm, S7comm-plus and MMS alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["ProtocolCounts", "merge_counts"]


@dataclass
class ProtocolCounts:
    messages: int = 0
    requests: int = 0
    responses: int = 0
    errors: int = 0  # responses with an error status (IIN2 errors, negative confirmations, CIP/S7 errors)
    malformed: int = 0
    truncated: int = 0  # units cut by the end of the capture or a gap
    unanswered: int = 0
    orphan_responses: int = 0
    link_frames: int = 0  # framing units below the messages: DNP3 link frames, COTP TPDUs, EtherNet/IP I/O frames
    crc_errors: int = 0  # DNP3 link blocks whose CRC did not match (not decoded further)
    reassembly_drops: int = 0  # DNP3 transport segments/fragments or COTP segments abandoned
    skipped_bytes: int = 0  # bytes on the protocol's port that framed no unit (junk before a start octet...)
    functions: dict[str, int] = field(default_factory=dict)

    def count(self, name: str) -> None:
        self.functions[name] = self.functions.get(name, 0) + 1

    def add(self, other: "ProtocolCounts") -> None:
        for name, value in asdict(other).items():
            if name == "functions":
                for fn, n in value.items():
                    self.functions[fn] = self.functions.get(fn, 0) + n
            else:
                setattr(self, name, getattr(self, name) + value)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["functions"] = dict(sorted(self.functions.items(), key=lambda kv: (-kv[1], kv[0])))
        return d


def merge_counts(into: dict[str, ProtocolCounts], other: dict[str, ProtocolCounts]) -> None:
    for name, counts in other.items():
        into.setdefault(name, ProtocolCounts()).add(counts)
