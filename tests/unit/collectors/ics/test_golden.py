"""Golden bytes: real frames from the public captures (hex copied from tshark's ``tcp.payload``), and one
frame per function code / type id / service built as the standards lay them out, decoded field by field."""

from __future__ import annotations

import struct

import pytest

from otsentry.collectors.ics.dnp3_app import parse_fragment
from otsentry.collectors.ics.dnp3_link import crc16, parse_link
from otsentry.collectors.ics.dnp3_names import FUNCTIONS as DNP3_FUNCTIONS, iin_names
from otsentry.collectors.ics.enip import parse_encapsulation
from otsentry.collectors.ics.enip_names import COMMANDS, SERVICES
from otsentry.collectors.ics.framing import FRAMES, StreamFramer
from otsentry.collectors.ics.iec104 import parse_apdu
from otsentry.collectors.ics.iec104_names import TYPES, U_FUNCTIONS
from otsentry.collectors.ics.s7_names import FUNCTIONS as S7_FUNCTIONS
from otsentry.collectors.ics.s7comm import parse_s7comm, parse_s7plus, split_cotp
from otsentry.contracts.events import OPERATION_CLASSES
from otsentry.synth.ics_frames import apdu_i, cip_rr, enip, s7_job

# icsnpp-dnp3-dnp3_example.pcap frame 16: master 100 -> outstation 5, READ class 0 (g60v1, all objects)
DNP3_READ_CLASS0 = bytes.fromhex("05640bc4050064006f36d5c8013c0106fe85")
# zeek-dnp3-dnp3.pcap frame 70: COLD_RESTART
DNP3_COLD_RESTART = bytes.fromhex("056408c404000300b4b8cdc30daf84")
# parsitects-iec104-iec104.pcap frames 20 and 21: C_SC_NA_1 act to CA 10, IOA 2; then actcon, actterm, M_SP_NA_1
IEC104_SC_ACT = bytes.fromhex("680e040042002d0106000a0002000001")
IEC104_THREE = bytes.fromhex("680e420006002d0107000a0002000001680e440006002d010a000a0002000001"
                             "680e46000600010103000a0002000001")
# icsnpp-s7comm-snap7.pcap frames 57/58: PLC STOP (P_PROGRAM) and its ack
S7_STOP = bytes.fromhex("0300002102f080320100001c000010000029000000000009505f50524f4752414d")
S7_STOP_ACK = bytes.fromhex("0300001402f080320300001c0000010000000029")
# icsnpp-enip-enip_cip_example.pcap frame 372: ListIdentity response of a 1756-ENBT/A
ENIP_IDENTITY = bytes.fromhex("63003300000000000000000000000000c1debed10000000001000c002d0001000002af120a0101a4"
                              "000000000000000001000c003a00040330008e4d52000b313735362d454e42542f4103")
# iti-enip-cip_stop_plc.pcap frame 1: SendUnitData, CIP Stop (0x07) to class 0x8e instance 1
ENIP_STOP = bytes.fromhex("70001c0001002a00000000000000000000000000000000000000000001000200a1000400224095ff"
                          "b100080006010702208e2401")


def test_crc16_dnp_check_value() -> None:
    assert crc16(b"123456789") == 0xEA82  # the catalogued check value of CRC-16/DNP


def test_dnp3_read_class0_golden() -> None:
    link = parse_link(DNP3_READ_CLASS0)
    assert link is not None and link.crc_errors == 0
    assert (link.destination, link.source, link.from_master, link.primary, link.function) == (5, 100, True, True, 4)
    assert link.data[0] == 0xD5  # transport: FIN, FIR, sequence 21
    msg = parse_fragment(link.data[1:], master=100, outstation=5, frame=16, ts_ns=0)
    assert (msg.operation, msg.operation_name, msg.operation_class, msg.request) == (1, "READ", "read", True)
    assert msg.objects == ("g60v1",) and msg.station == 5 and msg.key == (5, 100, 8) and msg.flags == ()  # application sequence 8


def test_dnp3_crc_error_is_counted_not_decoded() -> None:
    bad = bytearray(DNP3_READ_CLASS0)
    bad[12] ^= 0xFF  # a byte of the first data block
    link = parse_link(bytes(bad))
    assert link is not None and link.crc_errors == 1


def test_dnp3_cold_restart_golden() -> None:
    link = parse_link(DNP3_COLD_RESTART)
    assert link is not None and link.crc_errors == 0
    msg = parse_fragment(link.data[1:], 3, 4, 70, 0)
    assert (msg.operation_name, msg.operation_class) == ("COLD_RESTART", "diagnostic")


