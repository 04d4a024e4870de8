"""Feature windows: boundaries, lateness, determinism, and every feature on a hand-built capture with known answers.

The capture is built with the project's synthetic traffic builders (``otsentry.synth``), so each number asserted
below follows from the script in ``build_capture`` and nothing else.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Iterable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otsentry.collectors.collector import CollectedBatch
from otsentry.collectors.events import ConnTable, ModbusBatch
from otsentry.collectors.halves import NONE
from otsentry.collectors.types import Conn
from otsentry.features import FLOW_FEATURES, PAIR_FEATURES, FEATURE_SCHEMA_VERSION, Windower, to_matrix, windows_from_capture
from otsentry.contracts.schema import ABSENT
from otsentry.records import FeatureWindow
from otsentry.synth import modbus as mb
from otsentry.synth.frames import Direction, Link
from otsentry.synth.pcapwriter import PcapWriter
from otsentry.synth.tcp import Endpoint, TcpConnection
from tests.helpers import capture_params, shared_pcaps

T0 = 1_700_000_000  # a multiple of 10 s: windows start at T0, T0 + 10, ...
S = 1_000_000_000
MS = 1_000_000
HMI, PLC, DNS, WEB = "10.0.0.1", "10.0.0.2", "10.0.0.53", "10.0.0.80"


def at(seconds: float) -> int:
    return T0 * S + int(round(seconds * S))


class Script:
    """Frames of a small plant conversation, kept with their timestamps (written sorted by time)."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.conn = TcpConnection(Endpoint(HMI, 40000), Endpoint(PLC, 502))
        self.tid = 0

    def add(self, frames: list[tuple[int, bytes]] | tuple[int, bytes]) -> None:
        self.frames.extend(frames if isinstance(frames, list) else [frames])

    def transact(self, t: float, unit: int, request: bytes, response: bytes | None, latency_ms: float = 5.0) -> None:
        self.tid += 1
        self.add(self.conn.send(at(t), True, [mb.adu(self.tid, unit, request)]))
        if response is not None:
            self.add(self.conn.send(at(t) + int(latency_ms * MS), False, [mb.adu(self.tid, unit, response)]))

    def read(self, t: float, unit: int, values: tuple[int, ...], latency_ms: float, address: int = 100) -> None:
        self.transact(t, unit, mb.read_request(3, address, len(values)), mb.read_registers_response(3, values),
                      latency_ms)

    def write(self, path: Path) -> None:
        with PcapWriter(path, nanosecond=True) as w:
            for ts, frame in sorted(self.frames, key=lambda f: f[0]):
                w.write(ts, frame)


