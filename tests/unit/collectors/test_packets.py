"""Packet decoding: layouts, edge cases, vectorised path == pure-Python path, and agreement with tshark."""

from __future__ import annotations

import dataclasses
import subprocess
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.collectors.capture import Chunk, chunk_from_packets, open_capture
from otsentry.collectors.packets import (
    NOT_IP,
    PacketFields,
    Packets,
    addr_from_str,
    addr_to_str,
    decode_packet_py,
    decode_packets,
)
from tests.helpers import capture_params, require_tool, shared_pcaps
from tests.unit.capture_builders import (
    ether,
    ipv4,
    ipv6,
    ipv6_frag,
    ipv6_opts,
    modbus_read,
    null_loop,
    sll,
    sll2,
    tcp,
    udp,
)

MB = modbus_read(7)  # 12 bytes of Modbus/TCP
SEG = tcp(40001, 502, MB, seq=0xDEADBEEF, ack=0x01020304, flags=0x18)
V4 = ipv4("192.168.1.10", "192.168.1.20", 6, SEG)
V6 = ipv6("2001:db8::10", "fe80::1", 6, SEG)


def chunk_of(frames: list[tuple], pad: bool = True) -> Chunk:
    """A chunk of (linktype, data[, wirelen]); padded so every row takes the vectorised path, as in a big chunk."""
    chunk = chunk_from_packets([(1000 + i, f[0], f[1]) for i, f in enumerate(frames)], first_frame=1)
    wirelen = np.array([f[2] if len(f) > 2 else len(f[1]) for f in frames], np.int64)
    return dataclasses.replace(chunk, buf=chunk.buf + bytes(256) if pad else chunk.buf, wirelen=wirelen)


def row(p: Packets, i: int, chunk: Chunk) -> PacketFields:
    """Row ``i`` of the columns in the Python decoder's shape (payload offset relative to the packet)."""
    values = [getattr(p, name)[i].item() for name in PacketFields._fields]
    values[PacketFields._fields.index("payload_off")] -= int(chunk.offset[i])
    return PacketFields(*values)


def assert_paths_agree(chunk: Chunk) -> Packets:
    p = decode_packets(chunk)
    assert len(p) == len(chunk)
    for name in PacketFields._fields + ("frame", "ts_ns", "wirelen"):
        assert len(getattr(p, name)) == len(chunk), name
    for i in range(len(chunk)):
        expected = decode_packet_py(chunk.data(i), int(chunk.linktype[i]), int(chunk.wirelen[i]))
        assert row(p, i, chunk) == expected, (i, int(chunk.linktype[i]), chunk.data(i).hex())
    return p


def one(lt: int, data: bytes, wirelen: int | None = None) -> PacketFields:
    chunk = chunk_of([(lt, data, wirelen or len(data))])
    return row(assert_paths_agree(chunk), 0, chunk)


# -- layouts -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lt", "data", "l3"),
    [
        (1, ether(V4), 14),
        (1, ether(V4, vlans=((0x8100, 5),)), 18),
        (1, ether(V4, vlans=((0x88A8, 5), (0x8100, 6))), 22),
        (1, ether(V4, vlans=((0x88A8, 5), (0x8100, 6), (0x8100, 7))), 26),  # three tags: Python path
        (113, sll(V4), 16),
        (276, sll2(V4), 20),
        (101, V4, 0),
        (12, V4, 0),
        (14, V4, 0),
        (228, V4, 0),
        (0, null_loop(V4, 2, "<"), 4),
        (0, null_loop(V4, 2, ">"), 4),
        (108, null_loop(V4, 2, ">"), 4),
    ],
)
def test_ipv4_tcp_on_every_link_type(lt: int, data: bytes, l3: int) -> None:
    f = one(lt, data)
    assert (f.ipver, f.proto, f.sport, f.dport, f.tcp_flags, f.l4_ok) == (4, 6, 40001, 502, 0x18, True)
    assert (f.seq, f.ack) == (0xDEADBEEF, 0x01020304)
    assert addr_to_str(f.src_hi, f.src_lo) == "192.168.1.10" and addr_to_str(f.dst_hi, f.dst_lo) == "192.168.1.20"
    assert (f.payload_off, f.payload_len, f.payload_wire_len) == (l3 + 40, 12, 12)
    assert data[f.payload_off : f.payload_off + f.payload_len] == MB