@pytest.mark.parametrize("code", sorted(DNP3_FUNCTIONS))
def test_every_dnp3_function_code(code: int) -> None:
    response = code in (0x81, 0x82, 0x83)
    fragment = bytes([0xC3, code]) + (b"\x00\x00" if response else b"")
    msg = parse_fragment(fragment, 1, 10, 1, 0)
    assert msg.operation == code and msg.operation_name == DNP3_FUNCTIONS[code][0]
    assert msg.operation_class in OPERATION_CLASSES and msg.request is not response
    assert "reserved_function" not in msg.flags


def test_dnp3_reserved_function_and_iin_errors() -> None:
    msg = parse_fragment(bytes([0xC0, 0x70]), 1, 10, 1, 0)
    assert msg.operation_name == "unknown-112" and "reserved_function" in msg.flags
    resp = parse_fragment(bytes([0xC0, 0x81, 0x80, 0x04]), 1, 10, 2, 0)  # device restart + parameter error
    assert resp.status == "parameter_error" and not resp.request
    assert iin_names(0x8004) == ("device_restart", "parameter_error")


def test_dnp3_crob_and_analog_output_values() -> None:
    crob = struct.pack("<BBIIB", 0x41, 1, 100, 0, 0)  # LATCH_ON... pulse on, count 1
    msg = parse_fragment(bytes([0xC1, 0x05, 12, 1, 0x28, 1, 0]) + struct.pack("<H", 7) + crob, 1, 10, 1, 0)
    assert msg.operation_name == "DIRECT_OPERATE" and msg.objects == ("g12v1",) and msg.values == (0x41,)
    aout = struct.pack("<iB", -1234, 0)
    msg = parse_fragment(bytes([0xC2, 0x03, 41, 1, 0x17, 1, 3]) + aout, 1, 10, 1, 0)
    assert msg.operation_name == "SELECT" and msg.values == (-1234,) and msg.flags == ()


def test_iec104_single_command_golden() -> None:
    msg = parse_apdu(IEC104_SC_ACT, True, 20, 0)
    assert (msg.operation, msg.operation_name, msg.operation_class) == (45, "C_SC_NA_1", "control")
    assert msg.request and msg.station == 10 and msg.objects == ("2",) and msg.values == (1,)
    assert msg.key == (45, 10, "2") and msg.detail == "cot=act"


def test_iec104_three_apdus_in_one_segment() -> None:
    out: list = []
    assert StreamFramer(FRAMES["iec104"]).feed(IEC104_THREE, 21, 0, out) == 0
    msgs = [parse_apdu(p.data, False, 21, 0) for p in out]
    assert [(m.operation_name, m.detail, m.request) for m in msgs] == [
        ("C_SC_NA_1", "cot=actcon", False), ("C_SC_NA_1", "cot=actterm", False), ("M_SP_NA_1", "cot=spont", False)]
    assert msgs[0].key == (45, 10, "2") and msgs[1].key is None


@pytest.mark.parametrize("type_id", sorted(TYPES))
def test_every_iec104_type_id(type_id: int) -> None:
    size = TYPES[type_id][2] or 0
    msg = parse_apdu(apdu_i(type_id, 6, 3, b"\x01\x00\x00" + bytes(size)), True, 1, 0)
    assert msg.operation == type_id and msg.operation_name == TYPES[type_id][0]
    assert "malformed" not in msg.flags and "reserved_function" not in msg.flags


@pytest.mark.parametrize("function", sorted(U_FUNCTIONS))
def test_every_iec104_u_function(function: int) -> None:
    msg = parse_apdu(bytes([0x68, 4, function, 0, 0, 0]), True, 1, 0)
    assert msg.operation_name == f"U ({U_FUNCTIONS[function]})" and msg.flags == ()


def test_iec104_negative_confirmation_and_prefix() -> None:
    msg = parse_apdu(apdu_i(46, 7, 1, b"\x05\x00\x00\x02", negative=True), False, 1, 0)
    assert msg.status == "negative" and msg.key == (46, 1, "5")
    msg = parse_apdu(b"\x00\x11" + apdu_i(100, 6, 1, b"\x00\x00\x00\x14"), True, 1, 0)
    assert msg.operation_name == "C_IC_NA_1" and "prefix" in msg.flags


