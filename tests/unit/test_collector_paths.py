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