def build_capture(path: Path) -> Script:
    """Window 0 [T0, T0+10): unit 1 polled every 2 s; unit 2 gets writes, an exception and a restart; a DNS query
    and a web connection. Window 1 [T0+10, T0+20): a poll exactly on the boundary, an unanswered request, a
    retransmitted request, a RST. Steps run in time order (the TCP model numbers segments as they are made).
    """
    s = Script()
    dns_q, dns_r = Direction(HMI, DNS, 5353, 53, Link()), Direction(DNS, HMI, 53, 5353, Link())
    web = TcpConnection(Endpoint(HMI, 41000), Endpoint(WEB, 80))
    steps = [
        (1.0, lambda: s.add(s.conn.handshake(at(1.0), rtt_ns=MS))),
        (2.0, lambda: s.read(2, 1, (1, 2, 3), 5)),
        (3.0, lambda: s.transact(3, 2, mb.write_single_register(10, 1234), mb.write_single_register(10, 1234), 2)),
        (3.5, lambda: s.add([(at(3.5), dns_q.udp(b"q" * 30)), (at(3.501), dns_r.udp(b"r" * 60))])),
        (4.0, lambda: s.read(4, 1, (1, 2, 3), 10)),
        (4.5, lambda: s.add(web.handshake(at(4.5), rtt_ns=MS))),
        (5.0, lambda: s.transact(5, 2, mb.write_multiple_registers_request(20, (7, 8)),
                                 mb.write_multiple_response(16, 20, 2), 2)),
        (6.0, lambda: s.read(6, 1, (1, 5, 3), 15)),
        (7.0, lambda: s.transact(7, 2, mb.read_request(3, 9999, 1),
                                 mb.exception_response(3, mb.ILLEGAL_DATA_ADDRESS), 2)),
        (8.0, lambda: s.read(8, 1, (1, 5, 3), 20)),
        (9.0, lambda: s.transact(9, 2, mb.diagnostics(1), mb.diagnostics(1), 2)),
        (10.0, lambda: s.read(10.0, 1, (1, 5, 3), 5)),  # exactly on the boundary: window 1
        (12.0, lambda: s.transact(12, 1, mb.read_request(3, 100, 3), None)),  # never answered
        (14.0, lambda: s.transact(14, 1, mb.read_request(3, 100, 3), None)),
        (14.2, lambda: s.add(s.conn.retransmit(at(14.2), True))),
        (14.3, lambda: s.add(s.conn.send(at(14.3), False,
                                         [mb.adu(s.tid, 1, mb.read_registers_response(3, (2, 5, 3)))]))),
        (16.0, lambda: s.add(s.conn.reset(at(16), True))),
    ]
    for _, step in sorted(steps, key=lambda x: x[0]):
        step()
    s.write(path)
    return s


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Script]:
    path = tmp_path_factory.mktemp("features") / "plant.pcap"
    return path, build_capture(path)


@pytest.fixture(scope="module")
def windows(capture: tuple[Path, Script]) -> list[FeatureWindow]:
    return list(windows_from_capture(capture[0]))


def find(windows: list[FeatureWindow], kind: str, start: float, client: str, server: str, key: int | str = 1
         ) -> dict[str, float]:
    for w in windows:
        if (w.kind, w.window_start, w.client_ip, w.server_ip) == (kind, start, client, server) and \
                (w.unit_id == key if kind == "pair" else w.port == key):
            return dict(zip(w.feature_names(), w.values))
    raise AssertionError(f"no {kind} window {start} {client} {server} {key}")


def frame_bytes(script: Script, lo: float, hi: float, *hosts: str) -> tuple[int, int]:
    """Packets and bytes of the script's frames between two hosts in [lo, hi) seconds after T0."""
    from otsentry.synth.frames import ip_bytes

    pair = {ip_bytes(h) for h in hosts}
    sel = [f for ts, f in script.frames if at(lo) <= ts < at(hi) and {f[26:30], f[30:34]} == pair]
    return len(sel), sum(len(f) for f in sel)


# -- windows and boundaries ----------------------------------------------------------------------------------------


def test_windows_are_aligned_ordered_and_typed(windows: list[FeatureWindow]) -> None:
    keys = [(w.window_start, w.kind) for w in windows]
    assert keys == sorted(keys)
    for w in windows:
        assert w.window_end - w.window_start == 10.0 and w.window_start % 10 == 0
        assert w.schema == FEATURE_SCHEMA_VERSION
        assert len(w.values) == len(PAIR_FEATURES if w.kind == "pair" else FLOW_FEATURES)
        assert all(math.isfinite(v) for v in w.values)
    pairs = [(w.window_start - T0, w.unit_id) for w in windows if w.kind == "pair"]
    assert pairs == [(0, 1), (0, 2), (10, 1)]  # nothing for unit 2 in window 1: empty windows are not emitted


def test_transaction_on_the_boundary_goes_to_the_later_window(windows: list[FeatureWindow]) -> None:
    w0, w1 = find(windows, "pair", T0, HMI, PLC), find(windows, "pair", T0 + 10, HMI, PLC)
    assert w0["fc_3"] == 4  # the reads at 2, 4, 6, 8 s
    assert w1["fc_3"] == 3  # 10 s (on the boundary), 12 s (unanswered), 14 s


