"""Vectorised Modbus framing and decoding for the common case.

A segment takes the fast path when it holds one well-framed ADU (or several, whole, back to back: pipelined
requests), follows its stream's previous segment exactly, and its stream has no partial ADU pending; so does an ADU
split over exactly two such segments. That is what a PLC poller sends nearly all the time; everything else (longer
splits, a partial or odd ADU after whole ones, retransmissions, gaps, handshakes) goes, in order, to the general
reassembler, which gives identical results.
Within the fast path, the frequent well-formed PDUs (function codes 1-6, 15, 16 and exception responses) are
decoded with numpy; anything else is decoded by the same table-driven decoder the general path uses.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from otsentry.arrays import ranges
from otsentry.collectors.chunks import Chunk
from otsentry.collectors.grouping import stable_order
from otsentry.collectors.halves import NONE, VALUE_DTYPE, HalfBatch, LazyValues
from otsentry.collectors.mbap import FUNCTION, LENGTH, LENGTH_BASE, MIN_ADU, PROTOCOL_ID, UNIT
from otsentry.collectors.modbus_pdu import decode_pdu_cached as decode_pdu
from otsentry.collectors.packets import Packets
from otsentry.collectors.reassembly import SEQ_MOD, StreamState
from otsentry.contracts.flags import FLAG_BITS, FLAG_MIDSTREAM, flags_to_mask
from otsentry.contracts.network import SYN

__all__ = ["EXCEPTION_CODES_FAST", "MIDSTREAM", "run"]

_PAD = 16  # _decode reads fixed offsets up to 13 from row 0 for rows a field does not apply to
MIDSTREAM = FLAG_BITS[FLAG_MIDSTREAM]
EXCEPTION_CODES_FAST = frozenset({1, 2, 3, 4, 5, 6, 15, 16})
_MAX_ADUS_PER_SEGMENT = 16  # more (rare) goes to the general path
_EXC_FAST = np.isin(np.arange(128), list(EXCEPTION_CODES_FAST))  # lookup table: cheaper than np.isin per chunk


def _u16(u8: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Big-endian 16-bit field at each offset: two byte gathers beat one gather from a strided '>u2' view."""
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
) -> list[HalfBatch]:
    """Decode the fast segments of a chunk; hand every other segment, in order, to ``slow_segment(k)``.

    Returns the decoded rows as parts (single-segment ADUs, then split ones) for the caller to concatenate once.

    Per stream, segments are cut into runs of consecutive single-ADU segments. Runs and the segments between
    them are walked in capture order: a run is taken by the fast path when the stream's reassembler is aligned at
    its first sequence number; otherwise its first segment goes to the general path and the rest is tried again.
    A stream holding out-of-order bytes is never aligned, so all its segments go to the general path until the
    hole is filled or given up.
    """
    n = len(idx)
    plen = p.payload_len[idx].astype(np.int64)
    wire = p.payload_wire_len[idx].astype(np.int64)
    syn = (p.tcp_flags[idx] & SYN) > 0
    active = (plen > 0) | (wire > 0) | syn  # pure ACKs change nothing
    if not active.any():
        return []
    u8 = np.frombuffer(chunk.buf, dtype=np.uint8)
    base = p.payload_off[idx].astype(np.int64)
    seq = p.seq[idx].astype(np.int64)

    # Is each active segment exactly one well-framed ADU? Or the first part of one (length known, not all in)?
    clean = active & ~syn & (plen == wire)
    head = clean & (plen >= LENGTH_BASE)
    safe = np.where(head, base, 0)
    need = np.where(head, _u16(u8, safe + LENGTH), 0) + LENGTH_BASE
    head &= (u8[safe + PROTOCOL_ID] == 0) & (u8[safe + PROTOCOL_ID + 1] == 0) & (need >= MIN_ADU)
    whole = head & (plen == need)
    opens = head & (plen < need)
    extra_k, extra_nth, extra_off, extra_len = _more_adus(u8, base, plen, need, np.flatnonzero(head & (plen > need)))
    whole[extra_k] = True  # several whole ADUs back to back (pipelined requests): as fast as one

    act = np.flatnonzero(active)
    order = act[stable_order(stream[act])]
    s_sorted = stream[order]
    new_stream = np.ones(len(order), dtype=bool)
    new_stream[1:] = s_sorted[1:] != s_sorted[:-1]
    contiguous = np.zeros(len(order), dtype=bool)
    contiguous[1:] = seq[order[1:]] == (seq[order[:-1]] + plen[order[:-1]]) % SEQ_MOD
    # Split pairs: an ADU opened by one segment and completed exactly by the next one of the same stream.
    o1, o2 = order[:-1], order[1:]
    pair = opens[o1] & clean[o2] & ~new_stream[1:] & contiguous[1:] & (plen[o1] + plen[o2] == need[o1])
    pair[1:] &= ~pair[:-1]  # a segment is never both the end of one pair and the start of another
    is_s1 = np.append(pair, False)
    is_s2 = np.insert(pair, 0, False)
    good = whole[order] | is_s1 | is_s2
    run_start = new_stream | ~good | ~contiguous
    run_start[1:] |= ~good[:-1]
    run_start &= ~is_s2
    starts = np.flatnonzero(run_start)
    ends = np.append(starts[1:], len(order))

    fast_pos = np.zeros(len(order), dtype=bool)
    mid_pos = np.zeros(len(order), dtype=bool)
    # Python sees each run through its first segment (and, if taken, where it ends), so only those become lists.
    run_k = order[starts]
    last_k = order[ends - 1]
    runs = zip(starts.tolist(), ends.tolist(), run_k.tolist(), good[starts].tolist(), stream[run_k].tolist(),
               ((seq[last_k] + plen[last_k]) % SEQ_MOD).tolist())
    for a, b, k, run_good, sid, run_next in runs:
        if not run_good:
            slow_segment(k)
            continue
        state = streams.get(sid)
        if state is None:
            state = streams[sid] = StreamState()
        first = a
        while a < b:  # a run never starts with the second half of a split ADU (see run_start)
            if a != first:
                k = int(order[a])
                if is_s2[a]:
                    slow_segment(k)
                    a += 1
                    continue
            if state.aligned and (state.next_seq is None or state.next_seq == seq[k]):
                fast_pos[a:b] = True
                mid_pos[a:b] = not state.saw_syn
                state.next_seq = run_next
                last = int(order[b - 1])  # kept to compare a retransmission of it with (overlap conflicts)
                state.tail = u8[base[last] : base[last] + plen[last]].tobytes()
                state.tail_end = run_next
                state.skipped_mark = state.skipped_bytes  # ADUs come out: the stream is not stalled
                break
            slow_segment(k)
            a += 1

    is_single = np.zeros(n, dtype=bool)  # a mask, not a sort: the fast single-segment ADUs in capture order
    is_single[order[fast_pos & ~is_s1 & ~is_s2]] = True
    single = np.flatnonzero(is_single)
    q = np.flatnonzero(fast_pos & is_s2)
    if len(single) + len(q) == 0:
        return []
    midstream = np.zeros(n, dtype=bool)
    midstream[order[mid_pos]] = True
    # Rows: each fast segment's first ADU (length need), then the further ADUs of multi-ADU segments, in capture
    # order and, within a segment, in byte order (as the general path emits them).
    adu_k, adu_off, adu_len = single, base[single], np.minimum(need[single], plen[single])
    taken = is_single[extra_k]
    if taken.any():  # each segment's ADUs placed after its first one: no sort
        ek = extra_k[taken]
        counts = 1 + np.bincount(ek, minlength=n)[single]
        first_row = np.cumsum(counts) - counts
        row_of = np.zeros(n, dtype=np.int64)
        row_of[single] = first_row
        dest = row_of[ek] + extra_nth[taken]
        adu_k, adu_off, adu_len = (np.empty(int(counts.sum()), dtype=np.int64) for _ in range(3))
        adu_k[first_row], adu_off[first_row], adu_len[first_row] = single, base[single], need[single]
        adu_k[dest], adu_off[dest], adu_len[dest] = ek, extra_off[taken], extra_len[taken]
    out = _decode(u8, p, idx[adu_k], adu_off, adu_len, conn[adu_k], from_client[adu_k], midstream[adu_k])
    if not len(q):
        return [out]
    # ADUs split over two segments: their bytes are copied into a small buffer of their own (appending them to the
    # chunk's buffer would copy all of it) and decoded there; rows follow the single-segment ones as before.
    first, second = order[q - 1], order[q]
    starts = np.empty(2 * len(q), dtype=np.int64)
    counts = np.empty(2 * len(q), dtype=np.int64)
    starts[0::2], starts[1::2] = base[first], base[second]
    counts[0::2], counts[1::2] = plen[first], plen[second]
    size = plen[first] + plen[second]
    pair_base = np.zeros(len(q), dtype=np.int64)
    np.cumsum(size[:-1], out=pair_base[1:])
    pairs_u8 = np.zeros(int(size.sum()) + _PAD, dtype=np.uint8)  # padded: _decode reads a few bytes at offset 0
    pairs_u8[: len(pairs_u8) - _PAD] = u8[ranges(starts, counts)]
    joined = _decode(pairs_u8, p, idx[second], pair_base, size, conn[second], from_client[second], midstream[second])
    return [out, joined] if len(single) else [joined]


