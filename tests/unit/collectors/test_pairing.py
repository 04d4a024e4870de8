"""Vectorised pairing equals the obvious sequential loop, batch boundaries included."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.collectors.halves import HalfBuilder
from otsentry.contracts.flags import FLAG_BITS
from otsentry.collectors.pairing import Pairer
from otsentry.collectors.events import ModbusBatch

TIMEOUT_S = 2.0
T_NS = int(TIMEOUT_S * 1e9)

half = st.tuples(
    st.integers(0, 1),  # conn
    st.integers(0, 1),  # unit
    st.integers(0, 2),  # tid
    st.booleans(),  # from_client (request)
    st.integers(0, 3_000_000_000),  # time step ns
)


def _build(rows, start_frame=1, start_ts=0):
    b = HalfBuilder()
    ts = start_ts
    for i, (conn, unit, tid, is_req, step) in enumerate(rows):
        ts += step
        b.add(start_frame + i, ts, conn, is_req, tid, unit, 3, None, None, 10 if is_req else None,
              2 if is_req else None, () if is_req else (i, i + 1), 0)
    return b.build(), ts


def reference(rows):
    """Sequential pairing: one pending request per key."""
    pending = {}
    out = []
    ts = 0
    for i, (conn, unit, tid, is_req, step) in enumerate(rows):
        ts += step
        frame = i + 1
        key = (conn, unit, tid)
        if is_req:
            if key in pending:
                out.append((pending.pop(key)[0], None))
            pending[key] = (frame, ts)
        else:
            req = pending.pop(key, None)
            if req is not None and ts - req[1] <= T_NS:
                out.append((req[0], frame))
            else:
                if req is not None:
                    out.append((req[0], None))
                out.append((None, frame))
    out.extend((f, None) for f, _ in pending.values())
    return sorted(out, key=lambda e: (e[0] if e[0] is not None else e[1], e[1] or 0))


def pairs(batch: ModbusBatch):
    return [
        (None if a < 0 else int(a), None if b < 0 else int(b)) for a, b in zip(batch.req_frame, batch.resp_frame)
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(half, max_size=40), st.integers(0, 40))
def test_vectorised_pairing_matches_sequential(rows, split):
    batch, _ = _build(rows)
    pairer = Pairer(TIMEOUT_S)
    first = batch.take(list(range(min(split, len(rows)))))
    second = batch.take(list(range(min(split, len(rows)), len(rows))))
    # The capture clock at the split is the last timestamp seen in the first part.
    now = int(first.ts_ns.max()) if len(first) else 0
    got = pairs(pairer.push(first, now)) + pairs(pairer.push(second)) + pairs(pairer.flush())
    got.sort(key=lambda e: (e[0] if e[0] is not None else e[1], e[1] or 0))
    assert got == reference(rows)


def test_pair_fields_and_flags():
    rows = [(0, 1, 7, True, 0), (0, 1, 7, False, 1_000_000), (0, 1, 8, False, 1), (0, 1, 9, True, 1)]
    batch, _ = _build(rows)
    p = Pairer(TIMEOUT_S)
    out = ModbusBatch.concat([p.push(batch), p.flush()])
    assert pairs(out) == [(1, 2), (None, 3), (4, None)]
    assert out.addr.tolist() == [10, -1, 10]
    assert out.qty.tolist() == [2, -1, 2]
    # Response values win for a read; the orphan keeps its own values.
    assert out.values[out.val_start[0] : out.val_start[0] + out.val_count[0]].tolist() == [1, 2]
    assert (out.resp_ts_ns[0] - out.req_ts_ns[0]) == 1_000_000
    assert out.flags[1] & FLAG_BITS["orphan_response"]
    assert out.flags[2] & FLAG_BITS["unanswered"]
    assert not out.flags[0]