def test_pair_counts_latency_and_interarrival(windows: list[FeatureWindow]) -> None:
    f = find(windows, "pair", T0, HMI, PLC, 1)
    assert (f["requests"], f["responses"], f["transactions"]) == (4, 4, 4)
    assert f["fc_distinct"] == 1 and f["reads"] == 4 and f["writes"] == 0 and f["write_ratio"] == 0
    assert f["interarrival_mean_s"] == pytest.approx(2.0) and f["interarrival_std_s"] == pytest.approx(0.0, abs=1e-9)
    assert f["latency_mean_ms"] == pytest.approx(12.5)
    assert f["latency_p95_ms"] == pytest.approx(20.0)  # nearest rank: ceil(0.95 * 4) = 4th of 5, 10, 15, 20
    assert f["latency_max_ms"] == pytest.approx(20.0)
    assert (f["addr_min"], f["addr_max"], f["addr_span"], f["addr_distinct"]) == (100, 102, 3, 1)
    assert (f["write_addr_min"], f["write_addr_max"]) == (ABSENT, ABSENT)
    assert (f["quantity_mean"], f["quantity_max"]) == (3, 3)
    assert (f["unanswered"], f["exceptions"], f["malformed"]) == (0, 0, 0)


def test_register_values_and_change_rate(windows: list[FeatureWindow]) -> None:
    f = find(windows, "pair", T0, HMI, PLC, 1)
    assert (f["values_count"], f["value_min"], f["value_max"], f["value_range"]) == (12, 1, 5, 4)
    # 9 values have a previous read (the first read has none); one of them changed (2 -> 5).
    assert f["value_change_rate"] == pytest.approx(1 / 9)
    g = find(windows, "pair", T0 + 10, HMI, PLC, 1)
    # (1, 5, 3) at 10 s against (1, 5, 3) at 8 s, from the previous window; then (2, 5, 3) at 14 s.
    assert g["values_count"] == 6 and g["value_change_rate"] == pytest.approx(1 / 6)
    assert (g["value_min"], g["value_max"]) == (1, 5)


def test_writes_exception_and_diagnostics(windows: list[FeatureWindow]) -> None:
    f = find(windows, "pair", T0, HMI, PLC, 2)
    assert (f["transactions"], f["fc_3"], f["fc_6"], f["fc_16"], f["fc_8"], f["fc_distinct"]) == (4, 1, 1, 1, 1, 4)
    assert (f["exceptions"], f["exc_2"], f["exc_other"]) == (1, 1, 0)
    assert (f["reads"], f["writes"]) == (1, 2) and f["write_ratio"] == pytest.approx(2 / 3)
    assert (f["diag_restart"], f["diag_listen_only"], f["diag_other"]) == (1, 0, 0)
    assert (f["addr_min"], f["addr_max"], f["addr_distinct"]) == (10, 9999, 3)
    assert (f["write_addr_min"], f["write_addr_max"]) == (10, 21)  # FC 16 at 20, two registers
    assert (f["write_value_min"], f["write_value_max"]) == (7, 1234)
    assert (f["values_count"], f["value_min"], f["value_max"]) == (0, ABSENT, ABSENT)  # the exception read nothing
    assert (f["quantity_mean"], f["quantity_max"]) == (1.5, 2)  # FC 16 quantity 2, the failed read 1