@pytest.mark.parametrize(
    ("lt", "data"),
    [
        (1, ether(V6, 0x86DD)),
        (113, sll(V6, 0x86DD)),
        (276, sll2(V6, 0x86DD)),
        (101, V6),
        (229, V6),
        (0, null_loop(V6, 30)),
    ],
)
def test_ipv6_tcp(lt: int, data: bytes) -> None:
    f = one(lt, data)
    assert (f.ipver, f.proto, f.sport, f.dport, f.l4_ok, f.payload_len) == (6, 6, 40001, 502, True, 12)
    assert addr_to_str(f.src_hi, f.src_lo) == "2001:db8::10" and addr_to_str(f.dst_hi, f.dst_lo) == "fe80::1"


def test_ipv6_extension_headers_are_walked() -> None:
    chain = ipv6_opts(60, b"\x01\x02\x00\x00") + ipv6_opts(43, bytes(12)) + ipv6_opts(6)  # HBH, dest-opts, routing
    f = one(1, ether(ipv6("::1", "::2", 0, chain + SEG), 0x86DD))
    assert (f.proto, f.sport, f.dport, f.l4_ok, f.payload_len) == (6, 40001, 502, True, 12)
    assert f.payload_off == 14 + 40 + len(chain) + 20


@pytest.mark.parametrize(("offset", "more", "l4_ok"), [(0, True, False), (8, False, False), (0, False, True)])
def test_ipv6_fragments(offset: int, more: bool, l4_ok: bool) -> None:
    """Real fragments are not decoded past IP; an atomic fragment (RFC 6946) is a whole packet."""
    f = one(1, ether(ipv6("::1", "::2", 44, ipv6_frag(6, offset, more) + SEG), 0x86DD))
    assert (f.ipver, f.proto, f.l4_ok) == (6, 6, l4_ok)
    assert f.sport == (40001 if l4_ok else 0)


def test_ipv4_options_padding_and_snaplen() -> None:
    f = one(1, ether(ipv4("10.0.0.1", "10.0.0.2", 6, SEG, options=b"\x94\x04\x00\x00")))
    assert (f.l4_ok, f.payload_off, f.payload_len) == (True, 14 + 24 + 20, 12)
    f = one(1, ether(V4) + bytes(6) + b"FCS!")  # Ethernet padding and FCS after the IP total length
    assert (f.payload_len, f.payload_wire_len) == (12, 12)
    f = one(1, ether(V4)[:-5], len(ether(V4)))  # snap length cut the payload
    assert (f.l4_ok, f.payload_len, f.payload_wire_len) == (True, 7, 12)
    f = one(1, ether(V4)[:-5])  # IP claims more than the frame carried: a lie, not a cut (as Wireshark)
    assert (f.l4_ok, f.payload_len, f.payload_wire_len) == (True, 7, 7)
    f = one(1, ether(V4)[: 14 + 20 + 10], len(ether(V4)))  # cut inside the TCP header: addresses, no ports
    assert (f.ipver, f.proto, f.sport, f.l4_ok, f.payload_off, f.payload_len, f.payload_wire_len) == (
        4, 6, 0, False, 14 + 20, 10, 32,
    )
    f = one(1, ether(ipv4("10.0.0.1", "10.0.0.2", 6, SEG, total_length=0)))  # segmentation offload
    assert (f.l4_ok, f.payload_len, f.payload_wire_len) == (True, 12, 12)


@pytest.mark.parametrize("frag", [0x2000, 0x0001, 0x2005])
def test_ipv4_fragments_are_not_decoded_past_ip(frag: int) -> None:
    f = one(1, ether(ipv4("10.0.0.1", "10.0.0.2", 6, SEG, frag=frag)))
    assert (f.ipver, f.proto, f.sport, f.l4_ok, f.payload_len) == (4, 6, 0, False, 32)


def test_udp() -> None:
    f = one(1, ether(ipv4("10.0.0.1", "10.0.0.2", 17, udp(5353, 53, b"query"))))
    assert (f.proto, f.sport, f.dport, f.l4_ok, f.payload_len, f.payload_wire_len) == (17, 5353, 53, True, 5, 5)
    f = one(1, ether(ipv4("10.0.0.1", "10.0.0.2", 17, udp(5353, 53, b"query", length=9))))  # UDP length rules
    assert (f.payload_len, f.payload_wire_len) == (1, 1)


