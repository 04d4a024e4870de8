"""A TCP connection model that emits captured frames with realistic framing.

It tracks each side's next sequence number and what it has received, so every segment carries correct seq/ack
numbers, as seen by a sniffer on the path that misses nothing. The knobs collectors must cope with in real
captures are explicit: an application payload split over two segments, several payloads in one segment, a
retransmitted segment (same sequence number, same bytes), and a connection already open when the capture starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from otsentry.contracts.network import ACK, FIN, PSH, RST, SYN
from otsentry.synth.frames import LINK_ETHERNET, Direction, Link

__all__ = ["CLIENT", "Endpoint", "Frame", "SERVER", "TcpConnection"]

Frame = tuple[int, bytes]  # (timestamp in ns since the epoch, frame bytes)

CLIENT, SERVER = 0, 1

_SYN_OPTIONS = bytes.fromhex("020405b4" "01010402")  # MSS 1460, NOP NOP SACK-permitted; no window scaling


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end of a connection: address, port and the MAC seen on the capture for it."""

    ip: str
    port: int
    mac: str = "02:00:00:00:00:01"


class TcpConnection:
    """One client/server TCP connection; every method returns the frames it put on the wire.

    ``established=True`` starts mid-connection: no handshake, sequence numbers start at the ISNs as if
    data had flowed before the capture began. Timestamps are the caller's: methods that emit several frames take
    the round-trip time and spread them over it.
    """

    def __init__(
        self,
        client: Endpoint,
        server: Endpoint,
        *,
        client_isn: int = 1000,
        server_isn: int = 5000,
        established: bool = False,
        window: int = 64240,
        server_window: int | None = None,
        client_ttl: int = 128,
        server_ttl: int = 64,
        client_ip_id: int = 0,
        server_ip_id: int = 0,
        link_kind: str = LINK_ETHERNET,
        vlans: tuple[int, ...] = (),
    ) -> None:
        self.client, self.server = client, server
        link = Link(client.mac, server.mac, link_kind, vlans)
        self._dirs = (
            Direction(client.ip, server.ip, client.port, server.port, link, client_ttl),
            Direction(server.ip, client.ip, server.port, client.port, link.reverse(), server_ttl),
        )
        self._isn = [client_isn & 0xFFFFFFFF, server_isn & 0xFFFFFFFF]
        self.snd = list(self._isn)  # next sequence number each side sends
        self._ident = [client_ip_id, server_ip_id]
        self._window = (window, server_window if server_window is not None else window)
        self._last: list[tuple[int, int, bytes] | None] = [None, None]  # (seq, flags, payload) of last data segment
        self.state = "established" if established else "new"  # new -> established -> closed | reset
        self.segments = 0
        self.retransmissions = 0

    # -- primitive ----------------------------------------------------------------------------------------------

    def _emit(self, ts_ns: int, side: int, flags: int, payload: bytes = b"", seq: int | None = None,
              options: bytes = b"") -> Frame:
        ident = self._ident[side]
        self._ident[side] = (ident + 1) & 0xFFFF
        ack = self.snd[1 - side] if flags & ACK else 0
        frame = self._dirs[side].tcp(self.snd[side] if seq is None else seq, ack, flags, payload,
                                     self._window[side], ident, options)
        self.segments += 1
        return ts_ns, frame

    def segment(self, ts_ns: int, from_client: bool, payload: bytes, flags: int = PSH | ACK) -> Frame:
        """One data segment carrying exactly ``payload`` (any slice of the byte stream); advances the sequence."""
        if self.state != "established":
            raise RuntimeError(f"cannot send data on a {self.state} connection")
        side = CLIENT if from_client else SERVER
        seq = self.snd[side]
        frame = self._emit(ts_ns, side, flags, payload)
        self._last[side] = (seq, flags, payload)
        self.snd[side] = (seq + len(payload)) & 0xFFFFFFFF
        return frame

    # -- application data ---------------------------------------------------------------------------------------

    def send(
        self,
        ts_ns: int,
        from_client: bool,
        payloads: Sequence[bytes],
        *,
        coalesce: bool = False,
        split_at: int | None = None,
        split_gap_ns: int = 200_000,
    ) -> list[Frame]:
        """Send application messages: one segment each, or all in one segment (``coalesce``).

        ``split_at`` cuts the first segment's bytes in two segments at that offset, the second ``split_gap_ns``
        later (a device writing its header and its body separately). Later segments follow 20 us apart.
        """
        chunks = [b"".join(payloads)] if coalesce else list(payloads)
        frames: list[Frame] = []
        ts = ts_ns
        for i, chunk in enumerate(chunks):
            if i == 0 and split_at is not None and 0 < split_at < len(chunk):
                frames.append(self.segment(ts, from_client, chunk[:split_at], ACK))
                ts += split_gap_ns
                chunk = chunk[split_at:]
            frames.append(self.segment(ts, from_client, chunk))
            ts += 20_000
        return frames

    def retransmit(self, ts_ns: int, from_client: bool) -> Frame:
        """Resend the side's last data segment: same sequence number, same bytes, the current ack."""
        side = CLIENT if from_client else SERVER
        last = self._last[side]
        if last is None:
            raise RuntimeError("nothing to retransmit")
        seq, flags, payload = last
        self.retransmissions += 1
        return self._emit(ts_ns, side, flags, payload, seq=seq)

    def ack(self, ts_ns: int, from_client: bool) -> Frame:
        """A pure ACK of everything received. Call it only after new data, or the sniffer sees a duplicate ACK."""
        return self._emit(ts_ns, CLIENT if from_client else SERVER, ACK)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def handshake(self, ts_ns: int, rtt_ns: int = 1_000_000) -> list[Frame]:
        """SYN, SYN/ACK after half the RTT, ACK after the RTT (the sniffer sits near the client)."""
        if self.state != "new":
            raise RuntimeError(f"handshake on a {self.state} connection")
        frames = [self._emit(ts_ns, CLIENT, SYN, options=_SYN_OPTIONS)]
        self.snd[CLIENT] = (self._isn[CLIENT] + 1) & 0xFFFFFFFF
        frames.append(self._emit(ts_ns + rtt_ns // 2, SERVER, SYN | ACK, options=_SYN_OPTIONS))
        self.snd[SERVER] = (self._isn[SERVER] + 1) & 0xFFFFFFFF
        frames.append(self._emit(ts_ns + rtt_ns, CLIENT, ACK))
        self.state = "established"
        return frames

    def close(self, ts_ns: int, rtt_ns: int = 1_000_000, from_client: bool = True) -> list[Frame]:
        """Orderly teardown: FIN/ACK, the peer's FIN/ACK, the last ACK."""
        if self.state != "established":
            raise RuntimeError(f"close on a {self.state} connection")
        side = CLIENT if from_client else SERVER
        frames = [self._emit(ts_ns, side, FIN | ACK)]
        self.snd[side] = (self.snd[side] + 1) & 0xFFFFFFFF
        frames.append(self._emit(ts_ns + rtt_ns // 2, 1 - side, FIN | ACK))
        self.snd[1 - side] = (self.snd[1 - side] + 1) & 0xFFFFFFFF
        frames.append(self._emit(ts_ns + rtt_ns, side, ACK))
        self.state = "closed"
        return frames

    def reset(self, ts_ns: int, from_client: bool = True) -> Frame:
        """Abortive close: one RST/ACK."""
        frame = self._emit(ts_ns, CLIENT if from_client else SERVER, RST | ACK)
        self.state = "reset"
        return frame
