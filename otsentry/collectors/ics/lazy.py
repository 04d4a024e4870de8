"""A batch's OT operations, built when first read: counting needs none of them, so ``inspect --summary`` builds none.

The fast path (``ics.fastpath``) pairs its messages over arrays (``fastpair``) and keeps the bytes of the units
each operation comes from; reading the operations runs the protocol's parser on them and builds each event as the
pairer does (``pairing.operation_event``), so an operation read is the same object, field for field, as the
general path makes. ``Operations`` is what ``CollectedBatch.operations`` holds:
a sequence of ``OperationEvent``s, in the order they completed (by the frame of the answer, or of the request of
an unanswered one), whichever path made them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Iterable, Iterator, overload

import numpy as np

from otsentry.collectors.ics.fastunits import message_of
from otsentry.collectors.ics.message import Message
from otsentry.collectors.ics.pairing import operation_event
from otsentry.collectors.types import Conn
from otsentry.contracts.events import OperationEvent

__all__ = ["LazyOperations", "Operations"]


class LazyOperations:
    """Operations of fast-path units, each a request (an index in the unit table) and its response or -1."""

    __slots__ = ("_buffers", "_which", "_start", "_size", "_frame", "_ts", "_from_client", "_protocol",
                 "_stations", "_conns", "_conn", "_request", "_response")

    def __init__(self, buffers: list[np.ndarray], which: np.ndarray, start: np.ndarray, size: np.ndarray,
                 frame: np.ndarray, ts: np.ndarray, from_client: np.ndarray, protocol: np.ndarray,
                 stations: np.ndarray, conns: list[Conn], conn: np.ndarray, request: np.ndarray,
                 response: np.ndarray) -> None:
        """Units by index: ``size`` bytes at ``start`` in ``buffers[which]`` (read-only: a chunk's buffer is
        immutable bytes, so it is referenced, not copied), DNP3's sent between ``stations`` (master,
        outstation); ``conn`` indexes ``conns`` per operation."""
        self._buffers, self._which, self._start, self._size = buffers, which, start, size
        self._frame, self._ts, self._from_client, self._protocol = frame, ts, from_client, protocol
        self._stations = stations
        self._conns, self._conn = conns, conn
        self._request, self._response = request, response

    def __len__(self) -> int:
        return len(self._request)

    def build(self) -> list[OperationEvent]:
        conns, buffers = self._conns, self._buffers
        units = list(zip(self._protocol.tolist(), self._which.tolist(), self._start.tolist(),
                         (self._start + self._size).tolist(), self._from_client.tolist(), self._frame.tolist(),
                         self._ts.tolist(), self._stations[:, 0].tolist(), self._stations[:, 1].tolist()))

        def message(i: int) -> Message:
            protocol, which, start, end, from_client, frame, ts, master, outstation = units[i]
            return message_of(protocol, buffers[which][start:end].tobytes(), from_client, frame, ts, master,
                              outstation)

        out = []
        for conn, req, resp in zip(self._conn.tolist(), self._request.tolist(), self._response.tolist()):
            if resp < 0:
                out.append(operation_event(conns[conn], message(req), None, ("unanswered",)))
            else:
                out.append(operation_event(conns[conn], message(req), message(resp)))
        return out


def _completion(op: OperationEvent) -> tuple[int, int]:
    return (op.request_frame if op.response_frame is None else op.response_frame), op.request_frame


class Operations(Sequence):
    """OperationEvents made ready by the decoder plus lazily built ones; built and ordered on first read."""

    __slots__ = ("_ready", "_lazy", "_events")

    def __init__(self, ready: Iterable[OperationEvent] = (), lazy: Iterable[LazyOperations] = ()) -> None:
        self._ready = list(ready)
        self._lazy = tuple(part for part in lazy if len(part))
        self._events: tuple[OperationEvent, ...] | None = None

    def plus(self, more: Iterable[OperationEvent]) -> "Operations":
        more = list(more)
        if not more:
            return self
        if self._events is not None:
            return Operations([*self._events, *more])
        return Operations([*self._ready, *more], self._lazy)

    @property
    def deferred(self) -> int:
        """Operations not built yet (all the fast path's until the batch's operations are first read)."""
        return 0 if self._events is not None else sum(len(part) for part in self._lazy)

    def _all(self) -> tuple[OperationEvent, ...]:
        if self._events is None:
            events = self._ready + [op for part in self._lazy for op in part.build()]
            events.sort(key=_completion)
            self._events, self._ready, self._lazy = tuple(events), [], ()
        return self._events

    def __len__(self) -> int:
        if self._events is not None:
            return len(self._events)
        return len(self._ready) + sum(len(part) for part in self._lazy)

    @overload
    def __getitem__(self, i: int) -> OperationEvent: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[OperationEvent, ...]: ...

    def __getitem__(self, i):
        return self._all()[i]

    def __iter__(self) -> Iterator[OperationEvent]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Operations, tuple, list)):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return f"Operations({len(self)})"
