"""The synthetic traffic generator: deterministic, byte-correct, and what Wireshark reads is what it claims.

The generator is the ground truth of most other tests, so it is checked against an independent reader: tshark
(real dissectors, real checksum verification, real TCP sequence analysis), plus a few golden bytes from the
Modbus specification and property tests of the fast frame path against the plain builders.
"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.contracts.network import ACK, SYN
from otsentry.synth import frames as fr
from otsentry.synth import modbus as mb
from otsentry.synth.pcapwriter import PcapWriter
from otsentry.synth.polling import PollingOptions, generate_polling
from otsentry.synth.tcp import Endpoint, TcpConnection
from tests.helpers import require_tool

# Every knob turned up so that a few thousand packets contain each feature several times.
RICH = PollingOptions(exception_rate=0.05, split_rate=0.05, retransmission_rate=0.02, write_rate=0.2,
                      pipeline_rate=0.3, reconnect_rate=0.01, diagnostics_rate=0.01)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_pcap(path: Path) -> tuple[tuple[int, ...], list[tuple[int, int, int, bytes]]]:
    """A tiny independent reader: (magic, major, minor, snaplen, linktype), [(ts_ns, caplen, wirelen, data)]."""
    raw = path.read_bytes()
    order = "<" if raw[:4] in (h("d4c3b2a1"), h("4d3cb2a1")) else ">"
    magic, major, minor, _, _, snaplen, linktype = struct.unpack(order + "IHHiIII", raw[:24])
    scale = 1 if magic == 0xA1B23C4D else 1000
    records, off = [], 24
    while off < len(raw):
        sec, frac, caplen, wirelen = struct.unpack(order + "IIII", raw[off:off + 16])
        records.append((sec * 1_000_000_000 + frac * scale, caplen, wirelen, raw[off + 16:off + 16 + caplen]))
        off += 16 + caplen
    return (magic, major, minor, snaplen, linktype), records


def tshark(path: Path, *args: str) -> str:
    result = subprocess.run([require_tool("tshark"), "-r", str(path), *args], capture_output=True, text=True,
                            check=False)
    errors = [line for line in result.stderr.splitlines() if line and "Running as user" not in line]
    assert result.returncode == 0 and not errors, result.stderr
    return result.stdout


# -- pcap writer --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("nanosecond, big_endian", [(False, False), (True, False), (False, True), (True, True)])
def test_pcap_writer_round_trip(tmp_path, nanosecond, big_endian):
    packets = [(1_709_280_000_123_456_789, b"\x01" * 60), (1_709_280_001_000_000_001, b"\x02" * 1514)]
    path = tmp_path / "w.pcap"
    with PcapWriter(path, linktype=113, nanosecond=nanosecond, big_endian=big_endian, snaplen=1000) as w:
        w.write(*packets[0], wirelen=70)
        w.write(*packets[1])
    header, records = read_pcap(path)
    assert header == (0xA1B23C4D if nanosecond else 0xA1B2C3D4, 2, 4, 1000, 113)
    div = 1 if nanosecond else 1000
    assert [r[0] for r in records] == [ts // div * div for ts, _ in packets]
    assert [(r[1], r[2]) for r in records] == [(60, 70), (1000, 1514)]  # snaplen cuts, wirelen kept
    assert records[1][3] == packets[1][1][:1000]


def test_write_many_is_byte_identical_to_write(tmp_path):
    packets = [(1_000_000_000 * i + 7, bytes([i % 256]) * (40 + i % 1400)) for i in range(3000)]  # > 1 MiB: flushes
    with PcapWriter(tmp_path / "a.pcap") as w:
        for ts, frame in packets:
            w.write(ts, frame)
    with PcapWriter(tmp_path / "b.pcap") as w:
        assert w.write_many(iter(packets)) == 3000
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()


# -- frames -------------------------------------------------------------------------------------------------------

def reference_checksum(data: bytes) -> int:
    """RFC 1071, word by word."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@given(st.binary(min_size=1, max_size=300).filter(any))
def test_checksum_matches_rfc1071(data):
    assert fr.checksum(data) == reference_checksum(data)


def test_ipv4_header_checksum_verifies():
    packet = fr.ipv4("10.0.0.1", "10.0.0.2", fr.PROTO_TCP, b"x" * 33, ident=0xBEEF, ttl=128)
    assert reference_checksum(packet[:20]) == 0
    assert struct.unpack("!H", packet[2:4])[0] == 53


