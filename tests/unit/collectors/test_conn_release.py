"""Connection churn: the state of ended connections is released, and releasing it changes nothing but memory.

Many masters open a connection per poll. A sensor that kept every connection's reassembly state, framer and id
would grow for as long as it runs; the collector releases them a while after the connection closed or went idle
(``CollectorConfig.stream_closed_timeout_s`` / ``stream_idle_timeout_s``). The checks: the state kept stays
bounded by the connections alive, and every event, operation, window and count is the same as with nothing
released.
"""

from __future__ import annotations

import random
import struct
from dataclasses import asdict

import pytest

from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.source import CaptureRun
from otsentry.contracts.network import ACK, FIN, PSH, SYN
from otsentry.features.from_capture import windows_from_capture
from otsentry.synth.frames import Direction, Link
from otsentry.synth.ics_traffic import EXCHANGES, PORTS
from otsentry.synth.pcapwriter import PcapWriter

KEEP_ALL = CollectorConfig(stream_closed_timeout_s=1e9, stream_idle_timeout_s=1e9)
CONNS = 1500  # short connections, one every 0.2 s: 300 s of capture


def _modbus(i: int, rng: random.Random) -> tuple[bytes, bytes]:
    req = struct.pack("!HHHBBHH", i & 0xFFFF, 0, 6, 1, 3, 0, 2)
    return req, struct.pack("!HHHBBB", i & 0xFFFF, 0, 7, 1, 3, 4) + struct.pack("!HH", rng.randrange(100), 7)


def _write_churn(path, conns: int = CONNS, partial_every: int = 0) -> None:
    """Short connections (handshake, one exchange, FIN both ways) of Modbus, S7comm and DNP3 in turn, beside one
    long-lived Modbus poller; with ``partial_every``, every n-th request is cut short before the FIN."""
    rng, link = random.Random(5), Link()
    kinds = (("modbus", 502, _modbus), ("s7comm", PORTS["s7comm"], EXCHANGES["s7comm"]),
             ("dnp3", PORTS["dnp3"], EXCHANGES["dnp3"]))
    poller = Direction("10.9.0.1", "10.0.0.3", 40000, 502, link), Direction("10.0.0.3", "10.9.0.1", 502, 40000, link)
    pc, ps = 1000, 9000
    ts = 1_700_000_000 * 10**9
    with PcapWriter(path) as w:
        w.write(ts, poller[0].tcp(pc - 1, 0, SYN))
        w.write(ts + 1000, poller[1].tcp(ps - 1, pc, SYN | ACK))
        for i in range(conns):
            name, port, exchange = kinds[i % 3]
            cip, sport = f"10.1.{(i >> 8) & 255}.{i & 255}", 50000 + i
            out, back = Direction(cip, "10.0.0.3", sport, port, link), Direction("10.0.0.3", cip, port, sport, link)
            c, s = 1000, 5000
            req, resp = exchange(i, rng)
            if partial_every and i % partial_every == 0:
                req, resp = req[: len(req) - 3], b""
            w.write(ts, out.tcp(c - 1, 0, SYN))
            w.write(ts + 100_000, back.tcp(s - 1, c, SYN | ACK))
            w.write(ts + 200_000, out.tcp(c, s, ACK | PSH, req))
            c += len(req)
            if resp:
                w.write(ts + 300_000, back.tcp(s, c, ACK | PSH, resp))
                s += len(resp)
            w.write(ts + 400_000, out.tcp(c, s, ACK | FIN))
            w.write(ts + 500_000, back.tcp(s, c + 1, ACK | FIN))
            if i % 5 == 0:  # the long-lived poller, once a second
                req, resp = _modbus(i, rng)
                w.write(ts + 600_000, poller[0].tcp(pc, ps, ACK | PSH, req))
                pc += len(req)
                w.write(ts + 700_000, poller[1].tcp(ps, pc, ACK | PSH, resp))
                ps += len(resp)
            ts += 200_000_000


def _run(path, config: CollectorConfig):
    run = CaptureRun(path, config)
    run.chunk_bytes = 16_384
    events, operations, peak_conns, peak_streams = [], [], 0, 0
    for batch in run:
        events.extend(batch.modbus.events(run.conns))
        operations.extend(batch.operations)
        peak_conns = max(peak_conns, len(run.conns))
        peak_streams = max(peak_streams, run.collector.open_streams)
    return events, operations, run.stats, peak_conns, peak_streams


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    path = tmp_path_factory.mktemp("churn") / "churn.pcap"
    _write_churn(path)
    return path


