"""Transports between stages: a small interface, an in-process implementation, and (``stream.kafka``) Kafka.

The stage code (``stream.collector``, ``stream.worker``) only sees these protocols, so it runs unchanged in one
process (tests, benchmarks, a laptop) and as daemons joined by a broker. The in-process ``MemoryBroker`` keeps
Kafka's semantics where the stages depend on them: keyed records go to a partition by key hash and stay in
order there, consumer groups share partitions and commit offsets (with metadata) per partition, and a consumer
that closes hands its partitions to the remaining members.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

from otsentry.errors import ServiceError

__all__ = ["AuthenticationFailed", "Consumer", "Delivery", "Headers", "MemoryBroker", "MemoryConsumer",
    "MemoryPublisher", "Message", "Publisher", "RebalanceCallback", "TopicPartition", "TransportError"]

TopicPartition = tuple[str, int]
Headers = Sequence[tuple[str, bytes]]


class TransportError(ServiceError, RuntimeError):
    """The transport could not do what was asked (broker unreachable, record not acknowledged in time)."""


class AuthenticationFailed(ServiceError, RuntimeError):
    """The broker refused the credentials: retrying cannot help, so daemons stop with this one line."""


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Delivery(Protocol):
    """The outcome of one publish: pending, acknowledged, or failed with an exception."""

    def done(self) -> bool: ...

    def error(self) -> BaseException | None: ...


class Publisher(Protocol):
    def partitions(self, topic: str) -> list[int]:
        """Partition numbers of ``topic`` (watermarks go to each)."""

    def publish(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None,
                headers: Headers = ()) -> Delivery:
        """Queue one record (asynchronous); may raise ``TransportError`` when it cannot even be queued."""

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued record is acknowledged or failed; False if the timeout expired first."""

    def connected(self) -> bool | None:
        """Whether a broker connection is up (None: unknown)."""

    def close(self, timeout_s: float = 5.0) -> None: ...


RebalanceCallback = Callable[[list[TopicPartition]], None]


class Consumer(Protocol):
    def poll(self, timeout_s: float, max_records: int) -> list[Message]: ...

    def commit(self, offsets: dict[TopicPartition, tuple[int, str]]) -> None:
        """Commit ``(next offset to read, metadata)`` per partition; raises ``TransportError`` on failure."""

    def committed(self, tp: TopicPartition) -> tuple[int, str] | None: ...

    def assignment(self) -> set[TopicPartition]: ...

    def pause(self, tps: Iterable[TopicPartition]) -> None: ...

    def resume(self, tps: Iterable[TopicPartition]) -> None: ...

    def lag(self) -> int | None:
        """Records in the assigned partitions not read yet (None: unknown)."""

    def connected(self) -> bool | None: ...

    def close(self) -> None: ...


# -- in-process implementation -------------------------------------------------------------------------------------


class _Done:
    """A delivery that completed when it was made (the in-process log appends synchronously)."""

    __slots__ = ("_error",)

    def __init__(self, error: BaseException | None = None) -> None:
        self._error = error

    def done(self) -> bool:
        return True

    def error(self) -> BaseException | None:
        return self._error


@dataclass
class _Group:
    members: list["MemoryConsumer"] = field(default_factory=list)
    committed: dict[TopicPartition, tuple[int, str]] = field(default_factory=dict)
    generation: int = 0


class MemoryBroker:
    """Topics as lists of partitions (lists of ``(key, value)``), consumer groups with committed offsets.

    ``fail_publish`` (a callable returning an exception or None) lets tests make deliveries fail.
    """

    def __init__(self, partitions: int = 3) -> None:
        self.default_partitions = partitions
        self.topics: dict[str, list[list[tuple[bytes | None, bytes | None]]]] = {}
        self.groups: dict[str, _Group] = {}
        self.fail_publish: Callable[[str, bytes | None], BaseException | None] | None = None
        self._lock = threading.RLock()

    def create_topic(self, topic: str, partitions: int | None = None) -> None:
        with self._lock:
            if topic not in self.topics:
                self.topics[topic] = [[] for _ in range(partitions or self.default_partitions)]

    def partition_for(self, topic: str, key: bytes | None, counter: int) -> int:
        n = len(self.topics[topic])
        return (zlib.crc32(key) if key is not None else counter) % n

    def records(self, topic: str) -> list[tuple[bytes | None, bytes | None]]:
        """Every record of a topic, partition after partition (for tests)."""
        with self._lock:
            return [r for part in self.topics.get(topic, []) for r in part]

    def publisher(self) -> "MemoryPublisher":
        return MemoryPublisher(self)

    def consumer(self, topics: Sequence[str], group: str, on_assign: RebalanceCallback | None = None,
                 on_revoke: RebalanceCallback | None = None) -> "MemoryConsumer":
        return MemoryConsumer(self, list(topics), group, on_assign, on_revoke)

    def _rebalance(self, group: _Group) -> None:
        """Round-robin the group's topics' partitions over its members; tell each what it lost and got."""
        group.generation += 1
        topics = sorted({t for m in group.members for t in m.topics})
        tps = [(t, p) for t in topics for p in range(len(self.topics.get(t, [])))]
        plan: dict[int, set[TopicPartition]] = {id(m): set() for m in group.members}
        for i, tp in enumerate(tps):
            member = group.members[i % len(group.members)]
            if tp[0] in member.topics:
                plan[id(member)].add(tp)
        for m in group.members:
            m._reassign(plan[id(m)])