@settings(max_examples=200)
@given(seq=st.integers(0, 2**32 - 1), ack=st.integers(0, 2**32 - 1), flags=st.integers(0, 0x3F),
       payload=st.binary(max_size=300), ident=st.integers(0, 2**16 - 1), window=st.integers(0, 2**16 - 1),
       v6=st.booleans(), link=st.sampled_from([fr.LINK_ETHERNET, fr.LINK_SLL, fr.LINK_RAW]))
def test_fast_direction_equals_plain_builders(seq, ack, flags, payload, ident, window, v6, link):
    """The precomputed path must produce exactly the bytes of the obvious, layer-by-layer construction."""
    src, dst = ("fd00::1", "fd00::2") if v6 else ("10.10.1.10", "10.10.2.11")
    lk = fr.Link("02:00:00:00:00:0a", "02:00:00:00:00:0b", link, (100,) if link == fr.LINK_ETHERNET else ())
    d = fr.Direction(src, dst, 50000, 502, lk, ttl=64)
    segment = fr.tcp(src, dst, 50000, 502, seq, ack, flags, payload, window)
    datagram = fr.udp(src, dst, 50000, 502, payload)
    for fast, l4, proto in ((d.tcp(seq, ack, flags, payload, window, ident), segment, fr.PROTO_TCP),
                            (d.udp(payload, ident), datagram, fr.PROTO_UDP)):
        ip = fr.ipv6(src, dst, proto, l4) if v6 else fr.ipv4(src, dst, proto, l4, ident=ident)
        ethertype = fr.ETH_IPV6 if v6 else fr.ETH_IPV4
        expected = lk.prefix(ethertype) + ip
        assert fast == expected


# -- Modbus builders: examples of the Modbus Application Protocol Specification v1.1b3, section 6 ----------------

def test_modbus_pdus_match_the_specification_examples():
    assert mb.read_request(mb.READ_COILS, 0x13, 0x13) == h("01 0013 0013")
    assert mb.read_bits_response(mb.READ_COILS, [1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0,
                                                 1, 0, 1, 0, 0, 0, 0, 0]) == h("01 03 CD 6B 05")
    assert mb.read_request(mb.READ_HOLDING_REGISTERS, 0x6B, 3) == h("03 006B 0003")
    assert mb.read_registers_response(3, [0x022B, 0x0000, 0x0064]) == h("03 06 022B 0000 0064")
    assert mb.write_single_coil(0xAC, True) == h("05 00AC FF00")
    assert mb.write_single_register(0x0001, 0x0003) == h("06 0001 0003")
    assert mb.write_multiple_coils_request(0x13, [1, 0, 1, 1, 0, 0, 1, 1, 1, 0]) == h("0F 0013 000A 02 CD 01")
    assert mb.write_multiple_response(15, 0x13, 10) == h("0F 0013 000A")
    assert mb.write_multiple_registers_request(1, [0x000A, 0x0102]) == h("10 0001 0002 04 000A 0102")
    assert mb.diagnostics(0, h("A537")) == h("08 0000 A537")
    assert mb.exception_response(mb.READ_INPUT_REGISTERS, mb.ILLEGAL_DATA_ADDRESS) == h("84 02")
    assert mb.read_device_id_request() == h("2B 0E 01 00")
    assert mb.read_device_id_response({0: "AB"}) == h("2B 0E 01 81 00 00 01 00 02 4142")
    assert mb.adu(1, 0x11, h("03 006B 0003")) == h("0001 0000 0006 11 03 006B 0003")
    assert mb.adu(1, 1, b"\x03", protocol_id=7, length=99) == h("0001 0007 0063 01 03")


# -- the TCP model ------------------------------------------------------------------------------------------------

def tcp_fields(frame: bytes) -> tuple[int, int, int, bytes]:
    """(seq, ack, flags, payload) of an Ethernet/IPv4/TCP frame."""
    ihl = (frame[14] & 0x0F) * 4
    tcp = frame[14 + ihl:]
    seq, ack, off, flags = struct.unpack("!IIBB", tcp[4:14])
    return seq, ack, flags, tcp[(off >> 4) * 4:]


