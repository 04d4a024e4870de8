"""The vectorised fast path and the general reassembler give identical events on every real capture.

Also checks chunking does not matter: tiny chunks (many batch boundaries, requests carried across them) give
the same transactions as one big chunk.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.source import CaptureRun
from tests.helpers import capture_params, shared_pcaps


def _events(path, **kw):
    chunk_bytes = kw.pop("chunk_bytes", None)
    run = CaptureRun(path, CollectorConfig(**kw))
    if chunk_bytes:
        run.chunk_bytes = chunk_bytes
    events, flows = [], []
    for batch in run:
        events.extend(batch.modbus.events(run.conns))
        flows.extend(batch.flows)
    return events, flows, run.stats


@pytest.mark.parametrize("path", capture_params(shared_pcaps()))
def test_fast_path_equals_general_path(path):
    fast, fast_flows, fast_stats = _events(path, fast_path=True)
    slow, slow_flows, slow_stats = _events(path, fast_path=False)
    key = lambda e: (e.request_frame or 0, e.response_frame or 0)
    assert sorted(fast, key=key) == sorted(slow, key=key)
    assert fast_stats.modbus_adus == slow_stats.modbus_adus
    assert fast_flows == slow_flows


@pytest.mark.parametrize("path", capture_params([p for p in shared_pcaps() if p.stat().st_size > 100_000]))
def test_chunk_size_does_not_change_transactions(path):
    big, _, big_stats = _events(path)
    small, _, small_stats = _events(path, chunk_bytes=20_000)
    key = lambda e: (e.request_frame or 0, e.response_frame or 0)
    assert sorted(big, key=key) == sorted(small, key=key)
    assert big_stats.modbus_adus == small_stats.modbus_adus


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from otsentry.synth.polling import PollingOptions, generate_polling

    path = tmp_path_factory.mktemp("gen") / "polling.pcap"
    opts = PollingOptions(split_rate=0.05, retransmission_rate=0.02, pipeline_rate=0.05, write_rate=0.05,
                          diagnostics_rate=0.01, short_splits=True)
    truth = generate_polling(path, packets=20_000, seed=7, options=opts)
    return path, truth


def test_fast_path_equals_general_path_on_generated_traffic(generated):
    path, truth = generated
    fast, fast_flows, fast_stats = _events(path, fast_path=True)
    slow, slow_flows, slow_stats = _events(path, fast_path=False)
    key = lambda e: (e.request_frame or 0, e.response_frame or 0)
    assert sorted(fast, key=key) == sorted(slow, key=key)
    assert fast_flows == slow_flows
    # Every function code the generator used shows up decoded, with values for the reads and writes.
    seen = {e.function_code for e in fast}
    assert {int(k) for k in truth.function_codes} <= seen
    assert any(e.function_code in (1, 2) and e.values for e in fast)
    assert any(e.function_code == 15 and e.values for e in fast)


def test_counts_match_ground_truth(generated):
    path, truth = generated
    _, _, stats = _events(path)
    assert stats.packets == truth.packets
    assert stats.modbus_adus == truth.modbus_adus
    assert stats.modbus_requests == truth.modbus_requests
    assert stats.modbus_responses == truth.modbus_responses
    assert stats.exceptions == truth.exceptions


_ADU = st.one_of(
    # well-formed requests and responses the fast path decodes itself
    st.tuples(st.integers(0, 65535), st.sampled_from([1, 2, 3, 4]), st.integers(0, 65535), st.integers(1, 125)).map(
        lambda t: struct.pack(">HHHBBHH", t[0], 0, 6, 1, t[1], t[2], t[3])),
    st.tuples(st.integers(0, 65535), st.lists(st.integers(0, 65535), min_size=1, max_size=8)).map(
        lambda t: struct.pack(">HHHBBB", t[0], 0, 3 + 2 * len(t[1]), 1, 3, 2 * len(t[1]))
        + b"".join(struct.pack(">H", v) for v in t[1])),
    # odd ones the general path must frame: a non-zero protocol id, a length with no room for a function code
    st.tuples(st.integers(0, 65535), st.integers(1, 65535)).map(lambda t: struct.pack(">HHHBBHH", t[0], t[1], 6, 1,
                                                                                         3, 0, 1)),
    st.integers(0, 65535).map(lambda tid: struct.pack(">HHHB", tid, 0, 1, 1)),
    st.binary(min_size=1, max_size=12),  # junk, or the start of a partial ADU
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(_ADU, min_size=1, max_size=5), min_size=1, max_size=12), st.booleans())
def test_fast_path_equals_general_path_on_packed_segments(tmp_path, segments, handshake):
    """Segments holding several ADUs back to back (pipelined requests), well formed or not, decode the same way."""
    from tests.unit.capture_builders import ether, ipv4, pcap_file, tcp

    records, seq, ts = [], 1000, 10**18
    if handshake:
        records.append((ts, ether(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 502, seq=seq - 1, flags=0x02)))))
    for adus in segments:
        payload = b"".join(adus)
        ts += 1_000_000
        records.append((ts, ether(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 502, payload, seq=seq)))))
        seq += len(payload)
    path = tmp_path / "packed.pcap"
    path.write_bytes(pcap_file(records))
    fast, _, fast_stats = _events(path, fast_path=True)
    slow, _, slow_stats = _events(path, fast_path=False)
    key = lambda e: (e.request_frame or 0, e.response_frame or 0, e.transaction_id)
    assert sorted(fast, key=key) == sorted(slow, key=key)
    assert (fast_stats.modbus_adus, fast_stats.malformed) == (slow_stats.modbus_adus, slow_stats.malformed)