def test_other_ip_protocols_and_non_ip() -> None:
    f = one(1, ether(ipv4("10.0.0.1", "10.0.0.2", 1, b"\x08\x00" + bytes(30))))
    assert (f.ipver, f.proto, f.sport, f.l4_ok, f.payload_off, f.payload_len) == (4, 1, 0, False, 34, 32)
    for lt, data in [
        (1, ether(b"\x00" * 28, 0x0806)),  # ARP
        (1, ether(V4, 0x0800)[:20]),  # cut in the IP header
        (1, ether(b"\x55" + V4[1:])),  # bogus IP version
        (1, ether(b"\x44" + V4[1:])),  # IHL < 5
        (1, b"\x00" * 5),
        (1, b""),
        (105, ether(V4)),  # 802.11: not decoded
        (276, sll2(V4)[:19]),
        (101, b"\x60" + bytes(20)),  # IPv6 cut short
    ]:
        f = one(lt, data)
        assert f == NOT_IP, (lt, data.hex())


def test_mixed_chunk_and_tail_rows_take_the_python_path() -> None:
    frames = [
        (1, ether(V4)),
        (101, V6),
        (1, ether(V4, vlans=((0x8100, 1),))),
        (113, sll(b"junk")),
        (276, sll2(V6, 0x86DD)),
        (1, ether(ipv6("::1", "::2", 0, ipv6_opts(17) + udp(1, 2, b"x")), 0x86DD)),
        (0, null_loop(V4)),
    ] * 5
    for pad in (True, False):  # unpadded: the last rows sit near the buffer's end
        p = assert_paths_agree(chunk_of(frames, pad=pad))
        assert p.frame.tolist() == list(range(1, len(frames) + 1)) and p.ts_ns[0] == 1000
        assert p.ipver.tolist()[:7] == [4, 6, 4, 0, 6, 6, 4]
        assert p.l4_ok.tolist()[:7] == [True, True, True, False, True, True, True]


def test_column_dtypes() -> None:
    p = decode_packets(chunk_of([(1, ether(V4))]))
    expected = {
        "frame": np.int64, "ts_ns": np.int64, "ipver": np.uint8, "src_hi": np.uint64, "src_lo": np.uint64,
        "dst_hi": np.uint64, "dst_lo": np.uint64, "proto": np.uint8, "sport": np.uint16, "dport": np.uint16,
        "tcp_flags": np.uint8, "seq": np.uint32, "ack": np.uint32, "payload_off": np.int64, "payload_len": np.int32,
        "payload_wire_len": np.int32, "wirelen": np.int64, "l4_ok": np.bool_,
    }  # fmt: skip
    assert {f.name: getattr(p, f.name).dtype.type for f in dataclasses.fields(p)} == expected
    empty = decode_packets(chunk_from_packets([], 1))
    assert len(empty) == 0


def test_addresses() -> None:
    assert addr_from_str("10.1.2.3") == (0, 0xFFFF0A010203)
    for text in ("10.1.2.3", "::", "2001:db8::1", "fe80::1:2", "::fffe:1:2"):
        assert addr_to_str(*addr_from_str(text)) == text
    assert addr_to_str(*addr_from_str("::ffff:10.1.2.3")) == "10.1.2.3"  # one key space for both families
    assert addr_to_str(np.uint64(0), np.uint64(0xFFFF0A010203)) == "10.1.2.3"


# -- property tests: never raise, both paths agree -----------------------------------------------------------------
LINKTYPES = st.sampled_from([1, 113, 276, 101, 12, 14, 228, 229, 0, 108, 105, 147])


@settings(max_examples=400, deadline=timedelta(seconds=2))
@given(st.lists(st.tuples(LINKTYPES, st.binary(max_size=120), st.integers(0, 200)), max_size=12), st.booleans())
def test_random_bytes_never_raise_and_paths_agree(frames: list[tuple[int, bytes, int]], pad: bool) -> None:
    assert_paths_agree(chunk_of(frames, pad))


