"""The whole collector on OT ports fed arbitrary segments and datagrams: counted and flagged, never a traceback,
and every message is accounted for in the per-protocol counts."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.source import decode_capture
from otsentry.synth.frames import Direction, Link
from otsentry.synth.ics_frames import apdu_u, dnp3_frames, enip, tpkt_dt
from otsentry.synth.pcapwriter import PcapWriter

PORTS = (20000, 2404, 102, 44818)
VALID = (dnp3_frames(bytes([0xC0, 1, 60, 1, 6]))[0], apdu_u(0x07), tpkt_dt(b"\x32\x01\0\0\0\x01\0\x02\0\0\xf0\0"),
         enip(0x0065, b"\x01\0\0\0"))

segment = st.one_of(st.binary(max_size=300), st.sampled_from(VALID),
                    st.builds(lambda v, cut: v[:cut], st.sampled_from(VALID), st.integers(0, 40)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(PORTS), st.booleans(), st.booleans(), segment, st.integers(-64, 64)),
                min_size=1, max_size=25))
def test_arbitrary_ot_traffic_never_raises(tmp_path: Path, packets) -> None:
    path = tmp_path / "fuzz.pcap"
    link = Link()
    seqs: dict[tuple[int, bool], int] = {}
    with PcapWriter(path) as writer:
        for i, (port, from_client, udp, payload, jitter) in enumerate(packets):
            d = Direction("10.0.0.8", "10.0.0.3", 40000, port, link) if from_client else \
                Direction("10.0.0.3", "10.0.0.8", port, 40000, link.reverse())
            if udp:
                frame = d.udp(payload)
            else:
                seq = seqs.get((port, from_client), 1000)
                frame = d.tcp(seq + jitter, 1, 0x18, payload)  # jitter: reordered, overlapping, gaps
                seqs[(port, from_client)] = seq + len(payload)
            writer.write(10**18 + i * 10**6, frame)
    run = decode_capture(path, CollectorConfig())
    operations = [op for batch in run for op in batch.operations]
    assert run.stats.packets == len(packets)
    for op in operations:
        assert op.protocol in run.stats.protocols
    for name, counts in run.stats.protocols.items():
        assert counts.messages == counts.requests + counts.responses
        assert sum(counts.functions.values()) == counts.messages