def test_unanswered_retransmission_and_tcp_features(windows: list[FeatureWindow], capture: tuple[Path, Script]
                                                    ) -> None:
    script = capture[1]
    w0, w1 = find(windows, "pair", T0, HMI, PLC, 1), find(windows, "pair", T0 + 10, HMI, PLC, 1)
    assert (w0["tcp_syn"], w0["tcp_rst"], w0["tcp_connections"], w0["tcp_retransmissions"]) == (2, 0, 1, 0)
    assert (w0["tcp_packets"], w0["tcp_bytes"]) == frame_bytes(script, 0, 10, HMI, PLC)
    assert find(windows, "pair", T0, HMI, PLC, 2)["tcp_packets"] == w0["tcp_packets"]  # per (client, server)
    assert (w1["unanswered"], w1["requests"], w1["responses"]) == (1, 3, 2)
    assert (w1["latency_mean_ms"], w1["latency_max_ms"]) == (pytest.approx(152.5), pytest.approx(300.0))
    assert (w1["tcp_syn"], w1["tcp_rst"], w1["tcp_retransmissions"]) == (0, 1, 1)
    assert (w1["tcp_packets"], w1["tcp_bytes"]) == frame_bytes(script, 10, 20, HMI, PLC)


def test_flow_windows(windows: list[FeatureWindow], capture: tuple[Path, Script]) -> None:
    dns = find(windows, "flow", T0, HMI, DNS, 53)
    assert (dns["packets"], dns["packets_orig"], dns["packets_resp"], dns["connections"], dns["modbus"]) == (
        2, 1, 1, 1, 0)
    assert dns["bytes"] == frame_bytes(capture[1], 0, 10, HMI, DNS)[1]
    assert dns["duration_s"] == pytest.approx(0.001)
    web = find(windows, "flow", T0, HMI, WEB, 80)
    assert (web["tcp_syn"], web["packets"], web["modbus"]) == (2, 3, 0)
    mod = find(windows, "flow", T0, HMI, PLC, 502)
    assert mod["modbus"] == 1 and mod["packets"] == frame_bytes(capture[1], 0, 10, HMI, PLC)[0]
    transports = {(w.port, w.transport) for w in windows if w.kind == "flow"}
    assert transports == {(53, "udp"), (80, "tcp"), (502, "tcp")}


def test_midstream_connection_is_oriented_by_the_service_port(tmp_path: Path) -> None:
    """No SYN seen and the server speaks first: the Modbus server is still the responder, port 502."""
    conn = TcpConnection(Endpoint(HMI, 40001), Endpoint(PLC, 502), established=True)
    frames = conn.send(at(1), False, [mb.adu(9, 1, mb.read_registers_response(3, (4,)))])  # a late response
    frames += conn.send(at(2), True, [mb.adu(10, 1, mb.read_request(3, 0, 1))])
    frames += conn.send(at(2.01), False, [mb.adu(10, 1, mb.read_registers_response(3, (4,)))])
    path = tmp_path / "midstream.pcap"
    with PcapWriter(path, nanosecond=True) as w:
        for ts, frame in frames:
            w.write(ts, frame)
    flows = [w for w in windows_from_capture(path) if w.kind == "flow"]
    assert [(w.client_ip, w.server_ip, w.port) for w in flows] == [(HMI, PLC, 502)]
    f = dict(zip(FLOW_FEATURES, flows[0].values))
    assert (f["packets_orig"], f["packets_resp"], f["tcp_syn"], f["retransmissions"]) == (1, 2, 0, 0)


# -- streaming: lateness, order, determinism -----------------------------------------------------------------------


def batch(conn: int, *rows: tuple[float, int]) -> ModbusBatch:
    """A ModbusBatch of answered FC 3 reads: (start seconds after T0, frame) each, one value each."""
    n = len(rows)
    ts = np.array([at(t) for t, _ in rows], dtype=np.int64)
    frame = np.array([f for _, f in rows], dtype=np.int64)

    def full(value: int) -> np.ndarray:
        return np.full(n, value, dtype=np.int64)

    return ModbusBatch(conn=full(conn), unit=full(1), tid=np.arange(n, dtype=np.int64), fc=full(3), exc=full(NONE),
                       subfn=full(NONE), addr=full(0), qty=full(1), req_frame=frame, resp_frame=frame + 1,
                       req_ts_ns=ts, resp_ts_ns=ts + MS, flags=full(0), val_start=np.arange(n, dtype=np.int64),
                       val_count=full(1), values=np.arange(n, dtype=np.int64))