def test_s7_plc_stop_golden() -> None:
    kind, eot, data = split_cotp(S7_STOP)
    assert (kind, eot) == (0xF0, True)
    msg = parse_s7comm(data, 57, 0)
    assert (msg.operation, msg.operation_name, msg.operation_class) == (0x29, "PLC_STOP(P_PROGRAM)", "control")
    assert msg.request and msg.key == ("s7", 0x1C00) and msg.objects == ("P_PROGRAM",)
    ack = parse_s7comm(split_cotp(S7_STOP_ACK)[2], 58, 0)
    assert not ack.request and ack.key == ("s7", 0x1C00) and ack.status is None


@pytest.mark.parametrize("function", sorted(S7_FUNCTIONS))
def test_every_s7_function(function: int) -> None:
    msg = parse_s7comm(s7_job(bytes([function, 0])), 1, 0)
    assert msg.operation == function and msg.operation_name.startswith(S7_FUNCTIONS[function][0])
    assert "reserved_function" not in msg.flags


def test_s7_read_variable_address() -> None:
    item = bytes([0x12, 0x0A, 0x10, 0x02]) + struct.pack(">HHB", 4, 1, 0x84) + (8 * 8).to_bytes(3, "big")
    msg = parse_s7comm(s7_job(bytes([0x04, 1]) + item), 1, 0)
    assert msg.objects == ("DB1:8.0x4",) and msg.operation_class == "read"


def test_s7commplus_named() -> None:
    pdu = bytes([0x72, 0x01, 0x00, 0x10, 0x31, 0, 0, 0x04, 0xCA, 0, 0, 0x00, 0x05]) + bytes(8)
    msg = parse_s7plus(pdu, 1, 0)
    assert (msg.protocol, msg.operation_name, msg.operation_class, msg.request) == (
        "s7commplus", "CreateObject", "program", True)


def test_enip_list_identity_golden() -> None:
    msg = parse_encapsulation(ENIP_IDENTITY, False, 372, 0)
    assert msg.operation_name == "List Identity" and not msg.request
    # as ICSNPP's cip_identity.log has it: vendor 1, device type 12, product code 58, revision 4.3, serial 0x00524d8e
    assert "vendor_id=1" in msg.detail and "product_name=1756-ENBT/A" in msg.detail and "revision=4.3" in msg.detail


def test_enip_cip_stop_golden() -> None:
    msg = parse_encapsulation(ENIP_STOP, True, 1, 0)
    assert (msg.operation, msg.operation_name, msg.operation_class) == (0x07, "Stop", "control")
    assert msg.objects == ("class=0x8e", "instance=1", "Controller (Logix)") and msg.detail.startswith("connected")


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_cip_service(service: int) -> None:
    cip = bytes([service, 2, 0x20, 0x01, 0x24, 0x01])
    msg = parse_encapsulation(enip(0x006F, cip_rr(cip)), True, 1, 0)
    assert msg.operation == service and msg.operation_name == SERVICES[service][0]
    assert msg.objects[:2] == ("class=0x01", "instance=1") and "reserved_function" not in msg.flags


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_enip_command(command: int) -> None:
    msg = parse_encapsulation(enip(command), True, 1, 0)
    assert msg.operation_name == COMMANDS[command] or command in (0x006F, 0x0070)


def test_cip_error_status() -> None:
    reply = parse_encapsulation(enip(0x006F, cip_rr(bytes([0x8E, 0, 0x08, 0]))), False, 2, 0)
    assert reply.status == "Service not supported" and not reply.request


def test_other_ot_protocols_are_named_by_port_in_alert_wording() -> None:
    from otsentry.collectors.ics.ports import NAMED_PORTS
    from otsentry.detectors.policy_findings import service_label

    assert service_label(47808, "udp") == "47808/udp (BACnet)" and service_label(9600, "udp") == "9600/udp (omron-fins)"
    assert service_label(1911, "tcp") == "1911/tcp (niagara-fox)" and service_label(40000, "tcp") == "40000/tcp"
    assert all(name and transport in ("tcp", "udp") and 0 < port < 65536 for (transport, port), name in NAMED_PORTS.items())
    assert service_label(3671, "udp") == "3671/udp (knxnet-ip)" and service_label(1502, "udp") == \
        "1502/udp (triconex-tristation)" and service_label(4712, "tcp") == "4712/tcp (c37.118)"
    assert len(set(NAMED_PORTS.values())) >= 100  # about a hundred OT, building and grid protocols by port


