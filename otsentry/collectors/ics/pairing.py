"""Requests paired with their responses, per connection and pairing key, into ``OperationEvent``s.

A response pairs with the oldest open request of the same key; a request left open longer than the timeout is
reported unanswered, a response without a request is counted as an orphan (its operation is not invented).
A request sent to a broadcast or multicast address (EtherNet/IP ListIdentity over UDP) is answered by devices
from their own addresses: each answer to the same client, protocol and key pairs with it, as an operation of that
device, and the request is only reported unanswered when no device answered it.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from ipaddress import ip_address

from otsentry.collectors.ics.counts import ProtocolCounts
from otsentry.collectors.ics.effects import effect_of
from otsentry.collectors.ics.message import Message
from otsentry.collectors.types import Conn
from otsentry.contracts.events import OperationEvent

__all__ = ["MAX_PENDING", "OperationPairer", "operation_event", "to_group"]

MAX_PENDING = 65536  # open requests kept over all connections (the oldest are reported unanswered first)


@lru_cache(maxsize=4096)
def to_group(ip: str) -> bool:
    """A broadcast or multicast destination (a /24's .255 counts: the subnet's mask is not on the wire)."""
    try:
        addr = ip_address(ip)
    except ValueError:
        return False
    return addr.is_multicast or ip.endswith(".255")


def operation_event(conn: Conn, req: Message, resp: Message | None, flags: tuple[str, ...] = (),
                    transport: str = "tcp") -> OperationEvent:
    """The operation of a request and its response (None: unanswered) on one connection."""
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
        self._groups: dict[tuple, tuple] = {}  # (protocol, key, client) -> key in _open of a request to a group
        self._answered: set[tuple] = set()  # keys in _open of group requests some device answered

    def push(self, cid: int, conn: Conn, msg: Message, counts: ProtocolCounts, out: list[OperationEvent],
             transport: str = "tcp") -> None:
        if msg.key is None:
            return
        key = (cid, msg.protocol, msg.key)
        if msg.request:
            old = self._open.pop(key, None)
            if old is not None:  # the same key again before an answer: the first went unanswered
                self._forget(key, old[0], old[1], counts, out, old[2])
            self._open[key] = (conn, msg, transport)
            if to_group(conn.server_ip):
                self._groups[(msg.protocol, msg.key, conn.client_ip, conn.client_port)] = key
            while len(self._open) > MAX_PENDING:
                old_key, (c, m, t) = self._open.popitem(last=False)
                self._forget(old_key, c, m, counts, out, t)
            return
        req = self._open.pop(key, None)
        if req is None:
            group_key = self._groups.get((msg.protocol, msg.key, conn.client_ip, conn.client_port))
            group = self._open.get(group_key) if group_key is not None else None
            if group is None:
                counts.orphan_responses += 1
                return
            self._answered.add(group_key)
            out.append(operation_event(conn, group[1], msg, (), transport))  # the answering device's own operation
            return
        out.append(operation_event(req[0], req[1], msg, (), req[2]))

    def _forget(self, key: tuple, conn: Conn, msg: Message, counts: ProtocolCounts, out: list[OperationEvent],
                transport: str) -> None:
        """A request leaves the open set: unanswered, unless it went to a group and some device answered."""
        if to_group(conn.server_ip):
            self._groups.pop((msg.protocol, msg.key, conn.client_ip, conn.client_port), None)
            if key in self._answered:
                self._answered.discard(key)
                return
        counts.unanswered += 1
        out.append(operation_event(conn, msg, None, ("unanswered",), transport))

    def expire(self, now_ns: int, counts: dict[str, ProtocolCounts], out: list[OperationEvent]) -> None:
        """Requests open longer than the timeout (capture clock), oldest first."""
        while self._open:
            key, (conn, msg, transport) = next(iter(self._open.items()))
            if now_ns - msg.ts_ns <= self.timeout_ns:
                return
            del self._open[key]
            self._forget(key, conn, msg, counts.setdefault(msg.protocol, ProtocolCounts()), out, transport)

    def flush(self, counts: dict[str, ProtocolCounts], out: list[OperationEvent]) -> None:
        self.expire(1 << 62, counts, out)

    @property
    def has_groups(self) -> bool:
        """Requests to a broadcast or multicast address are open (answers may come from any device)."""
        return bool(self._groups)

    def take(self, cids: set[int]) -> list[tuple[tuple, tuple[Conn, Message, str]]]:
        """Remove and return the open requests of these connections, oldest first (the fast path pairs them)."""
        taken = [(key, entry) for key, entry in self._open.items() if key[0] in cids]
        for key, _ in taken:
            del self._open[key]
        return taken

    def put_back(self, entries: list[tuple[tuple, tuple[Conn, Message, str]]],
                 counts: dict[str, ProtocolCounts], out: list[OperationEvent]) -> None:
        """Requests left open by the fast path: kept in request order, as ``push`` keeps them, and bounded."""
        if not entries:
            return
        self._open.update(entries)
        frames = [entry[1].frame for entry in self._open.values()]
        if any(a > b for a, b in zip(frames, frames[1:])):
            self._open = OrderedDict(sorted(self._open.items(), key=lambda kv: kv[1][1].frame))
        while len(self._open) > MAX_PENDING:
            old_key, (c, m, t) = self._open.popitem(last=False)
            self._forget(old_key, c, m, counts.setdefault(m.protocol, ProtocolCounts()), out, t)