class MemoryPublisher:
    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self._counter = 0
        self.closed = False

    def partitions(self, topic: str) -> list[int]:
        self.broker.create_topic(topic)
        return list(range(len(self.broker.topics[topic])))

    def publish(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None,
                headers: Headers = ()) -> Delivery:
        if self.closed:
            raise TransportError("publisher is closed")
        b = self.broker
        with b._lock:
            b.create_topic(topic)
            fail = b.fail_publish(topic, value) if b.fail_publish is not None else None
            if fail is not None:
                return _Done(fail)
            self._counter += 1
            p = partition if partition is not None else b.partition_for(topic, key, self._counter)
            b.topics[topic][p].append((key, value))
        return _Done()

    def flush(self, timeout_s: float) -> bool:
        return True

    def connected(self) -> bool | None:
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        self.closed = True


class MemoryConsumer:
    """A group member: ``poll`` reads its partitions from their positions (committed offset, else 0)."""

    def __init__(self, broker: MemoryBroker, topics: list[str], group: str, on_assign: RebalanceCallback | None,
                 on_revoke: RebalanceCallback | None) -> None:
        self.broker = broker
        self.topics = topics
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._pending: tuple[set[TopicPartition], set[TopicPartition]] | None = None
        self.closed = False
        with broker._lock:
            for t in topics:
                broker.create_topic(t)
            self.group = broker.groups.setdefault(group, _Group())
            self.group.members.append(self)
            broker._rebalance(self.group)

    def _reassign(self, new: set[TopicPartition]) -> None:
        """Called by the broker; the callbacks run inside the member's next ``poll`` (as Kafka's clients do)."""
        revoked, added = self._assigned - new, new - self._assigned
        self._pending = (revoked | (self._pending[0] if self._pending else set()),
                         added | (self._pending[1] if self._pending else set()))
        self._new_assignment = new

    def _apply_rebalance(self) -> None:
        if self._pending is None:
            return
        revoked, added = self._pending
        self._pending = None
        if revoked and self.on_revoke is not None:
            self.on_revoke(sorted(revoked & self._assigned))
        self._assigned = set(self._new_assignment)
        self._paused &= self._assigned
        for tp in revoked:
            self._positions.pop(tp, None)
        for tp in added:
            committed = self.group.committed.get(tp)
            self._positions[tp] = committed[0] if committed else 0
        if added and self.on_assign is not None:
            self.on_assign(sorted(added & self._assigned))

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        """Up to ``max_records``, shared fairly between the partitions (as fetches of several partitions are)."""
        out: list[Message] = []
        with self.broker._lock:
            self._apply_rebalance()
            active = sorted(self._assigned - self._paused)
            while active and len(out) < max_records:
                share = max(1, (max_records - len(out)) // len(active))
                for tp in list(active):
                    log = self.broker.topics[tp[0]][tp[1]]
                    pos = self._positions[tp]
                    take = log[pos:pos + min(share, max_records - len(out))]
                    out.extend(Message(tp[0], tp[1], pos + i, k, v) for i, (k, v) in enumerate(take))
                    self._positions[tp] = pos + len(take)
                    if not take or pos + len(take) >= len(log):
                        active.remove(tp)
        return out

    def commit(self, offsets: dict[TopicPartition, tuple[int, str]]) -> None:
        with self.broker._lock:
            if self.closed:
                raise TransportError("consumer is closed")
            for tp, value in offsets.items():
                if tp in self._assigned:
                    self.group.committed[tp] = value

    def committed(self, tp: TopicPartition) -> tuple[int, str] | None:
        return self.group.committed.get(tp)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        self._paused |= set(tps) & self._assigned

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        self._paused -= set(tps)

    def lag(self) -> int | None:
        with self.broker._lock:
            return sum(len(self.broker.topics[t][p]) - self._positions.get((t, p), 0) for t, p in self._assigned)

    def connected(self) -> bool | None:
        return True

    def close(self) -> None:
        with self.broker._lock:
            if self.closed:
                return
            self.closed = True
            if self in self.group.members:
                self.group.members.remove(self)
                if self.group.members:
                    self.broker._rebalance(self.group)
