"""Request/response pairing by (connection, unit id, transaction id), vectorised over a batch of halves.

Semantics (identical to a sequential loop with one pending request per key):
a response pairs with the request just before it under the same key if it came within ``timeout``; a request
followed by another request with the same key was never answered; a request still waiting at the end of a batch is
carried over to the next one until the timeout passes (then it is ``unanswered``); a response with no request is an
``orphan_response``.
"""

from __future__ import annotations

import numpy as np

from otsentry.collectors.events import ModbusBatch
from otsentry.collectors.halves import NONE, HalfBatch, raw_values
from otsentry.contracts.flags import FLAG_BITS, FLAG_ORPHAN_RESPONSE, FLAG_UNANSWERED

__all__ = ["ORPHAN", "Pairer", "UNANSWERED"]

UNANSWERED = FLAG_BITS[FLAG_UNANSWERED]
ORPHAN = FLAG_BITS[FLAG_ORPHAN_RESPONSE]


class Pairer:
    """Stateful across batches: holds the requests still waiting for their response."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self._timeout_ns = int(timeout_s * 1e9)
        self._pending = HalfBatch.empty()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def push(self, halves: HalfBatch | list[HalfBatch], now_ns: int | None = None) -> ModbusBatch:
        """Pair a batch (in capture order); ``now_ns`` is the capture clock (default: the batch's last ts).

        ``halves`` may be a list of parts, taken as their concatenation (saves copying them twice).
        """
        parts = halves if isinstance(halves, list) else [halves]
        h = HalfBatch.concat([self._pending, *parts])
        n = len(h)
        if n == 0:
            return ModbusBatch.empty()
        if now_ns is None:
            now_ns = int(h.ts_ns.max())
        key = (h.conn << 24) | (h.unit << 16) | h.tid  # (connection, unit, transaction id) in one integer
        order = np.lexsort((h.frame, key))  # stable: ADUs of one frame keep their order
        k = key[order]
        is_req = h.from_client[order]
        ts = h.ts_ns[order]
        same = k[1:] == k[:-1]
        pair = same & is_req[:-1] & ~is_req[1:] & (ts[1:] - ts[:-1] <= self._timeout_ns)
        paired = np.zeros(n, dtype=bool)
        paired[:-1] |= pair
        paired[1:] |= pair
        last_in_group = np.ones(n, dtype=bool)
        last_in_group[:-1] = ~same
        lone_req = is_req & ~paired
        carry = lone_req & last_in_group & (now_ns - ts <= self._timeout_ns)
        unanswered = lone_req & ~carry
        orphan = ~is_req & ~paired

        req_idx = np.concatenate([order[:-1][pair], order[unanswered], np.full(int(orphan.sum()), -1)])
        resp_idx = np.concatenate([order[1:][pair], np.full(int(unanswered.sum()), -1), order[orphan]])
        extra = np.concatenate(
            [
                np.zeros(int(pair.sum()), dtype=np.int64),
                np.full(int(unanswered.sum()), UNANSWERED, dtype=np.int64),
                np.full(int(orphan.sum()), ORPHAN, dtype=np.int64),
            ]
        )
        self._pending = h.take(np.sort(order[carry]))
        return _build(h, req_idx, resp_idx, extra)

    def flush(self) -> ModbusBatch:
        """End of capture: every request still waiting is unanswered."""
        h = self._pending
        self._pending = HalfBatch.empty()
        n = len(h)
        idx = np.arange(n)
        return _build(h, idx, np.full(n, -1), np.full(n, UNANSWERED, dtype=np.int64))


def _pick(col: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """col[idx] where idx >= 0, NONE elsewhere."""
    if len(col) == 0:
        return np.full(len(idx), NONE, dtype=np.int64)
    return np.where(idx >= 0, col[np.maximum(idx, 0)], NONE)


def _build(h: HalfBatch, req: np.ndarray, resp: np.ndarray, extra_flags: np.ndarray) -> ModbusBatch:
    if len(req) == 0:
        return ModbusBatch.empty()
    has_req = req >= 0
    has_resp = resp >= 0
    any_idx = np.where(has_req, req, resp)
    first_frame = h.frame[any_idx]
    order = np.lexsort((np.where(has_resp, h.frame[np.maximum(resp, 0)], 0), first_frame))
    req, resp, extra_flags, any_idx = req[order], resp[order], extra_flags[order], any_idx[order]
    has_req, has_resp = has_req[order], has_resp[order]

    def prefer_req(col: np.ndarray) -> np.ndarray:
        r = _pick(col, req)
        return np.where(r != NONE, r, _pick(col, resp))

    resp_count = np.where(has_resp, h.val_count[np.maximum(resp, 0)], 0)
    src = np.where(resp_count > 0, resp, req)
    src = np.where(src >= 0, src, any_idx)
    # Events point into the halves' value array (CSR with arbitrary starts): no copy of register values.
    val_start = h.val_start[src]
    val_count = h.val_count[src]
    flags = _pick(h.flags, req).clip(min=0) | _pick(h.flags, resp).clip(min=0) | extra_flags
    return ModbusBatch(
        conn=h.conn[any_idx],
        unit=h.unit[any_idx],
        tid=h.tid[any_idx],
        fc=np.where(has_req, _pick(h.fc, req), _pick(h.fc, resp)),
        exc=_pick(h.exc, resp),
        subfn=prefer_req(h.subfn),
        addr=prefer_req(h.addr),
        qty=prefer_req(h.qty),
        req_frame=_pick(h.frame, req),
        resp_frame=_pick(h.frame, resp),
        req_ts_ns=_pick(h.ts_ns, req),
        resp_ts_ns=_pick(h.ts_ns, resp),
        flags=flags,
        val_start=val_start,
        val_count=val_count,
        values=raw_values(h),  # still undecoded if nobody reads them (e.g. --summary)
    )