def reads(fc: int, qty: int, *rows: tuple[float, tuple[int, ...]]) -> ModbusBatch:
    """Answered reads at address 0: (start seconds after T0, values returned) each."""
    b = batch(0, *((t, 10 * i + 1) for i, (t, _) in enumerate(rows)))
    counts = np.array([len(v) for _, v in rows], dtype=np.int64)
    return replace(b, fc=np.full(len(rows), fc, dtype=np.int64), qty=np.full(len(rows), qty, dtype=np.int64),
                   val_count=counts, val_start=np.cumsum(counts) - counts,
                   values=np.array([x for _, v in rows for x in v], dtype=np.int64))


def feature_of(windows: list[FeatureWindow], name: str) -> list[float]:
    return [w.values[PAIR_FEATURES.index(name)] for w in windows]


def test_bit_reads_are_trimmed_to_the_quantity_asked() -> None:
    conns, w = conn_table(), Windower()
    # FC 1, 3 coils asked: each response carries a whole byte; the 5 padding bits must not count.
    w.push(CollectedBatch(reads(1, 3, (1, (1, 0, 1, 0, 0, 0, 0, 0)), (2, (1, 1, 1, 1, 1, 1, 1, 1))), []), conns)
    out = w.flush()
    assert feature_of(out, "bit_change_rate") == [pytest.approx(1 / 3)]
    assert feature_of(out, "values_count") == [0] and feature_of(out, "value_change_rate") == [0]


def test_value_memory_is_forgotten_after_its_ttl() -> None:
    conns = conn_table()
    for ttl, expected in ((3600.0, [0.0, 1.0]), (15.0, [0.0, 0.0])):
        w = Windower(value_ttl_s=ttl)
        out = w.push(CollectedBatch(reads(3, 2, (1, (5, 6))), []), conns)
        out += w.push(CollectedBatch(reads(3, 2, (21, (7, 8))), []), conns)  # 20 s later, both values changed
        out += w.flush()
        assert feature_of(out, "value_change_rate") == expected


def test_values_compared_and_replayed_reads() -> None:
    """A block of two registers read six times: A, B, C, then B again (back to an older state: replayed), B (the
    same as the previous read: unchanged, not a replay), and A (replayed). Bits never count as replays."""
    conns, w = conn_table(), Windower()
    a, b, c = (5, 6), (7, 8), (7, 9)
    w.push(CollectedBatch(reads(3, 2, (1, a), (2, b), (3, c), (4, b), (5, b), (6, a)), []), conns)
    out = w.flush()
    assert feature_of(out, "values_count") == [12] and feature_of(out, "values_compared") == [10]
    assert feature_of(out, "replayed_reads") == [2]
    assert feature_of(out, "value_change_rate") == [pytest.approx(6 / 10)]  # 2 + 1 + 1 + 0 + 2 changed
    w = Windower()
    w.push(CollectedBatch(reads(1, 2, (1, (1, 0)), (2, (0, 1)), (3, (1, 0))), []), conns)
    assert feature_of(w.flush(), "replayed_reads") == [0]


def test_replays_are_seen_across_windows_and_batches_within_the_ttl() -> None:
    """The state a block showed minutes ago comes back: a replay, whichever batch (or window) held the original,
    until the value state's TTL has passed."""
    conns = conn_table()
    for ttl, expected in ((3600.0, [0, 0, 1]), (60.0, [0, 0, 0])):
        w = Windower(value_ttl_s=ttl)
        out = w.push(CollectedBatch(reads(3, 2, (1, (5, 6))), []), conns)
        out += w.push(CollectedBatch(reads(3, 2, (21, (7, 8))), []), conns)
        out += w.push(CollectedBatch(reads(3, 2, (101, (5, 6))), []), conns)  # 100 s later: (5, 6) again
        out += w.flush()
        assert feature_of(out, "replayed_reads") == expected


