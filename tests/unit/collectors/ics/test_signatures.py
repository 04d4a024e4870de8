"""Protocols named by their payload, whatever the port: golden bytes per signature, no exception on any bytes,
the shared captures' conversations named as their dissectors name them, and FlowEvents and assets carrying it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from otsentry.assets.capture import inventory_from_captures
from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.ics.signatures import SIGNATURES, guess_protocol
from otsentry.collectors.source import CaptureRun
from otsentry.contracts.network import ACK, PSH, SYN
from otsentry.features.from_capture import windows_from_capture
from otsentry.synth.frames import Direction, Link
from otsentry.synth.ics_frames import apdu_i, apdu_u, cotp_connect, dnp3_frames, enip, s7_job, tpkt_dt
from otsentry.synth.pcapwriter import PcapWriter
from tests.helpers import shared_ics_pcaps, shared_pcaps

MODBUS_READ = struct.pack("!HHHBBHH", 1, 0, 6, 1, 3, 0, 10)

GOLDEN = [
    ("tcp", dnp3_frames(bytes([0xC0, 0x01, 60, 2, 0x06]))[0], "dnp3"),
    ("udp", dnp3_frames(bytes([0xC0, 0x01, 60, 2, 0x06]))[0], "dnp3"),
    ("tcp", apdu_u(0x07), "iec104"),  # STARTDT act
    ("tcp", apdu_i(100, 6, 1, b"\0\0\0\x14"), "iec104"),
    ("tcp", b"\x68\x04\x01\x00\x02\x00", "iec104"),  # S-format
    ("tcp", tpkt_dt(s7_job(bytes([0xF0, 0, 0, 1, 0, 1, 0x01, 0xE0]))), "s7comm"),
    ("tcp", tpkt_dt(b"\x72\x01\x00\x10"), "s7commplus"),
    ("tcp", tpkt_dt(b"\x0d\x05\x01\x00"), "mms"),  # ISO session CONNECT SPDU
    ("tcp", tpkt_dt(b"\xa8\x26\x80\x02"), "mms"),  # a bare MMS initiate-Request
    ("tcp", cotp_connect(), "cotp"),
    ("tcp", b"\x03\x00\x00\x16", "cotp"),  # a TPKT header sent alone
    ("tcp", b"\x03\x00\x00\x2b\x26\xe0\x00\x00\x00\x00\x00Cookie: mstshash=admin\r\n", "rdp"),
    ("tcp", enip(0x0065, b"\x01\x00\x00\x00", session=0), "enip"),
    ("udp", enip(0x0063, session=0), "enip"),
    ("tcp", b"HELF" + struct.pack("<I", 56) + bytes(48), "opcua"),
    ("udp", b"\x81\x0b\x00\x0c\x01\x20\xff\xff\x00\xff\x10\x08", "bacnet"),  # Who-Is, broadcast
    ("tcp", b"FINS" + struct.pack(">III", 12, 0, 0) + bytes(4), "omron-fins"),
    ("tcp", b"\x50\x00\x00\xff\xff\x03\x00\x0c\x00\x10\x00\x01\x04\x00\x00\x64\x00\x00\xa8\x01\x00", "melsec"),
    ("tcp", b"\x01\x00\x00\x00\x00\x01\x00\x0d\x01\x00\x00\x75\x30", "hart-ip"),  # session initiate
    ("tcp", b"fox a 0 -1 fox hello\n", "niagara-fox"),
    ("tcp", b"\x10\x12\x00\x04MQTT\x04\x02\x00\x3c\x00\x06client", "mqtt"),
    ("tcp", MODBUS_READ, "modbus"),
    ("udp", MODBUS_READ, "modbus"),
    ("tcp", b"\x16\x03\x01\x00\x85\x01\x00\x00\x81\x03\x03", "tls"),
    ("tcp", b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n", "http"),
    ("tcp", b"SSH-2.0-OpenSSH_9.2\r\n", "ssh"),
]

NOT_OT = [
    ("tcp", b""), ("tcp", b"\x00" * 40), ("tcp", b"hello world, nothing here"),
    ("tcp", MODBUS_READ[:2] + b"\x00\x01" + MODBUS_READ[4:]),  # protocol id 1: not Modbus/TCP
    ("tcp", dnp3_frames(b"\xc0\x01")[0][:8] + b"\x00\x00"),  # DNP3 start bytes, bad header CRC
    ("tcp", b"\x68\x04\x05\x00\x00\x00"),  # IEC 104 start, no such U function
    ("udp", enip(0x0065, b"\x01\x00\x00\x00") + b"\x00"),  # length field disagrees
]


@pytest.mark.parametrize("transport,payload,name", GOLDEN, ids=[g[2] + "-" + g[0] for g in GOLDEN])
def test_golden_bytes(transport: str, payload: bytes, name: str) -> None:
    assert guess_protocol(transport, payload) == name


@pytest.mark.parametrize("transport,payload", NOT_OT)
def test_not_named_without_the_signature(transport: str, payload: bytes) -> None:
    assert guess_protocol(transport, payload) is None


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(sorted(SIGNATURES)), st.binary(max_size=300))
def test_any_bytes_give_a_name_or_none(transport: str, data: bytes) -> None:
    name = guess_protocol(transport, data)
    assert name is None or isinstance(name, str) and name


def _services(path) -> dict[tuple[str, int, int], str]:
    run = CaptureRun(path, CollectorConfig())
    return {(f.transport, f.orig_port, f.resp_port): f.service for b in run for f in b.flows}


# On the shared captures: what Wireshark's dissectors call their conversations (README of pcaps-ics).
EXPECTED = {
    "icsnpp-bacnet-bacnet_services.pcap": {"bacnet"},
    "icsnpp-opcua-opcua_with-gap.pcap": {"opcua"},
    "iti-opcua-opc-ua-ap-method-wireshark-freeze.pcap": {"opcua"},  # on port 12001
    "iti-mms-iec61850_read.pcap": {"mms"},
    "iti-mms-mms-stopRequest.pcap": {"mms"},
    "iti-s7commplus-s7-1200-hmi.pcap": {"s7commplus"},
    "icsnpp-s7comm-snap7.pcap": {"s7comm"},
    "parsitects-iec104-iec104.pcap": {"iec104"},
    "zeek-dnp3-dnp3_udp_read.pcap": {"dnp3"},
    "iti-enip-EIP-SoftwareDownload.pcap": {"enip"},
    "zeek-modbus-and-non-modbus-p502.pcap": {"modbus", "http", "tls", "rdp", ""},  # Zeek's DPD test, port 502
}
USUAL_PORT = {"dnp3": {20000}, "iec104": {2404}, "s7comm": {102}, "s7commplus": {102}, "mms": {102},
              "enip": {44818}, "modbus": {502}, "bacnet": {47808}}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_captures_are_named(name: str) -> None:
    path = next(p for p in shared_ics_pcaps() + shared_pcaps() if p.name == name)
    assert set(_services(path).values()) == EXPECTED[name]


def test_no_decoded_protocol_named_off_its_ports_in_the_shared_captures() -> None:
    """No false name: in every shared capture, a flow named as a decoded protocol has its port on one end, but
    where a capture runs one elsewhere on purpose (OPC UA on 12001 is only named)."""
    named = 0
    for path in shared_ics_pcaps() + shared_pcaps():
        for (transport, orig, resp), service in _services(path).items():
            if service in USUAL_PORT:
                named += 1
                assert {orig, resp} & USUAL_PORT[service], (path.name, transport, orig, resp, service)
    assert named > 300


def _dnp3_on_20001(path: Path) -> Path:
    """One DNP3 read and its answer, the outstation on port 20001."""
    link = Link()
    out, back = Direction("10.0.0.8", "10.0.0.3", 40000, 20001, link), Direction("10.0.0.3", "10.0.0.8", 20001, 40000, link)
    req, resp = dnp3_frames(bytes([0xC0, 0x01, 60, 2, 0x06]))[0], dnp3_frames(bytes([0xC0, 0x81, 0, 0]), dst=3, src=4,
                                                                            from_master=False)[0]
    ts = 1_700_000_000 * 10**9
    with PcapWriter(path) as w:
        w.write(ts, out.tcp(999, 0, SYN))
        w.write(ts + 1000, back.tcp(4999, 1000, SYN | ACK))
        w.write(ts + 2000, out.tcp(1000, 5000, ACK | PSH, req))
        w.write(ts + 3000, back.tcp(5000, 1000 + len(req), ACK | PSH, resp))
    return path


def test_a_protocol_on_another_port_is_named_in_flows_and_assets(tmp_path) -> None:
    path = _dnp3_on_20001(tmp_path / "p20001.pcap")
    assert _services(path) == {("tcp", 40000, 20001): "dnp3"}
    (asset,) = [a for a in inventory_from_captures([path]) if a.ip == "10.0.0.3"]
    assert asset.services == ("20001/tcp (dnp3)",)


def test_flow_windows_carry_the_payloads_name(tmp_path) -> None:
    flows = [w for w in windows_from_capture(_dnp3_on_20001(tmp_path / "p20001.pcap")) if w.kind == "flow"]
    assert [(w.server_ip, w.port, w.service) for w in flows] == [("10.0.0.3", 20001, "dnp3")]