def knob_connection_frames() -> list[tuple[int, bytes]]:
    """One connection exercising every knob, and one already open when the capture starts."""
    t = 1_709_280_000 * 10**9
    c = TcpConnection(Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 502), client_isn=2**32 - 5,
                      server_isn=777)
    out = c.handshake(t, 2_000_000)
    req1, req2 = mb.adu(1, 1, mb.read_request(3, 0, 10)), mb.adu(2, 1, mb.read_request(4, 0, 2))
    out += c.send(t + 10**7, True, [req1], split_at=9)  # (a) one ADU over two segments
    out += c.send(t + 2 * 10**7, False, [mb.adu(1, 1, mb.read_registers_response(3, [7] * 10))])
    out += c.send(t + 3 * 10**7, True, [req2, req1], coalesce=True)  # (b) two ADUs in one segment
    out.append(c.retransmit(t + 4 * 10**7, True))  # (c) same seq, same bytes
    out += c.send(t + 5 * 10**7, False, [mb.adu(2, 1, mb.read_registers_response(4, [1, 2])),
                                         mb.adu(1, 1, mb.read_registers_response(3, [9] * 10))])
    out.append(c.ack(t + 6 * 10**7, True))
    out += c.close(t + 7 * 10**7)
    d = TcpConnection(Endpoint("10.0.0.3", 40001), Endpoint("10.0.0.2", 502), established=True)  # (d)
    out += d.send(t + 10**7 + 1, True, [req1])
    out.append(d.reset(t + 10**7 + 5, from_client=False))
    return sorted(out)


def test_tcp_model_sequence_numbers():
    t = 0
    c = TcpConnection(Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 502), client_isn=2**32 - 2, server_isn=9)
    syn, synack, ack = (tcp_fields(f) for _, f in c.handshake(t))
    assert (syn[0], syn[2]) == (2**32 - 2, SYN)
    assert (synack[0], synack[1], synack[2]) == (9, 2**32 - 1, SYN | ACK)
    assert (ack[0], ack[1]) == (2**32 - 1, 10)
    first, second = (tcp_fields(f) for _, f in c.send(t, True, [b"0123456789AB"], split_at=8))
    assert (first[0], first[3], second[0], second[3]) == (2**32 - 1, b"01234567", 7, b"89AB")  # wraps at 2**32
    reply = tcp_fields(c.segment(t, False, b"xyz")[1])
    assert (reply[0], reply[1]) == (10, 11)
    again = tcp_fields(c.retransmit(t, False)[1])
    assert again[0] == reply[0] and again[3] == reply[3]
    assert c.retransmissions == 1


def test_tcp_knobs_read_cleanly_by_tshark(tmp_path):
    path = tmp_path / "knobs.pcap"
    with PcapWriter(path) as w:
        w.write_many(knob_connection_frames())
    flagged = tshark(path, "-Y", "tcp.analysis.flags", "-T", "fields", "-e", "frame.number",
                     "-e", "tcp.analysis.retransmission").split()
    assert len(flagged) == 2, flagged  # only the retransmission (frame number + its flag)
    ids = [f for f in tshark(path, "-T", "fields", "-e", "mbtcp.trans_id").split() if f]
    assert Counter(",".join(ids).split(",")) == Counter({"1": 5, "2": 2})


# -- the generator ------------------------------------------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    truths = [generate_polling(tmp_path / f"{i}.pcap", 3000, seed, options=RICH)
              for i, seed in enumerate((11, 11, 12))]
    hashes = [sha256(tmp_path / f"{i}.pcap") for i in range(3)]
    assert hashes[0] == hashes[1] != hashes[2]
    assert truths[0] == truths[1]


