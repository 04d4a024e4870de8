"""Columnar ModbusEvents and the connection table they refer to.

A ``ModbusBatch`` is the collector's output: numpy columns, one row per transaction, iterable as ``ModbusEvent``
records. Counting and feature extraction read the columns; only display and JSON output build the objects.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields
from typing import Iterator

import numpy as np

from otsentry.collectors.halves import NONE, VALUE_DTYPE, DecodedOnUse, concat_csr
from otsentry.collectors.modbus_pdu import function_name
from otsentry.collectors.types import Conn
from otsentry.contracts.flags import mask_to_flags
from otsentry.records import ModbusEvent

__all__ = ["ConnTable", "ModbusBatch"]


class ConnTable:
    """Interns connections: id -> Conn, shared by every batch of one collector run.

    Ids only grow. A connection that ended (closed, or idle long enough, see ``Collector``) is ``release``d: its
    key is forgotten at once (the same addresses and ports later are a new connection with a new id), and its
    ``Conn`` stays resolvable until a due time the releaser picks (past the pairing timeout, so that a request it
    left unanswered still resolves) and then until the next ``drop_due``: a batch's ids resolve while the batch is
    current. This keeps a sensor's memory bounded by the connections alive, not by all it ever saw.
    """

    def __init__(self) -> None:
        self.conns: dict[int, Conn] = {}
        self._ids: dict[tuple, int] = {}
        self._next = 0
        self._dying: deque[tuple[int, int]] = deque()  # (due ns, id), in release order

    def __len__(self) -> int:
        """Connections still resolvable."""
        return len(self.conns)

    def __contains__(self, cid: object) -> bool:
        return cid in self.conns

    @property
    def issued(self) -> int:
        """Ids handed out so far (the next connection gets this one)."""
        return self._next

    def get(self, key: tuple) -> int | None:
        """Id of ``key`` if it was interned already (and not released)."""
        return self._ids.get(key)

    def intern(self, key: tuple, make) -> int:
        """Id of ``key``; ``make()`` builds the Conn the first time the key is seen."""
        cid = self._ids.get(key)
        if cid is None:
            cid = self._next
            self._next += 1
            self._ids[key] = cid
            self.conns[cid] = make()
        return cid

    def release(self, key: tuple, due_ns: int) -> int | None:
        """Forget ``key``; its Conn is dropped by the first ``drop_due`` at or after ``due_ns``. Returns its id."""
        cid = self._ids.pop(key, None)
        if cid is not None:
            self._dying.append((due_ns, cid))
        return cid

    def drop_due(self, now_ns: int) -> int:
        """Drop the released connections due by ``now_ns``; returns how many."""
        dropped = 0
        while self._dying and self._dying[0][0] <= now_ns:
            self.conns.pop(self._dying.popleft()[1], None)
            dropped += 1
        return dropped


@dataclass(frozen=True)
class ModbusBatch:
    conn: np.ndarray
    unit: np.ndarray
    tid: np.ndarray
    fc: np.ndarray
    exc: np.ndarray
    subfn: np.ndarray
    addr: np.ndarray
    qty: np.ndarray
    req_frame: np.ndarray
    resp_frame: np.ndarray
    req_ts_ns: np.ndarray
    resp_ts_ns: np.ndarray
    flags: np.ndarray
    val_start: np.ndarray
    val_count: np.ndarray
    values: np.ndarray = DecodedOnUse()  # type: ignore[assignment]  # decoded on first use (see LazyValues)

    def __len__(self) -> int:
        return len(self.conn)

    @classmethod
    def empty(cls) -> "ModbusBatch":
        cols = {f.name: np.empty(0, dtype=np.int64) for f in fields(cls)}
        cols["values"] = np.empty(0, dtype=VALUE_DTYPE)
        return cls(**cols)

    @property
    def ts_ns(self) -> np.ndarray:
        """When each transaction started: the request, else the response."""
        return np.where(self.req_frame != NONE, self.req_ts_ns, self.resp_ts_ns)

    def events(self, conns: ConnTable) -> Iterator[ModbusEvent]:
        """Materialise ModbusEvent records (for display and JSON; not for the hot path)."""
        cols = [getattr(self, f.name).tolist() for f in fields(self) if f.name != "values"]
        values = self.values.tolist()
        table = conns.conns
        for (conn, unit, tid, fc, exc, subfn, addr, qty, rqf, rsf, rqt, rst, flags, vs, vc) in zip(*cols):
            c = table[conn]
            has_req = rqf != NONE
            has_resp = rsf != NONE
            latency = (rst - rqt) / 1e9 if has_req and has_resp else None
            yield ModbusEvent(
                ts=(rqt if has_req else rst) / 1e9,
                client_ip=c.client_ip,
                client_port=c.client_port,
                server_ip=c.server_ip,
                server_port=c.server_port,
                unit_id=unit,
                transaction_id=tid,
                function_code=fc,
                function_name=function_name(fc),
                sub_function=None if subfn == NONE else subfn,
                exception_code=None if exc == NONE else exc,
                start_address=None if addr == NONE else addr,
                quantity=None if qty == NONE else qty,
                values=tuple(values[vs : vs + vc]),
                request_frame=rqf if has_req else None,
                response_frame=rsf if has_resp else None,
                response_ts=rst / 1e9 if has_resp else None,
                latency_s=latency,
                flags=mask_to_flags(flags),
            )

    @staticmethod
    def concat(batches: list["ModbusBatch"]) -> "ModbusBatch":
        return concat_csr(ModbusBatch, batches)
