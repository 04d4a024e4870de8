"""Capture reader: formats, chunking, damage handling, and record counts on real captures."""

from __future__ import annotations

import contextlib
import gzip
import signal
import struct
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.capture_builders import (
    Iface,
    Section,
    custom,
    epb,
    ether,
    idb,
    ipv4,
    isb,
    modbus_read,
    nrb,
    pb,
    pcap_file,
    pcapng_file,
    shb,
    spb,
    tcp,
)
from otsentry.collectors.capture import MAX_CAPLEN, Chunk, chunk_from_packets, open_capture
from otsentry.collectors.types import CaptureError
from tests.helpers import capture_params, require_tool, shared_pcaps

T0 = 1_700_000_000_123_456_000  # a microsecond-exact epoch timestamp in ns


def frame(i: int, size: int = 0) -> bytes:
    return ether(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000 + i, 502, modbus_read(i) + bytes(size))))


def records(n: int) -> list[tuple[int, bytes]]:
    return [(T0 + i * 1_000_000, frame(i, i % 7 * 50)) for i in range(n)]


def read_all(path: Path, chunk_bytes: int = 8 << 20) -> tuple[list[Chunk], object]:
    with open_capture(path, chunk_bytes) as reader:
        chunks = list(reader.chunks())
    return chunks, reader.stats


def flatten(chunks: list[Chunk]) -> list[tuple[int, int, int, int, int, bytes]]:
    """(frame, ts_ns, linktype, caplen, wirelen, data) per record, checking frame numbers run on across chunks."""
    rows = []
    for c in chunks:
        assert c.first_frame == (rows[-1][0] + 1 if rows else 1)
        for i in range(len(c)):
            d = c.data(i)
            assert len(d) == c.caplen[i]
            meta = (int(c.ts_ns[i]), int(c.linktype[i]), int(c.caplen[i]), int(c.wirelen[i]))
            rows.append((c.first_frame + i, *meta, d))
    return rows