def test_exact_packets_sorted_and_consistent_counts(tmp_path):
    path = tmp_path / "p.pcap"
    truth = generate_polling(path, 4000, 5, plcs=3, options=RICH, keep_transactions=True)
    header, records = read_pcap(path)
    assert header[4] == 1 and len(records) == truth.packets == 4000
    stamps = [r[0] for r in records]
    assert stamps == sorted(stamps) and (stamps[0], stamps[-1]) == (truth.first_ts_ns // 1000 * 1000,
                                                                   truth.last_ts_ns // 1000 * 1000)
    assert truth.modbus_adus == truth.modbus_requests + truth.modbus_responses
    assert sum(truth.function_codes.values()) == truth.modbus_requests
    assert truth.transactions is not None
    assert sum(1 for t in truth.transactions if t.request_frame) == truth.modbus_requests
    assert sum(1 for t in truth.transactions if t.response_frame) == truth.modbus_responses
    assert sum(1 for t in truth.transactions if t.exception_code and t.response_frame) == truth.exceptions
    for field in ("exceptions", "retransmissions", "split_adus", "multi_adu_segments", "midstream_connections",
                  "non_modbus_flows"):
        assert getattr(truth, field) > 0, field
    assert set(truth.function_codes) >= {1, 2, 3, 4, 5, 6, 8, 15, 16, 43}


def test_polling_function_and_main_agree(tmp_path):
    truth = generate_polling(tmp_path / "a.pcap", 500, 3, plcs=2)
    out = subprocess.run([sys.executable, "-m", "otsentry.synth", str(tmp_path / "b.pcap"), "--packets", "500",
                          "--seed", "3", "--plcs", "2"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["modbus_adus"] == truth.modbus_adus
    assert sha256(tmp_path / "a.pcap") == sha256(tmp_path / "b.pcap")


# -- the generator, read by tshark --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "rich.pcap"
    return path, generate_polling(path, 4000, 2024, options=RICH, keep_transactions=True)


@pytest.mark.integration
def test_tshark_sees_no_malformed_packets_nor_errors(rich):
    path, _ = rich
    assert tshark(path, "-Y", "_ws.malformed || _ws.expert.severity == error") == ""


@pytest.mark.integration
def test_tshark_tcp_analysis_only_injected_retransmissions(rich):
    path, truth = rich
    assert tshark(path, "-Y", "tcp.analysis.flags && !tcp.analysis.retransmission") == ""
    assert len(tshark(path, "-Y", "tcp.analysis.retransmission").splitlines()) == truth.retransmissions


@pytest.mark.integration
def test_tshark_verifies_every_checksum(rich):
    path, truth = rich
    prefs = ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"]
    # Status: 0 bad, 1 good, 2 unverified.
    assert tshark(path, *prefs, "-Y", "tcp.checksum.status != 1 || ip.checksum.status != 1 "
                                      "|| udp.checksum.status != 1") == ""
    good = tshark(path, *prefs, "-Y", "ip.checksum.status == 1 && (tcp.checksum.status == 1 "
                                      "|| udp.checksum.status == 1)", "-T", "fields", "-e", "frame.number")
    assert len(good.split()) == truth.packets


@pytest.mark.integration
def test_tshark_finds_every_adu_where_the_truth_says(rich):
    path, truth = rich
    out = tshark(path, "-T", "fields", "-e", "frame.number", "-e", "mbtcp.trans_id", "-e", "mbtcp.unit_id",
                 "-e", "modbus.exception_code")
    seen: dict[int, list[tuple[str, str]]] = {}
    exceptions = 0
    for line in out.splitlines():
        number, tids, units, exc = line.split("\t")
        if tids:
            seen[int(number)] = list(zip(tids.split(","), units.split(",")))
        exceptions += len(exc.split(",")) if exc else 0
    assert sum(len(v) for v in seen.values()) == truth.modbus_adus
    assert exceptions == truth.exceptions
    assert truth.transactions is not None
    for t in truth.transactions:
        for frame in (t.request_frame, t.response_frame):
            if frame is not None:
                assert (str(t.transaction_id), str(t.unit_id)) in seen[frame], (t, seen.get(frame))


@pytest.mark.integration
@pytest.mark.parametrize("variant", [{"link": "sll"}, {"link": "raw"}, {"vlan": 100}, {"ipv6": True},
                                     {"nanosecond": True}])
def test_tshark_reads_every_encapsulation(tmp_path, variant):
    path = tmp_path / "v.pcap"
    truth = generate_polling(path, 1500, 9, options=RICH, **variant)
    assert tshark(path, "-Y", "_ws.malformed || _ws.expert.severity == error "
                              "|| (tcp.analysis.flags && !tcp.analysis.retransmission)") == ""
    ids = tshark(path, "-T", "fields", "-e", "mbtcp.trans_id").split()
    assert len(",".join(ids).split(",")) == truth.modbus_adus
