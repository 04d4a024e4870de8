"""Requests paired with their responses, per connection and pairing key, into ``OperationEvent``s.

A response pairs with the oldest open request of the same key; a request left open longer than the timeout is
reported unanswered, a response without a request is counted as an orphan (its operation is not invented).
"""

from __future__ import annotations

from collections import OrderedDict

from otsentry.collectors.ics.counts import ProtocolCounts
from otsentry.collectors.ics.effects import effect_of
from otsentry.collectors.ics.message import Message
from otsentry.collectors.types import Conn
from otsentry.contracts.events import OperationEvent

__all__ = ["MAX_PENDING", "OperationPairer"]

MAX_PENDING = 65536  # open requests kept over all connections (the oldest are reported unanswered first)


def _event(conn: Conn, req: Message, resp: Message | None, flags: tuple[str, ...] = (),
           transport: str = "tcp") -> OperationEvent:
    return OperationEvent(
        protocol=req.protocol, ts=req.ts_ns / 1e9, client_ip=conn.client_ip, client_port=conn.client_port,
        server_ip=conn.server_ip, server_port=conn.server_port, station=req.station, operation=req.operation,
        operation_name=req.operation_name, operation_class=req.operation_class, objects=req.objects,
        values=req.values if resp is None or not resp.values else resp.values,
        status=None if resp is None else resp.status or req.status,
        latency_s=None if resp is None else round((resp.ts_ns - req.ts_ns) / 1e9, 6),
        request_frame=req.frame, response_frame=None if resp is None else resp.frame,
        flags=tuple(dict.fromkeys(req.flags + (resp.flags if resp else ()) + flags)),
        effect=effect_of(req.protocol, req.operation_name), transport=transport,
        identity=resp.identity if resp is not None else ())


class OperationPairer:
    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_ns = int(timeout_s * 1e9)
        self._open: OrderedDict[tuple, tuple[Conn, Message, str]] = OrderedDict()

    def push(self, cid: int, conn: Conn, msg: Message, counts: ProtocolCounts, out: list[OperationEvent],
             transport: str = "tcp") -> None:
        if msg.key is None:
            return
        key = (cid, msg.protocol, msg.key)
        if msg.request:
            old = self._open.pop(key, None)
            if old is not None:  # the same key again before an answer: the first went unanswered
                counts.unanswered += 1
                out.append(_event(old[0], old[1], None, ("unanswered",), old[2]))
            self._open[key] = (conn, msg, transport)
            while len(self._open) > MAX_PENDING:
                _, (c, m, t) = self._open.popitem(last=False)
                counts.unanswered += 1
                out.append(_event(c, m, None, ("unanswered",), t))
            return
        req = self._open.pop(key, None)
        if req is None:
            counts.orphan_responses += 1
            return
        out.append(_event(req[0], req[1], msg, (), req[2]))

    def expire(self, now_ns: int, counts: dict[str, ProtocolCounts], out: list[OperationEvent]) -> None:
        """Requests open longer than the timeout (capture clock), oldest first."""
        while self._open:
            key, (conn, msg, transport) = next(iter(self._open.items()))
            if now_ns - msg.ts_ns <= self.timeout_ns:
                return
            del self._open[key]
            counts.setdefault(msg.protocol, ProtocolCounts()).unanswered += 1
            out.append(_event(conn, msg, None, ("unanswered",), transport))

    def flush(self, counts: dict[str, ProtocolCounts], out: list[OperationEvent]) -> None:
        self.expire(1 << 62, counts, out)