def write(tmp_path: Path, data: bytes, name: str = "cap.pcap") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@contextlib.contextmanager
def no_hang(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: hypothesis' deadline only reports slowness once the call returns."""

    def boom(*_: object) -> None:
        raise TimeoutError(f"took more than {seconds}s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- classic pcap ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("chunk_bytes", [1, 97, 4096, 8 << 20])
def test_pcap_round_trip(tmp_path: Path, endian: str, nano: bool, chunk_bytes: int) -> None:
    recs = records(40)
    if nano:
        recs = [(ts + 789, data) for ts, data in recs]
    path = write(tmp_path, pcap_file(recs, endian=endian, nano=nano, linktype=1))
    chunks, stats = read_all(path, chunk_bytes)
    rows = flatten(chunks)
    assert [(r[1], r[5]) for r in rows] == recs
    assert {r[2] for r in rows} == {1}
    assert stats.records == 40 and stats.format == "pcap"
    assert not stats.truncated_tail and not stats.warnings
    if chunk_bytes == 1:
        assert len(chunks) > 1


def test_pcap_wirelen_and_fcs_bits_in_linktype(tmp_path: Path) -> None:
    data = frame(1)
    raw = pcap_file([(T0, data[:40], len(data))], linktype=0x10000000 | 1)
    chunks, _ = read_all(write(tmp_path, raw))
    assert int(chunks[0].caplen[0]) == 40 and int(chunks[0].wirelen[0]) == len(data)
    assert int(chunks[0].linktype[0]) == 1


def test_chunks_stay_bounded(tmp_path: Path) -> None:
    """Memory flat: every chunk holds about chunk_bytes, whatever the file size."""
    path = write(tmp_path, pcap_file(records(3000)))
    chunks, stats = read_all(path, 16384)
    assert stats.records == 3000 and len(chunks) > 10
    assert max(len(c.buf) for c in chunks) <= 16384 + 16 + 400


def test_header_only_file_has_no_records(tmp_path: Path) -> None:
    chunks, stats = read_all(write(tmp_path, pcap_file([])))
    assert chunks == [] and stats.records == 0 and not stats.warnings


def test_gzip_capture(tmp_path: Path) -> None:
    recs = records(20)
    path = write(tmp_path, gzip.compress(pcap_file(recs)), "cap.pcap.gz")
    rows = flatten(read_all(path, 100)[0])
    assert [(r[1], r[5]) for r in rows] == recs


# -- pcapng ------------------------------------------------------------------------------------------------------
def test_pcapng_sections_interfaces_and_blocks(tmp_path: Path) -> None:
    eth, raw = frame(1), ipv4("10.0.0.9", "10.0.0.2", 6, tcp(1, 502))
    le = Section(
        "<",
        [Iface(1), Iface(101, tsresol=9, tsoffset=10)],
        [
            epb(0, T0 // 1000, eth, "<"),
            nrb("<"),
            epb(1, T0 + 7, raw, "<"),  # nanosecond ticks, +10 s offset
            isb("<"),
            custom("<"),
            spb(eth, "<"),  # no timestamp: inherits the previous one
            pb(0, T0 // 1000 + 5, eth, "<"),
            idb(Iface(276, tsresol=0x80 | 20), "<"),  # a third interface declared mid-section, 2^-20 s ticks
            epb(2, (1_700_000_000 << 20) + (1 << 19), eth, "<"),
        ],
    )
    be = Section(">", [Iface(113, tsresol=3)], [epb(0, T0 // 10**6, eth, ">", opts=b"\x00\x01\x00\x00")])
    path = write(tmp_path, pcapng_file([le, be]), "cap.pcapng")
    for chunk_bytes in (1, 60, 8 << 20):
        chunks, stats = read_all(path, chunk_bytes)
        rows = flatten(chunks)
        assert stats.format == "pcapng" and not stats.warnings
        assert [r[2] for r in rows] == [1, 101, 1, 1, 276, 113]
        assert [r[1] for r in rows] == [
            T0,
            T0 + 7 + 10 * 10**9,
            T0 + 10 * 10**9 + 7,
            T0 + 5000,
            1_700_000_000 * 10**9 + 500_000_000,
            T0 // 10**6 * 10**6,
        ]
        assert [r[5] for r in rows] == [eth, raw, eth, eth, eth, eth]


def test_pcapng_big_endian_only(tmp_path: Path) -> None:
    recs = records(10)
    sec = Section(">", [Iface(1)], [epb(0, ts // 1000, d, ">") for ts, d in recs])
    rows = flatten(read_all(write(tmp_path, pcapng_file([sec])), 123)[0])
    assert [(r[1], r[5]) for r in rows] == recs


def test_pcapng_spb_snaplen(tmp_path: Path) -> None:
    sec = Section("<", [Iface(1, snaplen=20)], [spb(frame(1), "<")])
    chunks, _ = read_all(write(tmp_path, pcapng_file([sec])))
    assert int(chunks[0].caplen[0]) == 20 and int(chunks[0].wirelen[0]) == len(frame(1))


# -- damage ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("chunk_bytes", [50, 8 << 20])
def test_truncated_last_record_keeps_the_rest(tmp_path: Path, fmt: str, chunk_bytes: int) -> None:
    recs = records(12)
    if fmt == "pcap":
        raw = pcap_file(recs)
    else:
        raw = pcapng_file([Section("<", [Iface(1)], [epb(0, ts // 1000, d) for ts, d in recs])])
    path = write(tmp_path, raw[:-30])
    chunks, stats = read_all(path, chunk_bytes)
    assert [r[5] for r in flatten(chunks)] == [d for _, d in recs[:11]]
    assert stats.truncated_tail and stats.records == 11
    assert len(stats.warnings) == 1 and "truncated" in stats.warnings[0] and str(path) in stats.warnings[0]


@pytest.mark.parametrize("chunk_bytes", [50, 8 << 20])
@pytest.mark.parametrize("caplen", [MAX_CAPLEN + 1, 0xFFFFFFFF])
def test_corrupt_pcap_record_length_stops_with_warning(tmp_path: Path, chunk_bytes: int, caplen: int) -> None:
    raw = bytearray(pcap_file(records(10)))
    pos = 24
    for _ in range(6):  # walk to record 6
        pos += 16 + struct.unpack_from("<I", raw, pos + 8)[0]
    struct.pack_into("<I", raw, pos + 8, caplen)
    chunks, stats = read_all(write(tmp_path, bytes(raw)), chunk_bytes)
    assert stats.records == 6 and stats.stopped_early and not stats.truncated_tail
    assert "corrupt record" in stats.warnings[0] and f"byte {pos}" in stats.warnings[0]


@pytest.mark.parametrize("damage", ["length", "trailer", "odd", "interface", "caplen"])
def test_corrupt_pcapng_block_stops_with_warning(tmp_path: Path, damage: str) -> None:
    recs = records(10)
    blocks = [epb(0, ts // 1000, d) for ts, d in recs]
    bad = bytearray(blocks[4])
    if damage == "length":
        struct.pack_into("<I", bad, 4, 0x7FFFFFF0)
    elif damage == "trailer":
        struct.pack_into("<I", bad, len(bad) - 4, 12)
    elif damage == "odd":
        struct.pack_into("<I", bad, 4, len(bad) - 2)
    elif damage == "interface":
        struct.pack_into("<I", bad, 8, 3)
    else:
        struct.pack_into("<I", bad, 20, len(bad))
    blocks[4] = bytes(bad)
    for chunk_bytes in (64, 8 << 20):
        chunks, stats = read_all(write(tmp_path, pcapng_file([Section("<", [Iface(1)], blocks)])), chunk_bytes)
        assert stats.records == 4 and stats.stopped_early, stats
        assert [r[5] for r in flatten(chunks)] == [d for _, d in recs[:4]]
        assert len(stats.warnings) == 1 and "corrupt" in stats.warnings[0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (b"\xd4\xc3", "too short"),
        (b"Hello, world! This is text.\n", "not a pcap or pcapng file (magic 0x48656c6c)"),
        (pcap_file([])[:20], "truncated pcap header"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 9, 4, 0, 0, 65535, 1), "corrupt pcap header (version 9.4)"),
        (shb()[:8] + b"\xff\xff\xff\xff" + shb()[12:], "corrupt pcapng section header"),
        (shb()[:4] + struct.pack("<I", 13) + shb()[8:], "corrupt pcapng section header (block length 13)"),
        (shb()[:20], "truncated pcapng section header"),
        (b"\x34\xcd\xb2\xa1" + bytes(40), "Kuznetsov"),
    ],
)
def test_not_a_capture_raises_one_line_error(tmp_path: Path, content: bytes, expected: str) -> None:
    path = write(tmp_path, content, "foo.txt")
    with pytest.raises(CaptureError) as info:
        open_capture(path)
    message = str(info.value)
    assert expected in message and message.startswith(str(path)) and "\n" not in message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    for path in (tmp_path / "nope.pcap", tmp_path):
        with pytest.raises(CaptureError, match="cannot open"):
            open_capture(path)


def test_chunk_from_packets() -> None:
    recs = [(T0 + i, 1 if i % 2 else 101, frame(i)[: 10 + i]) for i in range(5)]
    chunk = chunk_from_packets(recs, first_frame=42)
    assert len(chunk) == 5 and chunk.first_frame == 42
    assert [chunk.data(i) for i in range(5)] == [r[2] for r in recs]
    assert chunk.ts_ns.tolist() == [r[0] for r in recs] and chunk.linktype.tolist() == [r[1] for r in recs]
    assert chunk.offset.dtype == np.int64 and chunk.linktype.dtype == np.int32
    assert chunk.wirelen.tolist() == [len(r[2]) for r in recs]
    assert len(chunk_from_packets([], 1)) == 0
    cut = chunk_from_packets([(T0, 1, frame(1)[:30], len(frame(1)))], first_frame=1)  # type: ignore[list-item]
    assert int(cut.caplen[0]) == 30 and int(cut.wirelen[0]) == len(frame(1))


# -- fuzz: never anything but CaptureError, never a hang -----------------------------------------------------------
def _pcapng_prefix(endian: str, tsresol: int | None) -> object:
    def build(recs: list[tuple[int, bytes]]) -> bytes:
        head = shb(endian) + idb(Iface(1, tsresol=tsresol), endian)
        return head + b"".join(epb(0, ts // 1000, d, endian) for ts, d in recs)

    return build


PREFIXES = {  # name -> builder of a valid file holding the given records
    "none": lambda recs: b"",
    "pcap-le": lambda recs: pcap_file(recs),
    "pcap-be-ns": lambda recs: pcap_file(recs, endian=">", nano=True),
    "pcapng-le": _pcapng_prefix("<", None),
    "pcapng-be": _pcapng_prefix(">", 0x80 | 30),
}


@settings(max_examples=300, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.sampled_from(sorted(PREFIXES)),
    body=st.binary(max_size=600),
    valid_records=st.integers(0, 3),
    chunk_bytes=st.sampled_from([1, 7, 64, 8 << 20]),
)
def test_random_bytes_never_crash(
    tmp_path: Path, prefix: str, body: bytes, valid_records: int, chunk_bytes: int
) -> None:
    path = write(tmp_path, PREFIXES[prefix](records(valid_records)) + body)
    with no_hang(10):
        try:
            with open_capture(path, chunk_bytes) as reader:
                n = sum(len(c) for c in reader.chunks())
        except CaptureError as exc:
            assert "\n" not in str(exc)
            assert prefix == "none"  # a valid header never raises: damage after it only stops reading
            return
    assert n == reader.stats.records
    if prefix != "none":
        assert n >= valid_records


@settings(max_examples=200, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_captures_never_crash(tmp_path: Path, data: st.DataObject) -> None:
    """Flip bytes inside otherwise valid files: length fields, block types, interfaces all get hit."""
    recs = records(6)
    two_ifaces = [Iface(1), Iface(101, tsresol=0x88)]
    files = [
        pcap_file(recs),
        pcap_file(recs, endian=">", nano=True),
        pcapng_file([Section("<", two_ifaces, [epb(i % 2, ts, d) for i, (ts, d) in enumerate(recs)])]),
        pcapng_file([Section(">", [Iface(1)], [spb(recs[0][1], ">"), pb(0, 5, recs[1][1], ">")])]),
    ]
    raw = bytearray(data.draw(st.sampled_from(files)))
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    path = write(tmp_path, bytes(raw))
    with no_hang(10):
        try:
            with open_capture(path, data.draw(st.sampled_from([13, 8 << 20]))) as reader:
                chunks = list(reader.chunks())
        except CaptureError:
            return
    for c in chunks:
        assert (c.caplen <= MAX_CAPLEN).all() and (c.offset + c.caplen <= len(c.buf)).all()


# -- real captures -----------------------------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.parametrize("path", capture_params(shared_pcaps()))
def test_real_capture_record_count_matches_capinfos(path: Path) -> None:
    chunks, stats = read_all(path, 64 << 10)
    assert not stats.warnings
    capinfos = require_tool("capinfos")
    out = subprocess.run([capinfos, "-c", "-M", "-T", "-r", str(path)], capture_output=True, text=True, check=True)
    assert stats.records == int(out.stdout.split("\t")[-1]) == sum(len(c) for c in chunks)


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["pcapng", "nsecpcap"])
def test_files_written_by_wireshark_read_the_same(tmp_path: Path, fmt: str) -> None:
    """editcap (Wireshark's own writer) converts real captures; every format must give the same records."""
    editcap = require_tool("editcap")
    files = shared_pcaps()
    if not files:
        pytest.skip("no shared captures")
    for path in files:
        converted = tmp_path / f"{path.stem}.{fmt}"
        subprocess.run([editcap, "-F", fmt, str(path), str(converted)], check=True, capture_output=True)
        original = flatten(read_all(path)[0])
        again, stats = read_all(converted, 32 << 10)
        assert flatten(again) == original and not stats.warnings, path.name