def test_content_history_is_bounded() -> None:
    from otsentry.features.values import ContentHistory

    h = ContentHistory(ttl_ns=10**12, max_entries=100)
    for i in range(50):
        keys = np.arange(i * 10, i * 10 + 10, dtype=np.uint64)
        h.add(keys, np.full(10, i, dtype=np.int64), frontier_ns=i)
        assert len(h) <= 110
    recent = np.array([495, 499], dtype=np.uint64)
    old = np.array([1, 2], dtype=np.uint64)
    both = np.concatenate([recent, old])
    assert h.seen(both, np.full(4, 50, dtype=np.int64), np.ones(4, dtype=bool)).tolist() == [True, True, False, False]


def conn_table(n: int = 1) -> ConnTable:
    table = ConnTable()
    for i in range(n):
        table.intern((i,), lambda i=i: Conn(f"10.0.1.{i + 1}", 40000 + i, PLC, 502))
    return table


def test_windows_stream_out_as_the_watermark_passes_them() -> None:
    conns, w = conn_table(), Windower(10.0, lateness_s=5.0)
    assert w.push(CollectedBatch(batch(0, (1, 1), (9.9, 3)), []), conns) == []
    assert w.push(CollectedBatch(batch(0, (14.9, 5)), []), conns) == []  # watermark 9.9: window 0 still open
    out = w.push(CollectedBatch(batch(0, (15.0, 7)), []), conns)  # watermark 10.0 = end of window 0
    assert [(x.window_start - T0, x.values[PAIR_FEATURES.index("transactions")]) for x in out] == [(0, 2)]
    assert (out[0].first_frame, out[0].last_frame) == (1, 4)
    out = w.push(CollectedBatch(batch(0, (47.0, 9)), []), conns)
    assert [x.window_start - T0 for x in out] == [10]  # nothing for the empty windows 20 and 30
    assert [x.window_start - T0 for x in w.flush()] == [40]
    assert w.open_rows == 0 and w.stats.pair_windows == 3


def test_out_of_order_within_lateness_is_kept_beyond_is_dropped_and_logged(caplog: pytest.LogCaptureFixture
                                                                            ) -> None:
    conns, w = conn_table(), Windower(10.0, lateness_s=5.0)
    w.push(CollectedBatch(batch(0, (1, 1)), []), conns)
    assert w.push(CollectedBatch(batch(0, (12, 3)), []), conns) == []
    w.push(CollectedBatch(batch(0, (8, 5)), []), conns)  # 4 s late: window 0 is still open
    with caplog.at_level(logging.WARNING, logger="otsentry.features.windows"):
        out = w.push(CollectedBatch(batch(0, (21, 7)), []), conns)  # closes window 0 with both reads
        assert [x.values[PAIR_FEATURES.index("transactions")] for x in out] == [2]
        w.push(CollectedBatch(batch(0, (2, 9), (3, 11)), []), conns)  # window 0 is closed: dropped
    assert w.stats.late_transactions == 2
    assert "2 transaction(s) older than the closed windows dropped" in caplog.text
    rest = w.flush()
    assert [x.window_start - T0 for x in rest] == [10, 20]


def test_tick_closes_windows_when_traffic_stops() -> None:
    conns, w = conn_table(), Windower(10.0, lateness_s=5.0)
    w.push(CollectedBatch(batch(0, (1, 1)), []), conns)
    assert w.tick(T0 + 14.0) == []
    assert len(w.tick(T0 + 15.0)) == 1


def no_frames(windows: Iterable[FeatureWindow]) -> list[FeatureWindow]:
    return [replace(w, first_frame=0, last_frame=0) for w in windows]


def write_frames(path: Path, frames: list[tuple[int, bytes]]) -> None:
    with PcapWriter(path, nanosecond=True) as w:
        for ts, frame in frames:
            w.write(ts, frame)