def _more_adus(u8: np.ndarray, base: np.ndarray, plen: np.ndarray, need: np.ndarray,
               cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segments (of ``cand``: a well-framed first ADU and more bytes) that hold only whole, well-framed ADUs.

    Returns, for each further ADU of those segments (the first one is ``need`` long at ``base``), its segment, its
    place in the segment (1 for the second ADU, ...), byte offset and length. A segment whose later bytes end in a
    partial ADU, an ADU too short for a function code or a non-zero protocol id is left out: the general path
    handles it (and frames it exactly as Wireshark does).
    """
    none = np.empty(0, dtype=np.int64)
    if not len(cand):
        return none, none, none, none
    end = base[cand] + plen[cand]
    pos = base[cand] + need[cand]  # start of the next ADU
    ok = np.ones(len(cand), dtype=bool)
    done = np.zeros(len(cand), dtype=bool)
    segs, nths, offs, lens = [], [], [], []
    for nth in range(1, _MAX_ADUS_PER_SEGMENT):
        act = np.flatnonzero(ok & ~done)
        if not len(act):
            break
        at = pos[act]
        room = end[act] - at
        safe = np.where(room >= MIN_ADU, at, 0)
        length = _u16(u8, safe + LENGTH) + LENGTH_BASE
        good = ((room >= MIN_ADU) & (u8[safe + PROTOCOL_ID] == 0) & (u8[safe + PROTOCOL_ID + 1] == 0)
                & (length >= MIN_ADU) & (length <= room))
        ok[act[~good]] = False
        act, at, length = act[good], at[good], length[good]
        segs.append(cand[act])
        nths.append(np.full(len(act), nth, dtype=np.int64))
        offs.append(at)
        lens.append(length)
        pos[act] = at + length
        done[act] = pos[act] == end[act]
    keep = ok & done
    if not keep.any():
        return none, none, none, none
    seg, nth, off, ln = (np.concatenate(parts) for parts in (segs, nths, offs, lens))
    whole = np.zeros(int(cand.max()) + 1, dtype=bool)
    whole[cand[keep]] = True
    sel = whole[seg]
    return seg[sel], nth[sel], off[sel], ln[sel]


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
    unit = u8[base + UNIT].astype(np.int64)
    raw = u8[base + FUNCTION].astype(np.int64)
    fc = raw & 0x7F
    pdu_len = plen - FUNCTION
    exc = np.full(m, NONE, dtype=np.int64)
    addr = np.full(m, NONE, dtype=np.int64)
    qty = np.full(m, NONE, dtype=np.int64)
    vcount = np.zeros(m, dtype=np.int64)
    vec = np.zeros(m, dtype=bool)
    b8 = np.minimum(base + 8, len(u8) - 1)
    req, resp = from_client, ~from_client
    is_exc = (raw & 0x80) > 0

    # Exception responses of the public codes.
    e = resp & is_exc & (pdu_len == 2) & _EXC_FAST[fc]
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
    # Values are laid out block by block (rows of one shape together); val_start points into the blocks.
    val_start = np.zeros(m, dtype=np.int64)
    blocks = _Blocks(val_start)
    blocks.add(np.flatnonzero(w1), 1, np.where(fc[w1] == 5, (coil_val[w1] == 0xFF00).astype(np.int64), coil_val[w1]))
    words = _WordViews(u8)
    _words(blocks, words, rr, base + 9, vcount)
    _words(blocks, words, wr, base + 13, vcount)
    _bits(blocks, u8, br, base + 9, vcount)
    _bits(blocks, u8, wc, base + 13, vcount)
    flags = np.where(midstream, MIDSTREAM, 0).astype(np.int64)
    subfn = np.full(m, NONE, dtype=np.int64)
    # The rest: one whole ADU each, decoded by the table decoder into the same columns.
    for k in np.flatnonzero(~vec).tolist():
        b = int(base[k])
        d = decode_pdu(u8[b + 7 : b + int(plen[k])].tobytes(), bool(from_client[k]))
        fc[k] = d.function_code
        exc[k] = NONE if d.exception_code is None else d.exception_code
        subfn[k] = NONE if d.sub_function is None else d.sub_function
        addr[k] = NONE if d.start_address is None else d.start_address
        qty[k] = NONE if d.quantity is None else d.quantity
        flags[k] |= flags_to_mask(d.flags)
        vcount[k] = len(d.values)
        blocks.add(np.array([k]), len(d.values), np.asarray(d.values, dtype=VALUE_DTYPE))
    return HalfBatch(
        frame=p.frame[pk].astype(np.int64), ts_ns=p.ts_ns[pk].astype(np.int64), conn=conn.astype(np.int64),
        from_client=from_client.astype(bool), tid=tid, unit=unit, fc=fc, exc=exc, subfn=subfn, addr=addr, qty=qty,
        val_start=val_start, val_count=vcount, flags=flags, values=blocks.values(),
    )


class _Blocks:
    """Plans value blocks (each holds rows of equal value count back to back); the copying is left to LazyValues.

    Where every row's values will be (``val_start``) is settled now; the values themselves are only copied out of
    the capture when someone reads them.
    """

    def __init__(self, val_start: np.ndarray) -> None:
        self.val_start = val_start
        self.parts: list[np.ndarray | Callable[[], np.ndarray]] = []
        self.size = 0

    def add(self, rows: np.ndarray, count: int, flat: np.ndarray | Callable[[], np.ndarray]) -> None:
        """``flat``: the block's len(rows) * count values, or a function that decodes them."""
        if len(rows) == 0:
            return
        self.val_start[rows] = self.size + count * np.arange(len(rows), dtype=np.int64)
        self.parts.append(flat)
        self.size += len(rows) * count

    def values(self) -> LazyValues:
        return LazyValues(self.parts, self.size)


class _WordViews:
    """The buffer as big-endian 16-bit words at even and at odd byte offsets, for row-wise copies."""

    def __init__(self, u8: np.ndarray) -> None:
        self.views = (
            u8[: len(u8) // 2 * 2].view(">u2"),
            u8[1 : 1 + (len(u8) - 1) // 2 * 2].view(">u2"),
        )

    def rows(self, first_byte: np.ndarray, count: int) -> np.ndarray:
        """(len(first_byte), count) words starting at each byte offset."""
        out = np.empty((len(first_byte), count), dtype=np.uint16)
        for parity in (0, 1):
            sel = (first_byte & 1) == parity
            if sel.any():
                view = self.views[parity]
                windows = np.lib.stride_tricks.sliding_window_view(view, count)
                out[sel] = windows[(first_byte[sel] - parity) // 2]
        return out


def _words(blocks: _Blocks, words: _WordViews, rows: np.ndarray, first_byte: np.ndarray, vcount: np.ndarray) -> None:
    sel = np.flatnonzero(rows)
    if len(sel) == 0:
        return
    counts = vcount[sel]
    for c in np.unique(counts).tolist():
        g = sel[counts == c]
        if c:
            blocks.add(g, c, functools.partial(words.rows, first_byte[g], c))


def _bit_rows(u8: np.ndarray, first_byte: np.ndarray, count: int) -> np.ndarray:
    """(len(first_byte), count) packed coils (lowest bit first) starting at each byte offset."""
    windows = np.lib.stride_tricks.sliding_window_view(u8, (count + 7) // 8)
    return np.unpackbits(windows[first_byte], axis=1, bitorder="little")[:, :count]


def _bits(blocks: _Blocks, u8: np.ndarray, rows: np.ndarray, first_byte: np.ndarray, vcount: np.ndarray) -> None:
    """Packed coils (lowest bit first); each row keeps its first ``vcount`` bits."""
    sel = np.flatnonzero(rows)
    if len(sel) == 0:
        return
    counts = vcount[sel]
    for c in np.unique(counts).tolist():
        g = sel[counts == c]
        if c:
            blocks.add(g, c, functools.partial(_bit_rows, u8, first_byte[g], c))
