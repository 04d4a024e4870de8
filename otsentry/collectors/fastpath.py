"""Vectorised Modbus framing and decoding for the common case.

A segment takes the fast path when it holds exactly one well-framed ADU, follows its stream's previous segment
exactly, and its stream has no partial ADU pending. That is what a PLC poller sends nearly all the time;
everything else (split ADUs, several ADUs per segment, retransmissions, gaps, handshakes) goes, in order, to the
general reassembler, which gives identical results.
Within the fast path, the frequent well-formed PDUs (function codes 1-6, 15, 16 and exception responses) are
decoded with numpy; anything else is decoded by the same table-driven decoder the general path uses.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from otsentry.collectors.capture import Chunk
from otsentry.collectors.grouping import stable_order
from otsentry.collectors.halves import FLAG_BITS, NONE, HalfBatch, HalfBuilder, _ranges, flags_to_mask
from otsentry.collectors.modbus_pdu import decode_pdu
from otsentry.collectors.packets import Packets
from otsentry.collectors.reassembly import SEQ_MOD, StreamState
from otsentry.records import FLAG_MIDSTREAM

SYN = 0x02
MIDSTREAM = FLAG_BITS[FLAG_MIDSTREAM]
EXCEPTION_CODES_FAST = frozenset({1, 2, 3, 4, 5, 6, 15, 16})


def _u16(u8: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return (u8[pos].astype(np.int64) << 8) | u8[pos + 1]


def run(
    chunk: Chunk,
    p: Packets,
    idx: np.ndarray,
    conn: np.ndarray,
    from_client: np.ndarray,
    stream: np.ndarray,
    streams: dict[int, StreamState],
    slow_segment: Callable[[int], None],
) -> HalfBatch:
    """Decode the fast segments of a chunk; hand every other segment, in order, to ``slow_segment(k)``.

    Per stream, segments are cut into runs of consecutive single-ADU segments. Runs and the segments between
    them are walked in capture order: a run is taken by the fast path when the stream's reassembler is aligned at
    its first sequence number; otherwise its first segment goes to the general path and the rest is tried again.
    """
    n = len(idx)
    plen = p.payload_len[idx].astype(np.int64)
    wire = p.payload_wire_len[idx].astype(np.int64)
    syn = (p.tcp_flags[idx] & SYN) > 0
    active = (plen > 0) | (wire > 0) | syn  # pure ACKs change nothing
    if not active.any():
        return HalfBatch.empty()
    u8 = np.frombuffer(chunk.buf, dtype=np.uint8)
    base = p.payload_off[idx].astype(np.int64)
    seq = p.seq[idx].astype(np.int64)

    # Is each active segment exactly one well-framed ADU?
    whole = active & ~syn & (plen == wire) & (plen >= 8)
    safe = np.where(whole, base, 0)
    mlen = np.where(whole, _u16(u8, safe + 4), 0)
    whole &= (u8[safe + 2] == 0) & (u8[safe + 3] == 0) & (mlen >= 2) & (plen == mlen + 6)

    act = np.flatnonzero(active)
    order = act[stable_order(stream[act])]
    s_sorted = stream[order]
    w_sorted = whole[order]
    new_stream = np.ones(len(order), dtype=bool)
    new_stream[1:] = s_sorted[1:] != s_sorted[:-1]
    contiguous = np.zeros(len(order), dtype=bool)
    contiguous[1:] = seq[order[1:]] == (seq[order[:-1]] + plen[order[:-1]]) % SEQ_MOD
    run_start = new_stream | ~w_sorted | ~contiguous
    run_start[1:] |= ~w_sorted[:-1]
    starts = np.flatnonzero(run_start)
    ends = np.append(starts[1:], len(order))

    fast_rows = np.zeros(n, dtype=bool)
    midstream = np.zeros(n, dtype=bool)
    order_l = order.tolist()
    for a, b in zip(starts.tolist(), ends.tolist()):
        k = order_l[a]
        if not w_sorted[a]:
            slow_segment(k)
            continue
        sid = int(stream[k])
        state = streams.get(sid)
        if state is None:
            state = streams[sid] = StreamState()
        while a < b:
            k = order_l[a]
            if state.aligned and (state.next_seq is None or state.next_seq == seq[k]):
                rows = order[a:b]
                fast_rows[rows] = True
                midstream[rows] = not state.saw_syn
                last = order_l[b - 1]
                state.next_seq = int((seq[last] + plen[last]) % SEQ_MOD)
                break
            slow_segment(k)
            a += 1

    rows = np.flatnonzero(fast_rows)
    if len(rows) == 0:
        return HalfBatch.empty()
    return _decode(u8, p, idx[rows], base[rows], plen[rows], conn[rows], from_client[rows], midstream[rows])


def _decode(
    u8: np.ndarray,
    p: Packets,
    pk: np.ndarray,
    base: np.ndarray,
    plen: np.ndarray,
    conn: np.ndarray,
    from_client: np.ndarray,
    midstream: np.ndarray,
) -> HalfBatch:
    """Decode single-ADU segments: vectorised for the frequent well-formed PDUs, table decoder for the rest."""
    m = len(pk)
    tid = _u16(u8, base)
    unit = u8[base + 6].astype(np.int64)
    raw = u8[base + 7].astype(np.int64)
    fc = raw & 0x7F
    pdu_len = plen - 7
    exc = np.full(m, NONE, dtype=np.int64)
    addr = np.full(m, NONE, dtype=np.int64)
    qty = np.full(m, NONE, dtype=np.int64)
    vcount = np.zeros(m, dtype=np.int64)
    vec = np.zeros(m, dtype=bool)
    b8 = np.minimum(base + 8, len(u8) - 1)
    req, resp = from_client, ~from_client
    is_exc = (raw & 0x80) > 0

    # Exception responses of the public codes.
    e = resp & is_exc & (pdu_len == 2) & np.isin(fc, list(EXCEPTION_CODES_FAST))
    exc[e] = u8[b8[e]]
    vec |= e
    normal = ~is_exc
    a16 = np.where(pdu_len >= 5, base + 8, 0)
    # Read requests 1-4: address + quantity.
    r = req & normal & (fc >= 1) & (fc <= 4) & (pdu_len == 5)
    # Write-single 5/6 (request and echo response) and write-multiple responses 15/16: address + one word.
    w1 = normal & ((fc == 5) | (fc == 6)) & (pdu_len == 5)
    coil_val = _u16(u8, a16 + 2)  # the written value (FC 5: 0xFF00 or 0x0000)
    w1 &= (fc == 6) | (coil_val == 0xFF00) | (coil_val == 0)
    wm_resp = resp & normal & ((fc == 15) | (fc == 16)) & (pdu_len == 5)
    aq = r | wm_resp
    addr[aq | w1] = _u16(u8, a16[aq | w1])
    qty[aq] = _u16(u8, a16[aq] + 2)
    vec |= aq | w1
    # Register read responses 3/4: byte count + registers.
    bc = u8[b8].astype(np.int64)
    rr = resp & normal & ((fc == 3) | (fc == 4)) & (pdu_len == bc + 2) & (bc % 2 == 0)
    # Bit read responses 1/2: byte count + packed bits.
    br = resp & normal & ((fc == 1) | (fc == 2)) & (pdu_len == bc + 2)
    # Write-multiple requests 15/16: address, quantity, byte count, data.
    wq = req & normal & ((fc == 15) | (fc == 16)) & (pdu_len >= 6)
    wqb = np.where(wq, base, 0)
    wq_qty = _u16(u8, wqb + 10)
    wq_bc = u8[wqb + 12].astype(np.int64)
    wr = wq & (fc == 16) & (pdu_len == wq_bc + 6) & (wq_bc == 2 * wq_qty)
    wc = wq & (fc == 15) & (pdu_len == wq_bc + 6) & (wq_bc == (wq_qty + 7) // 8)
    addr[wr | wc] = _u16(u8, wqb[wr | wc] + 8)
    qty[wr | wc] = wq_qty[wr | wc]
    vec |= rr | br | wr | wc

    vcount[w1] = 1
    vcount[rr] = bc[rr] // 2
    vcount[br] = bc[br] * 8
    vcount[wr] = wq_qty[wr]
    vcount[wc] = wq_qty[wc]
    val_start = np.zeros(m, dtype=np.int64)
    if m:
        np.cumsum(vcount[:-1], out=val_start[1:])
    values = np.zeros(int(vcount.sum()), dtype=np.int64)
    values[val_start[w1]] = np.where(fc[w1] == 5, (coil_val[w1] == 0xFF00).astype(np.int64), coil_val[w1])
    _fill_words(values, val_start, vcount, rr, base + 9, u8)
    _fill_words(values, val_start, vcount, wr, base + 13, u8)
    _fill_bits(values, val_start, vcount, br, base + 9, bc, u8)
    _fill_bits(values, val_start, vcount, wc, base + 13, wq_bc, u8)

    flags = np.where(midstream, MIDSTREAM, 0).astype(np.int64)
    subfn = np.full(m, NONE, dtype=np.int64)
    fast = HalfBatch(
        frame=p.frame[pk].astype(np.int64), ts_ns=p.ts_ns[pk].astype(np.int64), conn=conn.astype(np.int64),
        from_client=from_client.astype(bool), tid=tid, unit=unit, fc=fc, exc=exc, subfn=subfn, addr=addr, qty=qty,
        val_start=val_start, val_count=vcount, flags=flags, values=values,
    )
    if vec.all():
        return fast
    # The rest: one whole ADU each, decoded by the table decoder.
    builder = HalfBuilder()
    for k in np.flatnonzero(~vec).tolist():
        b = int(base[k])
        d = decode_pdu(u8[b + 7 : b + int(plen[k])].tobytes(), bool(from_client[k]))
        builder.add(int(fast.frame[k]), int(fast.ts_ns[k]), int(conn[k]), bool(from_client[k]), int(tid[k]),
                    int(unit[k]), d.function_code, d.exception_code, d.sub_function, d.start_address, d.quantity,
                    d.values, flags_to_mask(d.flags) | int(flags[k]))
    return HalfBatch.concat([fast.take(np.flatnonzero(vec)), builder.build()])


def _fill_words(values, val_start, vcount, rows, first_byte, u8) -> None:
    """Big-endian 16-bit words into their rows' value slots; rows grouped by count to use 2-D gathers."""
    if not rows.any():
        return
    sel = np.flatnonzero(rows)
    counts = vcount[sel]
    for c in np.unique(counts).tolist():
        if c == 0:
            continue
        g = sel[counts == c]
        raw = u8[first_byte[g][:, None] + np.arange(2 * c, dtype=np.int64)]  # (rows, 2c) bytes
        values[val_start[g][:, None] + np.arange(c, dtype=np.int64)] = raw.view(">u2")


def _fill_bits(values, val_start, vcount, rows, first_byte, nbytes, u8) -> None:
    if not rows.any():
        return
    nb = nbytes[rows]
    data = u8[_ranges(first_byte[rows], nb)]
    bits = np.unpackbits(data, bitorder="little").astype(np.int64)
    counts = vcount[rows]
    # Each row owns nb*8 bits; keep its first `counts` of them.
    bit_start = np.zeros(len(nb), dtype=np.int64)
    np.cumsum(nb[:-1] * 8, out=bit_start[1:])
    values[_ranges(val_start[rows], counts)] = bits[_ranges(bit_start, counts)]
