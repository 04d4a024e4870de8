"""The rolling capture of a live sensor: every chunk recorded byte for byte, bounded in size, read back by extract."""

from __future__ import annotations

from pathlib import Path

import pytest

from otsentry.collectors.capture import open_capture
from otsentry.collectors.extract import extract_packets
from otsentry.collectors.rolling import RollingPcap, files_between, parse_size
from tests.helpers import ROOT

DEMO = ROOT / "replays" / "demo-polling.pcap"


def _records(paths) -> list[tuple[int, int, bytes]]:
    out = []
    for p in paths:
        with open_capture(p) as reader:
            for chunk in reader.chunks():
                out += [(int(t), int(w), bytes(chunk.buf[o:o + c])) for t, w, o, c in
                        zip(chunk.ts_ns.tolist(), chunk.wirelen.tolist(), chunk.offset.tolist(),
                            chunk.caplen.tolist())]
    return out


def _roll(tmp_path: Path, retention: int, file_bytes: int) -> RollingPcap:
    roll = RollingPcap(tmp_path / "roll", retention, file_bytes)
    with open_capture(DEMO, chunk_bytes=32 << 10) as reader:
        for chunk in reader.chunks():
            roll.write(chunk)
    roll.close()
    roll.close()
    return roll


def test_every_packet_is_recorded_in_order_across_files(tmp_path: Path) -> None:
    roll = _roll(tmp_path, 64 << 20, 100 << 10)
    files = sorted((tmp_path / "roll").glob("otsentry-*.pcap"))
    assert len(files) >= 3 and roll.deleted == 0
    assert _records(files) == _records([DEMO]) and roll.written == len(_records([DEMO]))


def test_retention_bounds_the_directory_and_keeps_the_newest(tmp_path: Path) -> None:
    roll = _roll(tmp_path, 300 << 10, 100 << 10)
    files = sorted((tmp_path / "roll").glob("otsentry-*.pcap"))
    assert roll.deleted > 0
    assert sum(f.stat().st_size for f in files) <= (300 << 10) + (100 << 10) + (40 << 10)
    assert _records(files) == _records([DEMO])[-len(_records(files)):]  # what is kept is the end, whole


def test_files_between_and_extract_from_rolled_files_match_the_original(tmp_path: Path) -> None:
    _roll(tmp_path, 64 << 20, 100 << 10)
    records = _records([DEMO])
    mid = records[len(records) // 2][0] / 1e9
    chosen = files_between(tmp_path / "roll", mid, mid + 5)
    assert 1 <= len(chosen) < len(list((tmp_path / "roll").iterdir()))
    a = extract_packets(DEMO, tmp_path / "a.pcap", mid, mid + 5, "10.10.1.10")
    b = extract_packets(chosen, tmp_path / "b.pcap", mid, mid + 5, "10.10.1.10")
    assert a.packets == b.packets > 0
    assert _records([tmp_path / "a.pcap"]) == _records([tmp_path / "b.pcap"])


def test_sizes() -> None:
    assert parse_size("2GB") == 2 << 30 and parse_size("500 mb") == 500 << 20 and parse_size("4096") == 4096
    assert parse_size("1.5K") == 1536
    for bad in ("", "-1GB", "lots", "0"):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)
    with pytest.raises(ValueError, match="larger than the retention"):
        RollingPcap(Path("/tmp/nonexistent-roll"), 1 << 20, 2 << 20)


def test_a_write_error_stops_recording_not_the_sensor(tmp_path: Path, monkeypatch) -> None:
    roll = RollingPcap(tmp_path / "roll", 64 << 20, 100 << 10)
    with open_capture(DEMO, chunk_bytes=32 << 10) as reader:
        chunks = list(reader.chunks())
    roll.write(chunks[0])

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(roll, "_write", full)
    for c in chunks[1:]:
        roll.write(c)  # no exception: the capture goes on
    assert "No space left" in roll.failed and roll.lost == sum(len(c) for c in chunks[1:])
    roll.close()