def _structured() -> st.SearchStrategy[tuple[int, bytes, int]]:
    """Valid packets of every layout, then cut and with a few bytes overwritten."""
    payload = st.binary(max_size=30)
    l4 = st.one_of(
        st.builds(lambda p, o: (6, tcp(1, 502, p, options=o)), payload, st.sampled_from([b"", b"\x01" * 4, bytes(40)])),
        st.builds(lambda p: (17, udp(9, 10, p)), payload),
        st.builds(lambda p: (1, p), payload),
    )
    v4 = st.builds(
        lambda l, frag, opts: ipv4("1.2.3.4", "5.6.7.8", l[0], l[1], frag=frag, options=opts),
        l4, st.sampled_from([0, 0x4000, 0x2000, 0x0003]), st.sampled_from([b"", bytes(4), bytes(40)]),
    )  # fmt: skip
    ext = st.lists(st.sampled_from(["hbh", "rt", "dst", "frag", "frag_more"]), max_size=3)
    v6 = st.builds(lambda l, kinds: _v6_packet(kinds, l[0], l[1]), l4, ext)
    ip = st.one_of(st.tuples(st.just(0x0800), v4), st.tuples(st.just(0x86DD), v6))
    vlans = st.lists(st.tuples(st.sampled_from([0x8100, 0x88A8, 0x9100]), st.integers(0, 4095)), max_size=3)
    framed = st.one_of(
        st.builds(lambda i, v: (1, ether(i[1], i[0], tuple(v))), ip, vlans),
        st.builds(lambda i: (113, sll(i[1], i[0])), ip),
        st.builds(lambda i: (276, sll2(i[1], i[0])), ip),
        st.builds(lambda i, lt: (lt, i[1]), ip, st.sampled_from([101, 228, 229])),
    )

    @st.composite
    def mutate(draw: st.DrawFn) -> tuple[int, bytes, int]:
        lt, data = draw(framed)
        wirelen = len(data)
        data = bytearray(data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data)
        for _ in range(draw(st.integers(0, 3))):
            if data:
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return lt, bytes(data), wirelen

    return mutate()


def _v6_packet(kinds: list[str], proto: int, upper: bytes) -> bytes:
    """IPv6 with the given extension headers, next-header values chained correctly."""
    nh, chain = proto, b""
    for kind in reversed(kinds):
        if kind.startswith("frag"):
            chain, nh = ipv6_frag(nh, 0, kind == "frag_more") + chain, 44
        else:
            code = {"hbh": 0, "rt": 43, "dst": 60}[kind]
            chain, nh = ipv6_opts(nh, bytes(4 * len(chain) % 13)) + chain, code
    return ipv6("::1", "2001:db8::2", nh, chain + upper)


@settings(max_examples=500, deadline=timedelta(seconds=2))
@given(st.lists(_structured(), min_size=1, max_size=10), st.booleans())
def test_mutated_packets_never_raise_and_paths_agree(frames: list[tuple[int, bytes, int]], pad: bool) -> None:
    assert_paths_agree(chunk_of(frames, pad))


def test_ipv4_in_big_chunk_uses_vectorised_path_without_padding() -> None:
    """Sanity for the padding trick: a realistic chunk decodes the same with and without extra bytes."""
    frames = [(1, ether(ipv4("10.0.0.1", f"10.0.{i % 256}.2", 6, tcp(i + 1, 502, MB)))) for i in range(300)]
    a, b = decode_packets(chunk_of(frames, pad=False)), decode_packets(chunk_of(frames, pad=True))
    for name in PacketFields._fields:
        assert (getattr(a, name) == getattr(b, name)).all(), name


# -- real captures -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", capture_params(shared_pcaps()))
def test_real_captures_paths_agree(path: Path) -> None:
    with open_capture(path, 256 << 10) as reader:
        for chunk in reader.chunks():
            assert_paths_agree(chunk)


@pytest.mark.integration
@pytest.mark.parametrize("path", capture_params(shared_pcaps()))
def test_real_captures_match_tshark(path: Path) -> None:
    """frame number, IPv4 addresses, TCP ports and TCP payload length as tshark dissects them."""
    tshark = require_tool("tshark")
    limit = 400
    fields = ["frame.number", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "tcp.len"]
    cmd = [tshark, "-r", str(path), "-c", str(limit), "-T", "fields", "-E", "occurrence=f"]
    for f in fields:
        cmd += ["-e", f]
    lines = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    with open_capture(path) as reader:
        chunk = next(reader.chunks())
    p = decode_packets(chunk)
    assert len(lines) == min(limit, len(p))
    for i, line in enumerate(lines):
        frame, src, dst, sport, dport, tcp_len = (line.split("\t") + [""] * 6)[:6]
        is_v4 = p.ipver[i] == 4
        has_tcp = is_v4 and p.proto[i] == 6 and int(p.sport[i]) + int(p.dport[i]) > 0
        mine = (
            str(p.frame[i]),
            addr_to_str(p.src_hi[i], p.src_lo[i]) if is_v4 else "",
            addr_to_str(p.dst_hi[i], p.dst_lo[i]) if is_v4 else "",
            str(p.sport[i]) if has_tcp else "",
            str(p.dport[i]) if has_tcp else "",
        )
        assert mine == (frame, src, dst, sport, dport), (path.name, line)
        if tcp_len and p.l4_ok[i]:
            assert int(tcp_len) == p.payload_wire_len[i], (path.name, line)