def reordered(script: Script, what: float, after: float) -> list[tuple[int, bytes]]:
    """The script's frames in time order, except those at ``what`` seconds, moved after the frames at ``after``."""
    frames = sorted(script.frames, key=lambda f: f[0])
    moved = [f for f in frames if abs(f[0] - at(what)) < MS // 2]
    rest = [f for f in frames if f not in moved]
    cut = max(i for i, f in enumerate(rest) if f[0] <= at(after)) + 1
    return rest[:cut] + moved + rest[cut:]


def test_capture_out_of_order_packets(capture: tuple[Path, Script], windows: list[FeatureWindow],
                                      tmp_path: Path) -> None:
    # The DNS query 3 s behind the packets around it: within lateness, same windows at any chunk size.
    path = tmp_path / "late3.pcap"
    write_frames(path, reordered(capture[1], 3.5, 6.5))
    for chunk in (None, 64):
        assert no_frames(windows_from_capture(path, chunk_bytes=chunk)) == no_frames(windows)  # frames renumbered
    # 12.5 s behind, in a later chunk than the packets that closed its window: dropped and counted.
    path = tmp_path / "late12.pcap"
    write_frames(path, reordered(capture[1], 3.5, 16))
    w = Windower()
    out = list(windows_from_capture(path, chunk_bytes=64, windower=w))  # about one packet per chunk
    assert w.stats.late_packets == 1
    dns = find(out, "flow", T0, HMI, DNS, 53)
    assert (dns["packets"], dns["packets_resp"]) == (1, 1)  # the response (at 3.501 s) was in time


def polling_capture(path: Path, packets: int = 6000, seed: int = 3) -> Path:
    from otsentry.synth.polling import PollingOptions, generate_polling

    options = PollingOptions(exception_rate=0.05, split_rate=0.05, retransmission_rate=0.02, write_rate=0.2,
                             pipeline_rate=0.3, reconnect_rate=0.01, diagnostics_rate=0.01)
    generate_polling(path, packets, seed, options=options)
    return path


def test_deterministic_for_a_capture_at_any_chunk_size(tmp_path: Path) -> None:
    path = polling_capture(tmp_path / "rich.pcap")
    reference = list(windows_from_capture(path))
    assert reference == list(windows_from_capture(path))
    assert {w.kind for w in reference} == {"pair", "flow"}
    for chunk in (2000, 65536):
        assert list(windows_from_capture(path, chunk_bytes=chunk)) == reference
    x = to_matrix(reference, "pair")
    assert x[:, PAIR_FEATURES.index("tcp_retransmissions")].sum() > 0
    assert x[:, PAIR_FEATURES.index("value_change_rate")].max() > 0


def test_window_size_is_configurable(tmp_path: Path, capture: tuple[Path, Script]) -> None:
    out = list(windows_from_capture(capture[0], window_s=2.5))
    assert {w.window_end - w.window_start for w in out} == {2.5}
    reads = [w for w in out if w.kind == "pair" and w.unit_id == 1 and w.window_start < T0 + 10]
    assert [w.window_start - T0 for w in reads] == [0, 2.5, 5, 7.5]


# -- matrix helper, arguments ----------------------------------------------------------------------------------------


def test_to_matrix(windows: list[FeatureWindow]) -> None:
    pairs, flows = to_matrix(windows, "pair"), to_matrix(windows, "flow")
    assert pairs.shape == (3, len(PAIR_FEATURES)) and flows.shape[1] == len(FLOW_FEATURES)
    assert pairs.dtype == np.float64
    assert list(pairs[:, PAIR_FEATURES.index("transactions")]) == [4, 4, 3]  # rows in input order
    assert to_matrix([], "flow").shape == (0, len(FLOW_FEATURES))
    with pytest.raises(ValueError):
        to_matrix(windows, "pairs")


def test_feature_window_round_trip(windows: list[FeatureWindow]) -> None:
    for w in windows:
        assert FeatureWindow.from_dict(w.to_dict()) == w


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Windower(0)
    with pytest.raises(ValueError):
        Windower(10, lateness_s=-1)


# -- robustness -------------------------------------------------------------------------------------------------------

NONE_OR = st.one_of(st.just(NONE), st.integers(0, 70000))


@st.composite
def batches(draw: st.DrawFn) -> list[ModbusBatch]:
    out = []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(0, 30))

        def col(strategy: st.SearchStrategy[int]) -> np.ndarray:
            return np.array(draw(st.lists(strategy, min_size=n, max_size=n)), dtype=np.int64)

        counts = col(st.integers(0, 5))
        total = int(counts.sum())
        values = np.array(draw(st.lists(st.integers(-5, 1 << 20), min_size=total, max_size=total)), dtype=np.int64)
        starts = np.cumsum(counts) - counts
        order = np.array(draw(st.permutations(range(n))), dtype=np.int64) if n else np.empty(0, np.int64)
        out.append(ModbusBatch(
            conn=col(st.integers(0, 2)), unit=col(st.integers(0, 255)), tid=col(st.integers(0, 65535)),
            fc=col(st.integers(0, 130)), exc=col(st.one_of(st.just(NONE), st.integers(0, 20))),
            subfn=col(st.one_of(st.just(NONE), st.integers(0, 20))), addr=col(NONE_OR), qty=col(NONE_OR),
            req_frame=col(st.one_of(st.just(NONE), st.integers(1, 1000))),
            resp_frame=col(st.one_of(st.just(NONE), st.integers(1, 1000))),
            req_ts_ns=col(st.integers(at(0), at(120))), resp_ts_ns=col(st.integers(at(0), at(130))),
            flags=col(st.integers(0, 255)), val_start=starts[order] if n else starts, val_count=counts[order],
            values=values,
        ))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.sampled_from([0.5, 10.0]), st.sampled_from([0.0, 5.0]))
