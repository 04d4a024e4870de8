"""The vectorised fast path and the general reassembler give identical events on every real capture.

Also checks chunking does not matter: tiny chunks (many batch boundaries, requests carried across them) give
the same transactions as one big chunk.
"""

from __future__ import annotations

import pytest

from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.source import CaptureRun
from tests.conftest import shared_pcaps


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


@pytest.mark.parametrize("path", shared_pcaps(), ids=lambda p: p.name)
def test_fast_path_equals_general_path(path):
    fast, fast_flows, fast_stats = _events(path, fast_path=True)
    slow, slow_flows, slow_stats = _events(path, fast_path=False)
    key = lambda e: (e.request_frame or 0, e.response_frame or 0)
    assert sorted(fast, key=key) == sorted(slow, key=key)
    assert fast_stats.modbus_adus == slow_stats.modbus_adus
    assert fast_flows == slow_flows


@pytest.mark.parametrize("path", [p for p in shared_pcaps() if p.stat().st_size > 100_000], ids=lambda p: p.name)
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
