"""From framed units to messages, per protocol: the stateful part of decoding (DNP3 transport, COTP segments).

``UnitDecoder.decode`` takes one framed unit of a connection's direction and returns the messages it completes
(none for a DNP3 link frame that ends no fragment, a COTP connection TPDU, an EtherNet/IP I/O frame), counting
everything it sees in the protocol's ``ProtocolCounts``.
"""

from __future__ import annotations

from otsentry.collectors.ics.counts import ProtocolCounts
from otsentry.collectors.ics.dnp3_app import parse_fragment
from otsentry.collectors.ics.dnp3_link import parse_link
from otsentry.collectors.ics.dnp3_transport import TransportReassembler
from otsentry.collectors.ics.enip import HEADER as ENIP_HEADER, parse_encapsulation
from otsentry.collectors.ics.iec104 import parse_apdu
from otsentry.collectors.ics.message import Message, Pdu
from otsentry.collectors.ics.s7comm import S7COMM, S7PLUS, CotpAssembler, parse_s7comm, parse_s7plus, split_cotp

__all__ = ["UnitDecoder"]

_COUNTED_AS = {"tpkt": "cotp", "enip_io": "enip"}  # framer -> the protocol whose counts it adds to (else itself)


class UnitDecoder:
    """Per-connection protocol state for every OT connection of one collector run."""

    def __init__(self, counts: dict[str, ProtocolCounts]) -> None:
        self.counts = counts
        self._transport: dict[int, TransportReassembler] = {}
        self._cotp: dict[int, CotpAssembler] = {}
        self.fragment = b""  # the DNP3 application fragment of the last DNP3 message returned (for logs)

    def _counts(self, protocol: str) -> ProtocolCounts:
        c = self.counts.get(protocol)
        if c is None:
            c = self.counts[protocol] = ProtocolCounts()
        return c

    def decode(self, framer: str, sid: int, from_client: bool, pdu: Pdu) -> list[Message]:
        if framer == "dnp3":
            return self._dnp3(sid, pdu)
        if framer == "iec104":
            return [self._count(parse_apdu(pdu.data, from_client, pdu.frame, pdu.ts_ns), pdu)]
        if framer == "tpkt":
            return self._tpkt(sid, pdu)
        if framer == "enip":
            if len(pdu.data) < ENIP_HEADER:
                c = self._counts("enip")
                c.truncated += 1
                return []
            return [self._count(parse_encapsulation(pdu.data, from_client, pdu.frame, pdu.ts_ns), pdu)]
        if framer == "enip_io":
            self._counts("enip").link_frames += 1
        return []

    def skipped(self, framer: str, nbytes: int) -> None:
        """Bytes the framer could not frame: counted, so that nothing on an OT port goes unseen."""
        self._counts(_COUNTED_AS.get(framer, framer)).skipped_bytes += nbytes

    def idle(self, conn: int) -> bool:
        """Nothing of this connection is in progress: no DNP3 fragment, no COTP segment in either direction."""
        reassembler = self._transport.get(conn)
        if reassembler is not None and reassembler.in_progress:
            return False
        return not any(self._cotp[sid].pending for sid in (2 * conn, 2 * conn + 1) if sid in self._cotp)

    def end(self, conn: int) -> None:
        """Release one connection's state (it ended): what it held is dropped and counted, as by ``close``."""
        reassembler = self._transport.pop(conn, None)
        if reassembler is not None:
            reassembler.close()
            self._counts("dnp3").reassembly_drops += (reassembler.counts.dropped_fragments
                                                      + reassembler.counts.dropped_segments)
        for sid in (2 * conn, 2 * conn + 1):
            assembler = self._cotp.pop(sid, None)
            if assembler is not None and assembler.overflows:
                self._counts("cotp").reassembly_drops += assembler.overflows

    def close(self) -> None:
        for reassembler in self._transport.values():
            reassembler.close()
        if self._transport:
            self._counts("dnp3").reassembly_drops += sum(r.counts.dropped_fragments + r.counts.dropped_segments
                                                         for r in self._transport.values())
        if self._cotp:
            self._counts("cotp").reassembly_drops += sum(a.overflows for a in self._cotp.values())
        self._transport.clear()
        self._cotp.clear()

    def _count(self, msg: Message, pdu: Pdu | None = None) -> Message:
        c = self._counts(msg.protocol)
        c.messages += 1
        if msg.request:
            c.requests += 1
        else:
            c.responses += 1
            if msg.status is not None:
                c.errors += 1
        if "malformed" in msg.flags:
            c.malformed += 1
        if pdu is not None and pdu.truncated or "truncated" in msg.flags:
            c.truncated += 1
        c.count(msg.operation_name)
        return msg

    def _dnp3(self, sid: int, pdu: Pdu) -> list[Message]:
        c = self._counts("dnp3")
        link = parse_link(pdu.data)
        if link is None:
            c.truncated += 1
            return []
        c.link_frames += 1
        if link.crc_errors:
            c.crc_errors += link.crc_errors
            return []
        if not link.carries_data:
            return []
        conn = sid // 2
        reassembler = self._transport.get(conn)
        if reassembler is None:
            reassembler = self._transport[conn] = TransportReassembler()
        fragment = reassembler.feed((sid & 1, link.source, link.destination), link.data)
        if fragment is None:
            return []
        master, outstation = (link.source, link.destination) if link.from_master else (link.destination, link.source)
        self.fragment = fragment
        return [self._count(parse_fragment(fragment, master, outstation, pdu.frame, pdu.ts_ns))]

    def _tpkt(self, sid: int, pdu: Pdu) -> list[Message]:
        cotp = split_cotp(pdu.data)
        c = self._counts("cotp")  # ISO transport below S7comm, S7comm-plus and MMS
        if cotp is None:
            c.malformed += 1
            return []
        kind, eot, data = cotp
        c.link_frames += 1
        if kind != 0xF0:
            return []
        assembler = self._cotp.get(sid)
        if assembler is None:
            assembler = self._cotp[sid] = CotpAssembler()
        tsdu = assembler.feed(eot, data)
        if not tsdu:
            return []
        if tsdu[0] == S7COMM:
            return [self._count(parse_s7comm(tsdu, pdu.frame, pdu.ts_ns), pdu)]
        if tsdu[0] == S7PLUS:
            return [self._count(parse_s7plus(tsdu, pdu.frame, pdu.ts_ns), pdu)]
        return []
