"""The asset inventory from DNP3, IEC 104, S7 and EtherNet/IP: roles with evidence and what devices say of
themselves, checked against ICSNPP's logs of the same public captures."""

from __future__ import annotations

from pathlib import Path

import pytest

from otsentry.assets import inventory_from_captures
from tests.helpers import SHARED_ICS_PCAPS

pytestmark = pytest.mark.skipif(not SHARED_ICS_PCAPS.exists(), reason="no ../shared")


def _assets(name: str) -> dict:
    return {a.ip: a for a in inventory_from_captures([SHARED_ICS_PCAPS / name])}


def _zeek_row(log: Path) -> dict[str, str]:
    lines = log.read_text().splitlines()
    fields = next(line for line in lines if line.startswith("#fields")).split("\t")[1:]
    row = next(line for line in lines if line and not line.startswith("#")).split("\t")
    return dict(zip(fields, row))


def test_s7_szl_identity_matches_icsnpp_known_devices() -> None:
    name = "icsnpp-s7comm-s7ident.pcap"
    plc = _assets(name)["172.17.0.2"]
    identity = dict(plc.identity)
    known = _zeek_row(SHARED_ICS_PCAPS / f"{name}.s7comm_known_devices.log")
    assert identity["system_name"] == known["automation_system_name"] == "SNAP7-SERVER"
    assert identity["module_name"] == known["module_name"] and identity["serial"] == known["module_serial"]
    assert identity["order_number"] == "6ES7 315-2EH14-0AB0"
    assert "plc" in dict(plc.roles) and "S7comm" in dict(plc.roles)["plc"]


def test_enip_list_identity_matches_icsnpp_cip_identity() -> None:
    name = "icsnpp-enip-enip_cip_example.pcap"
    adapter = _assets(name)["10.1.1.164"]
    identity = dict(adapter.identity)
    # the baseline has no #fields line: ICSNPP's cip_identity columns by position (revision, serial, product name)
    line = next(x for x in (SHARED_ICS_PCAPS / f"{name}.cip_identity.log").read_text().splitlines()
                if x and not x.startswith("#"))
    row = line.split("\t")
    assert identity["product_name"] == row[22] == "1756-ENBT/A"
    assert identity["serial"] == row[21] and identity["revision"] == row[19] == "4.3"
    assert "EtherNet/IP" in dict(adapter.roles)["plc"]


def test_dnp3_outstation_and_masters() -> None:
    assets = _assets("zeek-dnp3-dnp3.pcap")
    roles = dict(assets["10.0.0.3"].roles)
    assert "DNP3" in roles["plc"] and "10.0.0.8" in roles["plc"] and "station 4" in roles["plc"]
    for master in ("10.0.0.8", "10.0.0.9"):
        assert "hmi" in dict(assets[master].roles)


def test_a_service_no_payload_named_shows_the_protocol_usual_on_its_port(tmp_path) -> None:
    """KNXnet/IP on 3671/udp, C37.118 on 4712/tcp: named by port (and said so); an unknown port stays bare."""
    from otsentry.synth.frames import Direction, Link
    from otsentry.synth.pcapwriter import PcapWriter

    path = tmp_path / "bas.pcap"
    link = Link()
    with PcapWriter(path) as writer:
        for i, (port, udp) in enumerate(((3671, True), (4712, False), (40123, True))):
            out = Direction("10.0.0.8", "10.0.0.3", 50000 + i, port, link)
            back = Direction("10.0.0.3", "10.0.0.8", port, 50000 + i, link.reverse())
            ts = 1_700_000_000 * 10**9 + i * 10**9
            if udp:
                writer.write(ts, out.udp(b"\x06\x10\x02\x05\x00\x1a" + bytes(20)))
                writer.write(ts + 10**6, back.udp(b"\x06\x10\x02\x06\x00\x08" + bytes(2)))
            else:
                writer.write(ts, out.tcp(1000, 0, 0x02))
                writer.write(ts + 10**6, back.tcp(5000, 1001, 0x12))
                writer.write(ts + 2 * 10**6, out.tcp(1001, 5001, 0x18, b"\xaa\x41\x00\x12" + bytes(14)))
    server = {a.ip: a for a in inventory_from_captures([path])}["10.0.0.3"]
    assert set(server.services) == {"3671/udp (knxnet-ip, by port)", "4712/tcp (c37.118, by port)", "40123/udp"}