def test_review_cases_a_huge_count_of_bodiless_objects_and_an_empty_sized_object() -> None:
    """A WRITE of g60v1 with a 4-byte count of 2^32-1 (no bodies: returns at once, not after 2^32 steps), and a
    g1v2 with a size prefix of 0 at the fragment's end (no value, no IndexError)."""
    import time

    started = time.perf_counter()
    msg = parse_fragment(bytes.fromhex("c0023c0109ffffffff"), 1, 10, 1, 0)
    assert time.perf_counter() - started < 1.0 and msg.operation_name == "WRITE"
    msg = parse_fragment(bytes.fromhex("c00201024701" + "00"), 1, 10, 1, 0)
    assert msg.operation_name == "WRITE" and msg.values == ()


def test_no_response_functions_are_not_left_unanswered() -> None:
    for code in (0x06, 0x08, 0x0A, 0x0C):
        assert parse_fragment(bytes([0xC0, code]), 1, 10, 1, 0).key is None


def _paired(*messages):
    from otsentry.collectors.ics.counts import ProtocolCounts
    from otsentry.collectors.ics.pairing import OperationPairer
    from otsentry.collectors.types import Conn

    pairer, counts, out = OperationPairer(), ProtocolCounts(), []
    for msg in messages:
        pairer.push(1, Conn("10.0.0.1", 40000, "10.0.0.2", 2404), msg, counts, out)
    return out, counts


def test_iec104_refusal_pairs_with_the_command_it_refuses() -> None:
    """A controlled station mirrors a command it cannot execute with cause 44-47 (here 47: unknown IOA)."""
    command = parse_apdu(apdu_i(45, 6, 1, b"\x39\x30\x00\x01"), True, 1, 0)
    refusal = parse_apdu(apdu_i(45, 47, 1, b"\x39\x30\x00\x01", negative=True), False, 2, 1_000_000)
    out, counts = _paired(command, refusal)
    assert len(out) == 1 and out[0].operation_name == "C_SC_NA_1" and out[0].status == "negative"
    assert counts.orphan_responses == 0 and out[0].objects == ("12345",)


def test_iec104_read_pairs_with_the_data_it_requested() -> None:
    read = parse_apdu(apdu_i(102, 5, 7, b"\xe9\x03\x00"), True, 1, 0)
    data = parse_apdu(apdu_i(13, 5, 7, b"\xe9\x03\x00" + struct.pack("<fB", 21.5, 0)), False, 2, 2_000_000)
    assert read.request and read.operation_name == "C_RD_NA_1"
    out, counts = _paired(read, data)
    assert len(out) == 1 and out[0].operation_name == "C_RD_NA_1" and out[0].latency_s == 0.002
    assert counts.orphan_responses == 0 and counts.unanswered == 0


def test_broadcast_list_identity_pairs_with_every_device_that_answers() -> None:
    """ListIdentity to 255.255.255.255: two devices answer from their own addresses; each answer is that device's
    operation with its identity, and the broadcast is not reported unanswered."""
    from otsentry.collectors.ics.counts import ProtocolCounts
    from otsentry.collectors.ics.pairing import OperationPairer
    from otsentry.collectors.types import Conn
    from otsentry.synth.ics_frames import enip_identity

    pairer, counts, out = OperationPairer(timeout_s=1.0), ProtocolCounts(), []
    ask = Conn("10.0.0.5", 50000, "255.255.255.255", 44818)
    request = parse_encapsulation(enip(0x0063, session=0, context=b"browse01"), True, 1, 0)
    pairer.push(1, ask, request, counts, out, "udp")
    for i, (ip, name) in enumerate((("10.0.0.7", "1756-L71/B LOGIX5571"), ("10.0.0.8", "1769-L33ER/A"))):
        body = enip_identity(1, 0x0E, 0x36, (20, 11), 0x100 + i, name, bytes(map(int, ip.split("."))))
        reply = parse_encapsulation(enip(0x0063, body, session=0, context=b"browse01"), False, 2 + i, 1000 + i)
        pairer.push(2 + i, Conn("10.0.0.5", 50000, ip, 44818), reply, counts, out, "udp")
    pairer.expire(5 * 10**9, {"enip": counts}, out)
    assert [(o.server_ip, dict(o.identity)["product_name"]) for o in out] == [
        ("10.0.0.7", "1756-L71/B LOGIX5571"), ("10.0.0.8", "1769-L33ER/A")]
    assert counts.unanswered == 0 and counts.orphan_responses == 0
    pairer.push(1, ask, request, counts, out, "udp")  # a broadcast nobody answers is unanswered
    pairer.expire(10 * 10**9, {"enip": counts}, out)
    assert counts.unanswered == 1 and out[-1].flags == ("unanswered",)
