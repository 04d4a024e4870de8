"""The discrete-event core of the generator: actors emit frames, frames are written in time order, counted exactly.

Actors (pollers, background services) are stepped in time order; each step may emit frames up to a short while
into the future (a response, a retransmission). Frames wait in a heap and are written once no actor can emit an
earlier one, so the file is sorted by time while only a second or so of traffic is held in memory. Ground truth
is counted from tags on the frames actually written, so a capture cut at exactly N packets still has exact
counts (an ADU counts in the frame that completes it, as Wireshark shows it).
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from otsentry.synth.pcapwriter import PcapWriter
from otsentry.synth.tcp import Frame

__all__ = ["Actor", "FLOW_MODBUS", "FLOW_TCP", "FLOW_UDP", "GroundTruth", "Sim", "T_FLOW", "T_MULTI", "T_REQUEST",
    "T_RESPONSE", "T_RETRANSMISSION", "T_SPLIT", "Tag", "Transaction"]

# Tag entries (tuples whose first item is one of these codes) attached to emitted frames.
T_REQUEST = 0  # (T_REQUEST, function_code, Transaction | None)
T_RESPONSE = 1  # (T_RESPONSE, function_code, exception_code or 0, Transaction | None)
T_RETRANSMISSION = 2  # (T_RETRANSMISSION, ADUs repeated in it)
T_FLOW = 3  # (T_FLOW, FLOW_*, midstream) on a flow's first frame
T_SPLIT = 4  # (T_SPLIT,) on the frame that completes an ADU split over two segments
T_MULTI = 5  # (T_MULTI,) on a segment carrying several ADUs

FLOW_MODBUS, FLOW_TCP, FLOW_UDP = 0, 1, 2

Tag = tuple[tuple[Any, ...], ...]


@dataclass(slots=True)
class Transaction:
    """One generated Modbus transaction, for tests that join collector output to the truth (opt-in: memory)."""

    ts_ns: int
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    unit_id: int
    transaction_id: int
    function_code: int
    exception_code: int | None = None
    address: int | None = None
    quantity: int | None = None
    request_frame: int | None = None  # 1-based, as Wireshark numbers frames
    response_frame: int | None = None


@dataclass
class GroundTruth:
    """Exact counts of what the generated file contains."""

    seed: int
    packets: int = 0
    first_ts_ns: int = 0
    last_ts_ns: int = 0
    modbus_adus: int = 0  # distinct ADUs (a retransmitted copy is not counted again)
    modbus_requests: int = 0
    modbus_responses: int = 0
    exceptions: int = 0  # responses with the exception bit set
    retransmissions: int = 0  # retransmitted TCP segments
    retransmitted_adus: int = 0  # ADU copies inside retransmitted segments
    split_adus: int = 0  # ADUs spread over two segments
    multi_adu_segments: int = 0  # segments carrying more than one ADU
    tcp_connections: int = 0  # Modbus and other TCP connections
    modbus_connections: int = 0
    midstream_connections: int = 0  # already open when the capture starts (no handshake)
    non_modbus_flows: int = 0  # other TCP connections and UDP 5-tuples
    function_codes: dict[int, int] = field(default_factory=dict)  # requests per function code
    transactions: list[Transaction] | None = None

    @property
    def duration_s(self) -> float:
        return (self.last_ts_ns - self.first_ts_ns) / 1e9

    def to_dict(self, with_transactions: bool = False) -> dict[str, Any]:
        d = asdict(self)
        d["function_codes"] = {str(k): v for k, v in sorted(self.function_codes.items())}
        d["duration_s"] = round(self.duration_s, 6)
        if not with_transactions:
            d.pop("transactions")
        return d


class Actor(Protocol):
    def step(self, ts_ns: int) -> int | None:
        """Act at ``ts_ns`` (emitting frames at or after it); return when to act next, or None to stop."""


class Sim:
    """Shared state for actors: the seeded RNG, the pending-frame heap, port and transaction bookkeeping."""

    def __init__(self, rng: random.Random, keep_transactions: bool = False) -> None:
        self.rng = rng
        self.now = 0
        self.transactions: list[Transaction] | None = [] if keep_transactions else None
        self._out: list[tuple[int, int, bytes, Tag | None]] = []
        self._seq = itertools.count()
        self._port = 49152 + rng.randrange(8000)

    def emit(self, frame: Frame, tag: Tag | None = None) -> None:
        ts, raw = frame
        if ts < self.now:
            raise AssertionError(f"actor emitted a frame at {ts} before the current time {self.now}")
        heapq.heappush(self._out, (ts, next(self._seq), raw, tag))

    def emit_all(self, frames: list[Frame], last_tag: Tag | None = None) -> int:
        """Emit frames, tagging the last one; returns the last timestamp."""
        for frame in frames[:-1]:
            self.emit(frame)
        self.emit(frames[-1], last_tag)
        return frames[-1][0]

    def ephemeral_port(self) -> int:
        """A fresh client port: never reused within a capture of realistic length, so 5-tuples are unique."""
        self._port += 1 + self.rng.randrange(3)
        if self._port > 65535:
            self._port = 49152
        return self._port

    def run(self, writer: PcapWriter, actors: list[tuple[int, Actor]], packets: int, truth: GroundTruth) -> None:
        """Step actors in time order and write exactly ``packets`` frames (fewer if every actor stops)."""
        events = [(t, i, actor) for i, (t, actor) in enumerate(actors)]
        heapq.heapify(events)
        order = itertools.count(len(events))
        out = self._out
        batch: list[tuple[int, bytes]] = []
        counter = _Counter(truth)
        n = 0
        while n < packets:
            limit = events[0][0] if events else None
            while out and n < packets and (limit is None or out[0][0] <= limit):
                ts, _, raw, tag = heapq.heappop(out)
                n += 1
                if n == 1:
                    truth.first_ts_ns = ts
                batch.append((ts, raw))
                if tag is not None:
                    counter.count(tag, n)
                if len(batch) >= 8192:
                    writer.write_many(batch)
                    batch.clear()
            if n >= packets or not events:
                break
            t, _, actor = heapq.heappop(events)
            self.now = t
            nxt = actor.step(t)
            if nxt is not None:
                heapq.heappush(events, (nxt, next(order), actor))
        writer.write_many(batch)
        if batch:
            truth.last_ts_ns = batch[-1][0]
        truth.packets = n
        truth.function_codes = dict(sorted(counter.fcs.items()))
        if self.transactions is not None:  # drop those cut off by the packet limit
            truth.transactions = [t for t in self.transactions if t.request_frame or t.response_frame]


class _Counter:
    """Turns frame tags into ground-truth counts."""

    def __init__(self, truth: GroundTruth) -> None:
        self.truth = truth
        self.fcs: dict[int, int] = {}

    def count(self, tag: Tag, frame_no: int) -> None:
        truth = self.truth
        for entry in tag:
            code = entry[0]
            if code == T_REQUEST:
                truth.modbus_adus += 1
                truth.modbus_requests += 1
                self.fcs[entry[1]] = self.fcs.get(entry[1], 0) + 1
                if entry[2] is not None:
                    entry[2].request_frame = frame_no
            elif code == T_RESPONSE:
                truth.modbus_adus += 1
                truth.modbus_responses += 1
                if entry[2]:
                    truth.exceptions += 1
                if entry[3] is not None:
                    entry[3].response_frame = frame_no
            elif code == T_RETRANSMISSION:
                truth.retransmissions += 1
                truth.retransmitted_adus += entry[1]
            elif code == T_FLOW:
                if entry[1] == FLOW_MODBUS:
                    truth.modbus_connections += 1
                else:
                    truth.non_modbus_flows += 1
                if entry[1] != FLOW_UDP:
                    truth.tcp_connections += 1
                if entry[2]:
                    truth.midstream_connections += 1
            elif code == T_SPLIT:
                truth.split_adus += 1
            elif code == T_MULTI:
                truth.multi_adu_segments += 1
