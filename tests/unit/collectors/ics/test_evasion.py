"""Reordered, split, duplicated and overlapping segments do not change what the OT decoders see.

Every TCP frame of one public capture per protocol is rewritten by ``otsentry.synth.evasion`` (the transforms a
receiving stack undoes: IP fragments, reversed segments, one byte per segment, a duplicate, consistent overlaps)
and the operations must be the same ones, field for field (frames and times aside); a conflicting overlap is
noted as evasion.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.source import decode_capture
from otsentry.synth.evasion import CONSISTENT, evade
from tests.helpers import SHARED_ICS_PCAPS

CAPTURES = ("zeek-dnp3-dnp3_select_operate.pcap", "parsitects-iec104-iec104.pcap", "icsnpp-s7comm-snap7.pcap",
            "iti-enip-cip_stop_plc.pcap", "iti-s7commplus-s7-1200-hmi.pcap")
pytestmark = pytest.mark.skipif(not SHARED_ICS_PCAPS.exists(), reason="no ../shared")


def seen(path: Path) -> tuple[Counter, dict, list]:
    run = decode_capture(path, CollectorConfig())
    ops = Counter((o.protocol, o.client_ip, o.server_ip, o.station, o.operation_name, o.objects, o.values, o.status,
                   o.latency_s is None) for b in run for o in b.operations)
    notes = [n for b in run for n in b.notes]
    messages = {k: v.messages for k, v in run.stats.protocols.items()}
    return ops, messages, notes


def frames_of(path: Path) -> range:
    run = decode_capture(path, CollectorConfig())
    for _ in run:
        pass
    return range(1, run.stats.packets + 1)


@pytest.mark.parametrize("how", CONSISTENT)
@pytest.mark.parametrize("name", CAPTURES)
def test_consistent_evasion_changes_nothing(tmp_path: Path, name: str, how: str) -> None:
    src = SHARED_ICS_PCAPS / name
    dst = tmp_path / f"{how}.pcap"
    evade(src, dst, frames_of(src), how)
    before, after = seen(src), seen(dst)
    assert after[0] == before[0] and after[1] == before[1]
    assert sum(before[0].values()) > 0


def test_conflicting_overlap_is_noted(tmp_path: Path) -> None:
    src = SHARED_ICS_PCAPS / "parsitects-iec104-iec104.pcap"
    dst = tmp_path / "conflict.pcap"
    evade(src, dst, frames_of(src), "tcp_overlap_conflict")
    assert any(n.kind == "overlap_conflict" and 2404 in (n.src_port, n.dst_port) for n in seen(dst)[2])
