"""A decoded protocol (DNP3, IEC 104, S7comm, EtherNet/IP, Modbus/TCP) on another port is decoded once its payload
names it: the same operations as on its own
port, from the flow's first chunk on; other hosts on the same port number are left alone; the registry is bounded."""

from __future__ import annotations

import random
import struct
from dataclasses import replace

import pytest

from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.ics.found import FoundServers
from otsentry.collectors.source import CaptureRun
from otsentry.contracts.network import ACK, PSH, SYN
from otsentry.synth.frames import Direction, Link
from otsentry.synth.ics_traffic import EXCHANGES, PORTS
from otsentry.synth.pcapwriter import PcapWriter

OTHER_PORT = {"dnp3": 20001, "iec104": 2405, "s7comm": 1102, "enip": 44819}


def _write(path, protocol: str, port: int, exchanges: int = 40, stranger: bool = False) -> None:
    rng, link = random.Random(3), Link()
    out, back = Direction("10.0.0.8", "10.0.0.3", 40000, port, link), Direction("10.0.0.3", "10.0.0.8", port, 40000, link)
    c, s, ts = 1000, 5000, 1_700_000_000 * 10**9
    with PcapWriter(path) as w:
        w.write(ts, out.tcp(c - 1, 0, SYN))
        w.write(ts + 1000, back.tcp(s - 1, c, SYN | ACK))
        for i in range(exchanges):
            req, resp = EXCHANGES[protocol](i, rng)
            w.write(ts + 2000, out.tcp(c, s, ACK | PSH, req))
            c += len(req)
            w.write(ts + 3000, back.tcp(s, c, ACK | PSH, resp))
            s += len(resp)
            if stranger:  # another host whose port has the same number, speaking something else
                other = Direction("10.0.0.9", "10.0.0.4", 40001, port, link)
                w.write(ts + 4000, other.tcp(100 + i * 5, 1, ACK | PSH, b"hello"))
            ts += 50_000_000


def _operations(path):
    run = CaptureRun(path, CollectorConfig())
    run.chunk_bytes = 4096  # the flow is named in its first chunk, decoded over many
    ops = [op for b in run for op in b.operations]
    return ops, run.stats


@pytest.mark.parametrize("protocol", sorted(OTHER_PORT))
def test_the_same_operations_on_another_port(tmp_path, protocol: str) -> None:
    _write(tmp_path / "usual.pcap", protocol, PORTS[protocol])
    _write(tmp_path / "other.pcap", protocol, OTHER_PORT[protocol])
    usual, usual_stats = _operations(tmp_path / "usual.pcap")
    other, other_stats = _operations(tmp_path / "other.pcap")
    assert len(usual) == 40
    assert other == [replace(op, server_port=OTHER_PORT[protocol]) for op in usual]
    assert {n: c.to_dict() for n, c in other_stats.protocols.items()} == \
        {n: c.to_dict() for n, c in usual_stats.protocols.items()}


def test_other_hosts_on_that_port_number_are_not_decoded(tmp_path) -> None:
    _write(tmp_path / "p.pcap", "dnp3", 20001, stranger=True)
    ops, stats = _operations(tmp_path / "p.pcap")
    assert len(ops) == 40 and {op.server_ip for op in ops} == {"10.0.0.3"}
    assert stats.protocols["dnp3"].skipped_bytes == 0  # the stranger's "hello"s were not taken for DNP3


def test_a_non_decoded_protocol_is_only_named(tmp_path) -> None:
    """OPC UA, TLS...: named in the flow, no decoder asked to take it."""
    _write(tmp_path / "p.pcap", "dnp3", 4840)
    ops, _ = _operations(tmp_path / "p.pcap")
    assert len(ops) == 40  # DNP3 on OPC UA's port is still DNP3: the payload decides, not the port


def test_the_registry_is_bounded() -> None:
    found = FoundServers(limit=2)
    assert found.add((6, 0, 1, 20001), "dnp3") and not found.add((6, 0, 1, 20001), "dnp3")
    found.add((6, 0, 2, 20002), "dnp3")
    found.add((17, 0, 3, 20003), "dnp3")
    assert len(found) == 2 and found.get((6, 0, 1, 20001)) is None
    assert not found.tcp_ports[20001] and found.tcp_ports[20002] and found.udp_ports[20003]


def _write_modbus(path, port: int, stranger: bool = False) -> None:
    link = Link()
    out, back = Direction("10.0.0.8", "10.0.0.3", 40000, port, link), Direction("10.0.0.3", "10.0.0.8", port, 40000, link)
    c, s, ts = 1000, 5000, 1_700_000_000 * 10**9
    with PcapWriter(path) as w:
        w.write(ts, out.tcp(c - 1, 0, SYN))
        w.write(ts + 1000, back.tcp(s - 1, c, SYN | ACK))
        for i in range(40):
            req = struct.pack("!HHHBBHH", i, 0, 6, 1, 16 if i % 10 == 0 else 3, 100, 2)
            req += b"\x04\x00\x07\x00\x08" if i % 10 == 0 else b""
            req = req[:4] + struct.pack("!H", len(req) - 6) + req[6:]
            resp = struct.pack("!HHHBBHH", i, 0, 6, 1, 16, 100, 2) if i % 10 == 0 else \
                struct.pack("!HHHBBB", i, 0, 7, 1, 3, 4) + b"\x00\x07\x00\x08"
            w.write(ts + 2000, out.tcp(c, s, ACK | PSH, req))
            c += len(req)
            w.write(ts + 3000, back.tcp(s, c, ACK | PSH, resp))
            s += len(resp)
            if stranger:
                w.write(ts + 4000, Direction("10.0.0.9", "10.0.0.4", 40001, port, link).tcp(7 + 5 * i, 1, ACK | PSH,
                                                                                               b"hello"))
            ts += 50_000_000


def _transactions(path):
    run = CaptureRun(path, CollectorConfig())
    run.chunk_bytes = 4096
    return [e for b in run for e in b.modbus.events(run.conns)], run.stats


def test_modbus_on_another_port_gives_the_same_transactions(tmp_path) -> None:
    _write_modbus(tmp_path / "usual.pcap", 502, stranger=True)
    _write_modbus(tmp_path / "other.pcap", 5020, stranger=True)
    usual, usual_stats = _transactions(tmp_path / "usual.pcap")
    other, stats = _transactions(tmp_path / "other.pcap")
    assert len(usual) == 40 and [e.function_code for e in usual].count(16) == 4
    assert other == [replace(e, server_port=5020) for e in usual]
    # the stranger's "hello"s: on 502 a Modbus port's undecodable bytes; on 5020 another host's, left alone
    assert usual_stats.non_modbus_payload_bytes == 200 and stats.non_modbus_payload_bytes == 0