def test_random_batches_never_crash(data: list[ModbusBatch], window_s: float, lateness_s: float) -> None:
    conns, w = conn_table(3), Windower(window_s, lateness_s)
    out = []
    for b in data:
        out += w.push(CollectedBatch(b, []), conns)
    out += w.flush()
    assert w.open_rows == 0
    total = sum(len(b) for b in data)
    assert sum(x.values[PAIR_FEATURES.index("transactions")] for x in out) + w.stats.late_transactions == total
    for x in out:
        assert len(x.values) == len(PAIR_FEATURES) and all(math.isfinite(v) for v in x.values)
    starts = [x.window_start for x in out]
    assert starts == sorted(starts)


@pytest.mark.parametrize("path", capture_params(shared_pcaps()))
def test_public_captures(path: Path) -> None:
    w = Windower()
    out = list(windows_from_capture(path, windower=w))
    keys = [(x.window_start, x.kind) for x in out]
    assert keys == sorted(keys)
    for x in out:
        assert len(x.values) == len(x.feature_names()) and all(math.isfinite(v) for v in x.values)
    assert w.open_rows == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 65535), min_size=1, max_size=40), st.integers(0, 2**64 - 1), st.data())
def test_hash_values_tells_contents_apart(values, key, data) -> None:
    """Equal (key, values) rows hash equal; changing one value, or the key, changes the hash (replay detection)."""
    from otsentry.features.columns import hash_values

    row = np.array([values], dtype=np.int64)
    keys = np.array([key], dtype=np.uint64)
    pos = data.draw(st.integers(0, len(values) - 1))
    other = row.copy()
    other[0, pos] = data.draw(st.integers(0, 65535).filter(lambda v: v != values[pos]))
    h = hash_values(np.repeat(keys, 3), np.vstack([row, row, other]))
    assert h[0] == h[1] and h[0] != h[2]
    assert hash_values(keys ^ np.uint64(1), row)[0] != h[0]