def test_state_follows_the_connections_alive(churn):
    _, _, _, kept_conns, kept_streams = _run(churn, KEEP_ALL)
    _, _, stats, peak_conns, peak_streams = _run(churn, CollectorConfig())
    assert kept_conns == CONNS + 1 and kept_streams == 2 * (CONNS + 1)
    # 60 s after the close, plus the pairing timeout and a minute for the ids: about 630 connections at 5/s
    assert peak_conns < CONNS * 0.5, peak_conns
    assert peak_streams < 2 * CONNS * 0.25, peak_streams
    assert stats.transactions == CONNS // 3 + CONNS // 5 and stats.unanswered == 0


def test_releasing_changes_nothing_but_memory(churn):
    events, operations, stats, _, _ = _run(churn, CollectorConfig())
    kept_events, kept_operations, kept_stats, _, _ = _run(churn, KEEP_ALL)
    assert events == kept_events and operations == kept_operations
    assert asdict(stats) == asdict(kept_stats)
    assert {p: c.messages for p, c in stats.protocols.items()} == {"cotp": 0, "dnp3": 2 * (CONNS // 3),
                                                                   "s7comm": 2 * (CONNS // 3)}
    assert not any("midstream" in e.flags for e in events)
    windows = list(windows_from_capture(churn, 10.0, CollectorConfig(), chunk_bytes=16_384))
    assert windows == list(windows_from_capture(churn, 10.0, KEEP_ALL, chunk_bytes=16_384))


def test_a_partial_unit_at_the_close_is_reported_once(tmp_path):
    path = tmp_path / "partial.pcap"
    _write_churn(path, conns=300, partial_every=3)  # every Modbus request cut short, then FIN
    _, _, stats, _, _ = _run(path, CollectorConfig())
    _, _, kept, _, _ = _run(path, KEEP_ALL)
    assert stats.truncated_adus == kept.truncated_adus == 100
    assert stats.transactions == kept.transactions


def test_an_idle_connection_is_released_and_picked_up_again(tmp_path):
    """Quiet for longer than the idle timeout (other traffic goes on): released, then resumed mid-stream."""
    path, link = tmp_path / "idle.pcap", Link()
    out, back = Direction("10.9.0.1", "10.0.0.3", 40000, 502, link), Direction("10.0.0.3", "10.9.0.1", 502, 40000, link)
    other = Direction("10.9.0.2", "10.0.0.4", 5353, 53, link)
    rng, ts, c, s = random.Random(1), 1_700_000_000 * 10**9, 1000, 9000
    with PcapWriter(path) as w:
        w.write(ts, out.tcp(c - 1, 0, SYN))
        w.write(ts + 1000, back.tcp(s - 1, c, SYN | ACK))
        for i in range(1000):
            if i < 10 or i >= 900:  # polls for 10 s, quiet for 890 s, polls again
                req, resp = _modbus(i, rng)
                w.write(ts, out.tcp(c, s, ACK | PSH, req))
                c += len(req)
                w.write(ts + 1000, back.tcp(s, c, ACK | PSH, resp))
                s += len(resp)
            w.write(ts + 2000, other.udp(b"\0" * 40))
            ts += 1_000_000_000
    events, _, stats, _, _ = _run(path, CollectorConfig())
    assert stats.transactions == 110 and stats.unanswered == 0
    assert [("midstream" in e.flags) for e in events] == [False] * 10 + [True] * 100
    kept, _, _, _, _ = _run(path, KEEP_ALL)
    assert not any("midstream" in e.flags for e in kept)


def test_a_spoofed_syn_flood_leaves_no_state_behind(tmp_path):
    """SYNs from random addresses carry nothing to decode: their state goes at the flow's idle timeout, not the
    stream's, so a flood's memory follows its last two minutes."""
    path, rng, link = tmp_path / "flood.pcap", random.Random(2), Link()
    ts = 1_700_000_000 * 10**9
    with PcapWriter(path) as w:
        for i in range(3000):  # one SYN every 0.5 s for 25 minutes
            src = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            w.write(ts, Direction(src, "10.0.0.3", 40000 + i % 20000, 502, link).tcp(i, 0, SYN))
            ts += 500_000_000
    run = CaptureRun(path, CollectorConfig())
    run.chunk_bytes = 16_384
    peak_conns = peak_streams = 0
    for _ in run:
        peak_conns = max(peak_conns, len(run.conns))
        peak_streams = max(peak_streams, run.collector.open_streams)
    assert run.conns.issued == 3000 and run.stats.packets == 3000 and run.stats.flows == 3000
    assert peak_conns < 800 and peak_streams < 800, (peak_conns, peak_streams)  # ~2 min + a minute of ids + a chunk
