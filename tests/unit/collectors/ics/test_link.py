"""Link-layer OT protocols counted by EtherType: untagged, VLAN-tagged (GOOSE usually is), on Linux cooked
captures; the shared GOOSE captures give tshark's frame counts; short or foreign frames are not counted."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.source import CaptureRun
from tests.helpers import shared_ics_pcaps
from tests.unit.capture_builders import ether, pcap_file, sll

GOOSE_PDU = bytes.fromhex("000100220000000061188004") + bytes(24)


def _counts(tmp_path, records, linktype: int = 1) -> dict[str, int]:
    path = tmp_path / "l2.pcap"
    path.write_bytes(pcap_file([(1_700_000_000 * 10**9 + i, r) for i, r in enumerate(records)], linktype=linktype))
    run = CaptureRun(path, CollectorConfig())
    for _ in run:
        pass
    return {name: c.link_frames for name, c in run.stats.protocols.items()}


def test_tagged_and_untagged_frames(tmp_path) -> None:
    frames = [ether(GOOSE_PDU, 0x88B8), ether(GOOSE_PDU, 0x88B8, vlans=((0x8100, 0x8001),)),
              ether(GOOSE_PDU, 0x88B8, vlans=((0x88A8, 10), (0x8100, 20))), ether(b"\x80\x00" + bytes(40), 0x8892),
              ether(bytes(46), 0x88BA), ether(bytes(46), 0x88F7), ether(bytes(46), 0x1234)]
    assert _counts(tmp_path, frames) == {"goose": 3, "profinet-rt": 1, "iec61850-sv": 1, "ptp": 1}


def test_linux_cooked_capture(tmp_path) -> None:
    assert _counts(tmp_path, [sll(GOOSE_PDU, 0x88B8)], linktype=113) == {"goose": 1}


def test_a_cut_tag_is_not_counted(tmp_path) -> None:
    cut = ether(b"", 0x8100)[:14] + b"\x80"  # a VLAN tag cut inside: no EtherType behind it
    assert _counts(tmp_path, [cut, ether(GOOSE_PDU, 0x88B8)]) == {"goose": 1}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_any_frames_count_or_not_without_error(tmp_path_factory, frames) -> None:
    counts = _counts(tmp_path_factory.mktemp("fuzz"), frames)
    assert sum(counts.values()) <= len(frames)


# tshark's "goose" frame counts on the shared captures (their README)
GOOSE_FRAMES = {"iti-goose-Sample_File_GOOSE.pcap": 451, "iti-mms-Sample_File_MMS_and_GOOSE.pcap": 34,
                "haolipeng-goose-GOOSE.pcap": 8, "haolipeng-goose-GOOSE_truncated.pcap": 1}


@pytest.mark.parametrize("name", sorted(GOOSE_FRAMES))
def test_shared_goose_captures(name: str) -> None:
    path = next(p for p in shared_ics_pcaps() if p.name == name)
    run = CaptureRun(path, CollectorConfig())
    for _ in run:
        pass
    assert run.stats.protocols["goose"].link_frames == GOOSE_FRAMES[name]
